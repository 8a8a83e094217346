// The model `lutq tune` trains: a lutq file's dense llama/qwen2 decoder with every BCQ block
// linear layer's scales (and offsets) trainable and everything else frozen (embedding, norms,
// dense layers, the head). Its forward is the engine's math in fp32 with the layers' weights
// dequantized from codes and the current scales (dequantize_with), so what it optimises is what
// `lutq run` computes; step() runs forward and backward over one sequence and adds the scale
// gradients into each trainable's grad.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"
#include "lutqfile/adapter.h"
#include "model/config.h"
#include "model/embedding.h"
#include "train/bcq_grad.h"
#include "train/layer_grad.h"

namespace lutq::train {

struct TrainableLinear {
  std::string name;          // e.g. blk.3.ffn_down.weight
  format::BcqMatrix codes;   // frozen codes; its fp16 scales are what the file held
  ScaleParams scales;        // fp32 master scales being trained
  ScaleParams grad;          // accumulated gradients (zero_grad() clears them)
  int64_t layer = 0;
  int role = 0;              // LayerLinear
  std::vector<float> row_mult;  // row adapters (train/scale_updater.h): [lines][q]; empty otherwise
};

enum class TuneLoss { kKl, kCe };

class Student {
 public:
  // Reads a lutq file (or any checkpoint: without BCQ layers nothing is trainable). Errors name
  // the file and tensor: an architecture with q/k norms or MoE blocks, partial RoPE, RoPE scaling,
  // int8 layers, a quantized head.
  static Result<Student> load(const io::Checkpoint& ckpt);
  // The same, starting from an adapter's scales (lutqfile/adapter.h) instead of the file's; every
  // matrix the adapter names must be one of the trainable BCQ layers.
  static Result<Student> load(const io::Checkpoint& ckpt, const lutqfile::Adapter* adapter);

  const model::ModelConfig& config() const { return config_; }
  std::vector<TrainableLinear>& trainables() { return trainables_; }
  const std::vector<TrainableLinear>& trainables() const { return trainables_; }
  int64_t trainable_parameters() const;

  // Loss over one sequence (mean over its scored rows) and its scale gradients, added into the
  // trainables' grad. kKl: KL(teacher ‖ student) per row against teacher_logits [m][n_vocab];
  // kCe: next-token cross-entropy (teacher_logits unused). Error: bad tokens or sizes.
  Result<double> step(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss loss);
  // The loss alone (held-out evaluation).
  Result<double> loss(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss loss);

  void zero_grad();
  void scale_grad(float factor);  // grad *= factor (a mean over the sequences of a step)
  // Re-derives the trainables' fp32 weights from their current scales (after an optimizer step).
  void refresh();

 private:
  Result<double> run(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss kind, bool backward);
  double head_loss(const float* logits, int64_t m, std::span<const int32_t> tokens, const float* teacher,
                   TuneLoss kind, float* dlogits) const;
  LayerParams<float> params(int64_t l) const;

  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    std::array<std::vector<float>, kNumLayerLinears> w;
    std::array<std::vector<float>, 3> bias;
    std::array<int, kNumLayerLinears> trainable{-1, -1, -1, -1, -1, -1, -1};  // index in trainables_
  };
  model::ModelConfig config_;
  LayerShape shape_;
  std::unique_ptr<model::Embedding> embedding_;
  std::vector<float> out_norm_, head_;  // head [n_vocab][n_embd]
  std::vector<Layer> layers_;
  std::vector<TrainableLinear> trainables_;
};

}  // namespace lutq::train
