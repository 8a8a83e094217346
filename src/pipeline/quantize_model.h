// Quantizing a checkpoint into a lutq model file (lutqfile/lutq_file.h): every block linear layer
// (and the output head where the spec asks) becomes a BCQ matrix; every other tensor and all
// metadata (configuration, tokenizer, chat template) are carried over unchanged, so `lutq run`
// needs nothing but the output file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "quant/gptq.h"
#include "format/bcq_matrix.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_experts.h"
#include "model/linear_spec.h"

namespace lutq::pipeline {

struct QuantizedLayer {
  std::string name;
  std::string form;       // format::describe() of the stored matrix, or the dense type
  bool quantized = false;
  int64_t n = 0;
  int64_t k = 0;
  double rel_error = 0.0;  // ‖W − Ŵ‖_F / ‖W‖_F (0 for dense layers)
  double bits_per_weight = 0.0;
  int64_t bytes = 0;       // stored bytes of this weight
  double seconds = 0.0;
};

struct QuantizeReport {
  std::vector<QuantizedLayer> layers;  // the linear layers, in file order
  int64_t file_bytes = 0;
  int64_t linear_weights = 0;  // weights in the block linear layers (the head not counted)
  int64_t linear_bytes = 0;
  int64_t experts = 0;           // expert matrices written one per expert (pipeline/quantize_experts.h)
  int64_t dictionary_bytes = 0;  // the experts' QMoE dictionary (ExpertsForm::kTernary), not in linear_bytes
  int64_t experts_uncalibrated = 0;  // expert matrices fitted without statistics: too few rows routed to them
  double seconds = 0.0;
  double linear_bpw() const {
    return linear_weights > 0 ? 8.0 * static_cast<double>(linear_bytes) / static_cast<double>(linear_weights) : 0.0;
  }
};

// ‖W − Ŵ‖_F / ‖W‖_F of a layer W (wq.size() values) and its quantized Ŵ (the report's rel_error).
double relative_error(const float* w, const std::vector<float>& wq);

// Called after each linear layer: (layers done, layers total, the layer just done).
using QuantizeProgress = std::function<void(int64_t, int64_t, const QuantizedLayer&)>;

// Quantizes `in` (a dense checkpoint of a supported architecture; a lutq file is rejected) per
// `spec` and writes the lutq file `out_path` (atomically: nothing is left under that name when it
// fails). Block layers whose choice asks for GPTQ or AdaDim use `calib` (collected on the same
// model; an error when absent). Block layers are quantized in block order, 0 first, so a
// LayerwiseCalibration source is walked forward once. An MoE model's routed experts are written
// one matrix per expert as `experts` says (pipeline/quantize_experts.h), each block's right after
// its other layers, with their per-expert statistics from `calib` where they need them. A shared
// expert (qwen2moe, blk.L.ffn_{gate,up,down}_shexp.weight) is a block layer of its role like
// ffn_gate / ffn_up / ffn_down, calibrated on its own statistics (every row of its block).
Result<QuantizeReport> quantize_to_file(const io::Checkpoint& in, const LinearSpec& spec, const std::string& out_path,
                                        ThreadPool& pool, const QuantizeProgress& progress = {},
                                        HessianSource* calib = nullptr, const ExpertsOptions& experts = {});

// Quantizes one layer per `choice`: GPTQ / AdaDim, FlexRound or the clipping search with the input
// statistics h[k*k] (an error when h is null), else the plain quantizer; the group size adapts as choice.adapt_group says.
// With `factors`, GPTQ's factor of h is taken from (and kept in) it under `input_key`, so layers
// reading one input (q/k/v, gate/up) share one O(k³) factorisation.
struct SharedFactor {
  quant::GptqFactorCache* cache = nullptr;
  uint64_t input_key = 0;
};
Result<format::BcqMatrix> quantize_layer(const std::string& name, const float* w, int64_t n, int64_t k,
                                         const LinearChoice& choice, const double* h, ThreadPool& pool,
                                         SharedFactor shared = {});

// The label recorded with a matrix: the quantizer, GPTQ's and AdaDim's part in it.
std::string method_label(const LinearChoice& choice, const format::BcqMatrix& q);

// Whether any layer of `spec` needs calibration statistics (GPTQ, AdaDim, FlexRound, clip search),
// an MoE model's expert tensors (blk.L.ffn_*_exps.weight) and shared expert included.
bool needs_calibration(const LinearSpec& spec, const ModelConfig& config);

}  // namespace lutq::pipeline
