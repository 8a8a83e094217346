// collect_hessians: a LinearObserver that feeds one accumulator per distinct block input.
#include "pipeline/calibration.h"

#include <algorithm>
#include <optional>
#include <span>
#include <string>

namespace lutq::pipeline {
namespace {

// The slot of expert `expert`'s input of `role` among an MoE block's expert accumulators
// [expert][0: gate/up, 1: down], the routed experts 0..n_routed-1 first and the shared expert
// (LinearObserver::kSharedExpert) after them; nullopt when there is no such slot.
std::optional<size_t> expert_slot(int64_t expert, LinearRole role, int64_t n_routed, size_t n_slots) {
  const int64_t x = expert == LinearObserver::kSharedExpert ? n_routed : expert;
  if (x < 0 || (x >= n_routed && expert != LinearObserver::kSharedExpert)) return std::nullopt;
  const auto slot = static_cast<size_t>(x * 2 + (role == LinearRole::kFfnDown ? 1 : 0));
  if (slot >= n_slots) return std::nullopt;
  return slot;
}

std::string expert_label(int64_t expert) {
  return expert == LinearObserver::kSharedExpert ? std::string("the shared expert") : "expert " + std::to_string(expert);
}

// Feeds acc[(layer − first_layer)·kNumLinearInputs + input] and the experts' accumulators
// experts[layer − first_layer] of the MoE blocks (expert_slot: n_routed routed experts, then the
// shared expert if the block has one).
class HessianObserver final : public LinearObserver {
 public:
  HessianObserver(std::vector<quant::HessianAccumulator>& acc, ThreadPool& pool, int64_t first_layer,
                  std::span<std::vector<quant::HessianAccumulator>> experts, int64_t n_routed)
      : acc_(acc), pool_(pool), first_layer_(first_layer), experts_(experts), n_routed_(n_routed) {}

  Status observe_expert(int64_t layer, LinearRole role, int64_t expert, const float* x, int64_t m,
                        int64_t k) override {
    // gate and up see the same rows: counted once.
    if (role == LinearRole::kFfnUp) return Status::ok();
    const auto at = static_cast<size_t>(layer - first_layer_);
    std::vector<quant::HessianAccumulator>* block = at < experts_.size() ? &experts_[at] : nullptr;
    const std::optional<size_t> slot =
        block != nullptr ? expert_slot(expert, role, n_routed_, block->size()) : std::nullopt;
    if (!slot || (*block)[*slot].k() != k) {
      return Status::invalid("calibration: block " + std::to_string(layer) + " " + expert_label(expert) + " " +
                             role_name(role) + " input of " + std::to_string(k) + " features has no accumulator");
    }
    return (*block)[*slot].add(x, m, &pool_);
  }

  Status observe(int64_t layer, LinearRole role, const float* x, int64_t m, int64_t k) override {
    // q/k/v and gate/up see the same x: count it once, at the first of each.
    if (role == LinearRole::kAttnK || role == LinearRole::kAttnV || role == LinearRole::kFfnUp) return Status::ok();
    quant::HessianAccumulator& a =
        acc_[static_cast<size_t>((layer - first_layer_) * kNumLinearInputs + static_cast<int>(input_of(role)))];
    if (a.k() != k) {
      return Status::invalid("calibration: block " + std::to_string(layer) + " " + role_name(role) + " input has " +
                             std::to_string(k) + " features, expected " + std::to_string(a.k()));
    }
    return a.add(x, m, &pool_);
  }

 private:
  std::vector<quant::HessianAccumulator>& acc_;
  ThreadPool& pool_;
  int64_t first_layer_;
  std::span<std::vector<quant::HessianAccumulator>> experts_;
  int64_t n_routed_;
};

// The longest chunk, after checking every chunk is non-empty and fits the context.
Result<int64_t> check_chunks(std::span<const std::vector<int32_t>> chunks, int64_t context_length) {
  if (chunks.empty()) return Status::invalid("calibration: no token chunks");
  int64_t longest = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].empty()) return Status::invalid("calibration: chunk " + std::to_string(i) + " is empty");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(chunks[i].size()));
  }
  if (longest > context_length) {
    return Status::invalid("calibration: a chunk of " + std::to_string(longest) +
                           " tokens exceeds the context length " + std::to_string(context_length));
  }
  return longest;
}

Status add_accumulator(int64_t k, std::vector<quant::HessianAccumulator>& acc) {
  Result<quant::HessianAccumulator> a = quant::HessianAccumulator::create(k);
  if (!a) return a.status();
  acc.push_back(std::move(*a));
  return Status::ok();
}

bool is_moe_block(const Model& model, int64_t l) {
  return model.linear(l, LinearRole::kFfnGate) == nullptr && model.expert_linear(l, LinearRole::kFfnGate, 0) != nullptr;
}

// The experts' accumulators of MoE block l: [expert][gate/up, down], the routed experts, then
// the shared expert if the block has one.
Status add_expert_accumulators(const Model& model, int64_t l, std::vector<quant::HessianAccumulator>& experts) {
  const int64_t n_routed = model.config().n_expert;
  const bool shared = model.expert_linear(l, LinearRole::kFfnGate, LinearObserver::kSharedExpert) != nullptr;
  for (int64_t e = 0; e < n_routed + (shared ? 1 : 0); ++e) {
    const int64_t x = e < n_routed ? e : LinearObserver::kSharedExpert;
    for (LinearRole role : {LinearRole::kFfnGate, LinearRole::kFfnDown}) {
      const Linear* lin = model.expert_linear(l, role, x);
      if (lin == nullptr) {
        return Status::invalid("calibration: block " + std::to_string(l) + " has no " + role_name(role) + " of " +
                               expert_label(x));
      }
      if (Status s = add_accumulator(lin->k(), experts); !s) return s;
    }
  }
  return Status::ok();
}

// One accumulator per distinct input of block l's linear layers; an MoE block's FFN slots get
// 1-feature placeholders, and its experts' accumulators go to `experts` (left empty for a dense
// block).
Status add_accumulators(const Model& model, int64_t l, std::vector<quant::HessianAccumulator>& acc,
                        std::vector<quant::HessianAccumulator>& experts) {
  const bool moe = is_moe_block(model, l);
  for (LinearRole role : {LinearRole::kAttnQ, LinearRole::kAttnOutput, LinearRole::kFfnGate, LinearRole::kFfnDown}) {
    const bool ffn = role == LinearRole::kFfnGate || role == LinearRole::kFfnDown;
    const Linear* lin = model.linear(l, role);
    if (lin == nullptr && !(moe && ffn)) {
      return Status::invalid("calibration: block " + std::to_string(l) + " has no " + role_name(role));
    }
    if (Status s = add_accumulator(lin != nullptr ? lin->k() : 1, acc); !s) return s;
  }
  return moe ? add_expert_accumulators(model, l, experts) : Status::ok();
}

// The statistics of one expert's input of `role` among an MoE block's accumulators `block`.
Result<ExpertHessian> expert_statistics(const std::vector<quant::HessianAccumulator>& block, int64_t layer,
                                        LinearRole role, int64_t expert, int64_t n_routed) {
  const std::optional<size_t> slot = expert_slot(expert, role, n_routed, block.size());
  if (!model::is_ffn_role(role) || !slot) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " has no " +
                           (expert == LinearObserver::kSharedExpert ? std::string("shared expert ")
                                                                    : "routed expert " + std::to_string(expert) + " ") +
                           role_name(role));
  }
  const quant::HessianAccumulator& a = block[*slot];
  return ExpertHessian{a.h().data(), a.rows()};
}

}  // namespace

Result<ExpertHessian> CalibrationStats::expert_hessian(int64_t layer, LinearRole role, int64_t expert) const {
  if (layer < 0 || layer >= n_layer_) return Status::invalid("calibration: no block " + std::to_string(layer));
  if (!moe_block(layer)) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " is not a mixture-of-experts block");
  }
  return expert_statistics(experts_[static_cast<size_t>(layer)], layer, role, expert, n_routed_);
}

Result<const double*> StoredHessians::hessian(int64_t layer, LinearRole role) {
  if (stats_.moe_block(layer) && model::is_ffn_role(role)) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " is a mixture-of-experts block: its " +
                           role_name(role) + " statistics are per expert");
  }
  return stats_.hessian(layer, role).h().data();
}

Result<ExpertHessian> HessianSource::expert_hessian(int64_t layer, LinearRole role, int64_t expert) {
  return Status::unsupported("calibration: block " + std::to_string(layer) + " expert " + std::to_string(expert) + " " +
                             role_name(role) + ": these statistics keep none per expert (calibrate layer by layer)");
}

LinearInput input_of(LinearRole role) {
  switch (role) {
    case LinearRole::kAttnQ:
    case LinearRole::kAttnK:
    case LinearRole::kAttnV:
      return LinearInput::kAttn;
    case LinearRole::kAttnOutput:
      return LinearInput::kAttnOutput;
    case LinearRole::kFfnGate:
    case LinearRole::kFfnUp:
      return LinearInput::kFfn;
    case LinearRole::kFfnDown:
      return LinearInput::kFfnDown;
  }
  return LinearInput::kAttn;
}

Result<CalibrationStats> collect_hessians(const Model& model, std::span<const std::vector<int32_t>> chunks,
                                          const CalibrationOptions& options, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  Result<int64_t> longest = check_chunks(chunks, c.context_length);
  if (!longest) return longest.status();
  CalibrationStats stats;
  stats.n_layer_ = c.n_layer;
  stats.n_routed_ = c.n_expert;
  stats.acc_.reserve(static_cast<size_t>(c.n_layer * kNumLinearInputs));
  stats.experts_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (Status s = add_accumulators(model, l, stats.acc_, stats.experts_[static_cast<size_t>(l)]); !s) return s;
  }
  Result<std::unique_ptr<Memory>> cache = model.make_memory(*longest);
  if (!cache) return cache.status();
  std::vector<float> logits(static_cast<size_t>(c.n_vocab));
  HessianObserver observer(stats.acc_, pool, 0, stats.experts_, c.n_expert);
  const auto total = static_cast<int64_t>(chunks.size());
  for (int64_t i = 0; i < total; ++i) {
    const std::vector<int32_t>& chunk = chunks[static_cast<size_t>(i)];
    (*cache)->clear(0);
    if (Status s = model.forward(chunk, 0, **cache, logits.data(), pool, LogitsMode::kLast, &observer); !s) {
      return Status(s.code(), "calibration chunk " + std::to_string(i) + ": " + s.message());
    }
    stats.tokens_ += static_cast<int64_t>(chunk.size());
    if (options.progress) options.progress(i + 1, total);
  }
  return stats;
}

Result<LayerwiseCalibration> LayerwiseCalibration::create(const Model& model, std::vector<std::vector<int32_t>> chunks,
                                                         ThreadPool& pool, const CalibrationOptions& options) {
  Result<int64_t> longest = check_chunks(chunks, model.config().context_length);
  if (!longest) return longest.status();
  LayerwiseCalibration cal(model, pool);
  Result<std::unique_ptr<Memory>> memory = model.make_memory(*longest);
  if (!memory) return memory.status();
  cal.memory_ = std::move(*memory);
  cal.options_ = options;
  for (const std::vector<int32_t>& chunk : chunks) {
    cal.x_.push_back(model.embed(Batch::sequence(chunk, 0, 0, LogitsMode::kLast)));
    cal.tokens_ += static_cast<int64_t>(chunk.size());
  }
  cal.chunks_ = std::move(chunks);
  return cal;
}

int64_t LayerwiseCalibration::n_layer() const { return model_->config().n_layer; }

Status LayerwiseCalibration::hold(int64_t layer) {
  if (layer < 0 || layer >= n_layer()) return Status::invalid("calibration: no block " + std::to_string(layer));
  if (layer == held_) return Status::ok();
  if (layer < held_) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " asked for after block " +
                           std::to_string(held_) + " (layer-by-layer statistics go forward only)");
  }
  return advance(layer);
}

Result<const double*> LayerwiseCalibration::hessian(int64_t layer, LinearRole role) {
  if (Status s = hold(layer); !s) return s;
  const LinearInput input = input_of(role);
  if (held_moe_ && (input == LinearInput::kFfn || input == LinearInput::kFfnDown)) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " is a mixture-of-experts block: its " +
                           role_name(role) + " statistics are per expert");
  }
  return acc_[static_cast<size_t>(input)].h().data();
}

Result<ExpertHessian> LayerwiseCalibration::expert_hessian(int64_t layer, LinearRole role, int64_t expert) {
  if (Status s = hold(layer); !s) return s;
  if (!held_moe_) {
    return Status::invalid("calibration: block " + std::to_string(layer) + " is not a mixture-of-experts block");
  }
  return expert_statistics(expert_acc_, layer, role, expert, model_->config().n_expert);
}

Status LayerwiseCalibration::advance(int64_t layer) {
  acc_.clear();
  expert_acc_.clear();
  if (Status s = add_accumulators(*model_, layer, acc_, expert_acc_); !s) return s;
  held_ = layer;
  held_moe_ = !expert_acc_.empty();
  HessianObserver observer(acc_, *pool_, layer, std::span(&expert_acc_, 1), model_->config().n_expert);
  for (; next_ <= layer; ++next_) {
    for (size_t c = 0; c < chunks_.size(); ++c) {
      const Batch batch = Batch::sequence(chunks_[c], 0, 0, LogitsMode::kLast);
      memory_->clear(0);
      Status s = model_->forward_layers(batch, *memory_, x_[c].data(), next_, next_ + 1, *pool_,
                                        next_ == layer ? &observer : nullptr);
      if (!s) return Status(s.code(), "calibration chunk " + std::to_string(c) + ": " + s.message());
    }
    if (options_.progress) options_.progress(next_ + 1, n_layer());
  }
  return Status::ok();
}

std::vector<std::vector<int32_t>> calibration_chunks(std::span<const int32_t> tokens, int64_t ctx, int64_t max_tokens,
                                                     int32_t bos) {
  std::vector<std::vector<int32_t>> out;
  if (ctx < 1) return out;
  const auto n = static_cast<int64_t>(tokens.size());
  for (int64_t start = 0; start + ctx <= n; start += ctx) {
    if (max_tokens > 0 && start + ctx > max_tokens) break;
    std::vector<int32_t> chunk(tokens.begin() + start, tokens.begin() + start + ctx);
    if (bos >= 0) chunk[0] = bos;
    out.push_back(std::move(chunk));
  }
  return out;
}

}  // namespace lutq::pipeline
