// Calibration statistics of a model: runs a (dense) Model over token chunks and
// accumulates, for every block, H = Σ x xᵀ of each distinct linear-layer input (quant/hessian.h):
// q/k/v read one input (the attention norm's output), gate/up another (the FFN norm's), and
// attn_output and ffn_down one each, so a block keeps four accumulators.
//
// The statistics are those of the model being run: run the dense model for GPTQ as the paper's
// "sequential" variant is not done here (every layer is calibrated on the unquantized inputs).
// Memory: per block 3·n_embd² + n_ff² doubles (SmolLM2-135M: 27 MB per block, 0.8 GB in all).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "model/linear_spec.h"
#include "model/model.h"
#include "quant/hessian.h"

namespace lutq::pipeline {

// The model-layer names the offline pipeline works with (pipeline/ sits above model/).
using model::Batch;
using model::Block;
using model::Layer;
using model::Linear;
using model::LinearChoice;
using model::LinearObserver;
using model::LinearOverride;
using model::LinearRole;
using model::LinearSpec;
using model::LoadOptions;
using model::LogitsMode;
using model::Memory;
using model::Model;
using model::ModelConfig;
using model::kNumLinearRoles;

// The distinct inputs of a block's linear layers.
enum class LinearInput : uint8_t { kAttn, kAttnOutput, kFfn, kFfnDown };
constexpr int kNumLinearInputs = 4;
LinearInput input_of(LinearRole role);

struct CalibrationOptions {
  // Called after each chunk with (chunks done, total); may be empty.
  std::function<void(int64_t, int64_t)> progress;
};

// The statistics of one routed expert's input: H = Σ x xᵀ [k][k] over the rows the router sent
// to it, unweighted by the routing weight (GPTQ minimises the expert's own output error on the
// rows that reach it), and how many rows that was (0: the expert was never chosen; H is zero).
// The shared expert's: over every row of the block.
struct ExpertHessian {
  const double* h = nullptr;
  int64_t rows = 0;
};

// Every block's statistics at once (collect_hessians, or the calibration cache). A
// mixture-of-experts block keeps its experts' as LayerwiseCalibration does (per routed expert and
// for the shared expert); its dense FFN inputs are then 1-feature placeholders.
class CalibrationStats {
 public:
  int64_t n_layer() const { return n_layer_; }
  int64_t tokens() const { return tokens_; }
  // The accumulator of the input of `role` in block `layer` (shared by q/k/v and by gate/up).
  const quant::HessianAccumulator& hessian(int64_t layer, LinearRole role) const {
    return acc_[static_cast<size_t>(layer * kNumLinearInputs + static_cast<int>(input_of(role)))];
  }
  // Whether block `layer` is a mixture-of-experts block (its FFN statistics are per expert).
  bool moe_block(int64_t layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < experts_.size() && !experts_[static_cast<size_t>(layer)].empty();
  }
  // The routed experts of each MoE block (the model's expert_count; 0 for a dense model).
  int64_t n_routed() const { return n_routed_; }
  // Block `layer`'s expert accumulators, [expert][0: gate/up, 1: down]: the routed experts, then
  // the shared expert if the block has one; empty for a dense block.
  const std::vector<quant::HessianAccumulator>& expert_accumulators(int64_t layer) const {
    return experts_[static_cast<size_t>(layer)];
  }
  // As HessianSource::expert_hessian (expert: 0..n_routed-1 or LinearObserver::kSharedExpert);
  // an error naming the block for a dense block or an expert it does not have.
  Result<ExpertHessian> expert_hessian(int64_t layer, LinearRole role, int64_t expert) const;

 private:
  friend Result<CalibrationStats> collect_hessians(const Model&, std::span<const std::vector<int32_t>>,
                                                   const CalibrationOptions&, ThreadPool&);
  friend Result<CalibrationStats> load_calibration(const std::string&, uint64_t, const ModelConfig&);
  int64_t n_layer_ = 0;
  int64_t tokens_ = 0;
  int64_t n_routed_ = 0;
  std::vector<quant::HessianAccumulator> acc_;  // [layer][input]
  std::vector<std::vector<quant::HessianAccumulator>> experts_;  // [layer][expert slot], empty when dense
};


// Where quantize_to_file finds each block layer's input statistics: every block's at once
// (StoredHessians over CalibrationStats, e.g. from the cache) or one block at a time
// (LayerwiseCalibration, which never holds more than one block's).
class HessianSource {
 public:
  virtual ~HessianSource() = default;
  virtual int64_t n_layer() const = 0;
  // H = Σ x xᵀ [k][k] of block `layer`'s input of `role`; valid until a call for another block.
  virtual Result<const double*> hessian(int64_t layer, LinearRole role) = 0;
  // A mixture-of-experts block's routed expert `expert` (0..n_expert-1) or its shared expert
  // (LinearObserver::kSharedExpert): the statistics of its input of `role` (kFfnGate / kFfnUp
  // share one, kFfnDown reads the expert's SwiGLU output); valid until a call for another block.
  // Sources without per-expert statistics: an error.
  virtual Result<ExpertHessian> expert_hessian(int64_t layer, LinearRole role, int64_t expert);
};

class StoredHessians final : public HessianSource {
 public:
  explicit StoredHessians(const CalibrationStats& stats) : stats_(stats) {}
  int64_t n_layer() const override { return stats_.n_layer(); }
  // An FFN role of a mixture-of-experts block: an error (its statistics are per expert).
  Result<const double*> hessian(int64_t layer, LinearRole role) override;
  Result<ExpertHessian> expert_hessian(int64_t layer, LinearRole role, int64_t expert) override {
    return stats_.expert_hessian(layer, role, expert);
  }

 private:
  const CalibrationStats& stats_;
};

// The statistics of one block at a time, for models whose Hessians do not fit in memory together
// (Qwen2.5-1.5B: 0.7 GB per block, 19.6 GB in all): the residual stream of every calibration chunk
// is kept at the input of the next block (chunks x ctx x n_embd floats) and carried forward one
// block per request, that block's four accumulators filled on the way. Blocks must be asked for
// in increasing order (an error otherwise). The statistics equal collect_hessians' bit for bit:
// the same chunks go through the same operations in the same order.
//
// Mixture-of-experts blocks (docs/moe.md, "Calibrated experts"): the router runs on the
// calibration rows as in inference, and each routed expert e gets two accumulators of its own,
// its gate/up input (the FFN-normed rows routed to e) and its down input (its SwiGLU output on
// those rows), fed through LinearObserver::observe_expert; the attention inputs are as in a dense
// block. hessian() of an FFN role of such a block is an error (use expert_hessian). Memory per
// MoE block: E·(n_embd² + n_ff_exp²) doubles plus the accumulators' fp32 tiles (half as much
// again) and the attention's; the converted SmolLM2 (E = 8, 576 and 192): 35 MB. A shared expert
// (qwen2moe) runs on every row of the block, so it gets the same two accumulators over all of
// them (n_embd² + n_ff_shexp² doubles more), asked for as expert LinearObserver::kSharedExpert.
class LayerwiseCalibration final : public HessianSource {
 public:
  // `model` (dense) must outlive this. Errors as collect_hessians.
  static Result<LayerwiseCalibration> create(const Model& model, std::vector<std::vector<int32_t>> chunks,
                                             ThreadPool& pool, const CalibrationOptions& options = {});
  int64_t n_layer() const override;
  Result<const double*> hessian(int64_t layer, LinearRole role) override;
  Result<ExpertHessian> expert_hessian(int64_t layer, LinearRole role, int64_t expert) override;
  int64_t tokens() const { return tokens_; }

 private:
  LayerwiseCalibration(const Model& model, ThreadPool& pool) : model_(&model), pool_(&pool) {}
  // Runs blocks next_ .. layer over every chunk, accumulating block `layer`'s statistics.
  Status advance(int64_t layer);
  // Makes block `layer` the one held (advancing to it), or the error of asking for it.
  Status hold(int64_t layer);

  const Model* model_;
  ThreadPool* pool_;
  CalibrationOptions options_;
  std::vector<std::vector<int32_t>> chunks_;
  std::vector<std::vector<float>> x_;  // per chunk: the residual stream at the input of block next_
  std::unique_ptr<Memory> memory_;
  int64_t next_ = 0;   // the block whose input x_ holds
  int64_t held_ = -1;  // the block acc_ describes
  int64_t tokens_ = 0;
  std::vector<quant::HessianAccumulator> acc_;  // [input] of block held_
  bool held_moe_ = false;                          // block held_ is a mixture-of-experts block
  // [expert][0: gate/up, 1: down] of an MoE block: the routed experts, then the shared one if any
  std::vector<quant::HessianAccumulator> expert_acc_;
};

// Runs every chunk from an empty cache (only the last logits are computed) and accumulates the
// statistics. Errors: no chunks, an empty chunk, a forward() error (e.g. a token outside the
// vocabulary), a chunk longer than the context length. A mixture-of-experts model's blocks keep
// their experts' statistics, every block's at once: n_layer times LayerwiseCalibration's per-block
// memory (the converted SmolLM2: 1 GB; a large MoE far more than fits, see docs/moe.md).
Result<CalibrationStats> collect_hessians(const Model& model, std::span<const std::vector<int32_t>> chunks,
                                          const CalibrationOptions& options, ThreadPool& pool);

// Cuts tokens into consecutive chunks of ctx tokens (the last partial one dropped), at most
// max_tokens in all (<= 0: no limit); bos >= 0 replaces each chunk's first token, as the
// perplexity protocol does.
std::vector<std::vector<int32_t>> calibration_chunks(std::span<const int32_t> tokens, int64_t ctx, int64_t max_tokens,
                                                     int32_t bos);

// ---- The calibration cache (pipeline/calibration_cache.cc) ----
// Collecting statistics costs a dense forward pass over the calibration text (about a minute for
// SmolLM2-135M on 2 cores); `lutq quantize --calib-cache FILE` keeps them for the next run of the
// same model on the same tokens. The file is a GGUF container: lutq.calib.version = 1,
// lutq.calib.fingerprint (UINT64), lutq.calib.tokens (INT64), lutq.calib.n_layer, and one F64
// tensor [k, k] per block input named calib.L.{attn,attn_output,ffn,ffn_down}. A mixture-of-experts
// block has no calib.L.ffn / ffn_down; instead calib.L.expert.X.{ffn,ffn_down} per routed expert
// X, calib.L.shexp.{ffn,ffn_down} for a shared expert, and calib.L.expert_rows (I64 [experts],
// the shared expert last) with the rows each saw. Sums are stored in double, so cached and fresh
// statistics are bit for bit the same.

// A 64-bit fingerprint of what statistics depend on: every tensor of the checkpoint (name, shape,
// type, bytes) and the token chunks. Reads the whole checkpoint once (~0.1 s per 100 MB).
uint64_t calibration_fingerprint(const io::Checkpoint& checkpoint, std::span<const std::vector<int32_t>> chunks);

// Writes `stats` to `path` (beside it, then renamed: a failure leaves no partial file).
Status save_calibration(const CalibrationStats& stats, uint64_t fingerprint, const std::string& path);

// Reads statistics saved for `fingerprint`; errors name the reason: unreadable or corrupt file,
// another version, another fingerprint (model or tokens changed), shapes that are not `config`'s.
Result<CalibrationStats> load_calibration(const std::string& path, uint64_t fingerprint, const ModelConfig& config);

}  // namespace lutq::pipeline
