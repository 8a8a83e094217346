#include "pipeline/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "core/cpu.h"
#include "core/log_probs.h"
#include "format/bcq_matrix.h"
#include "format/scale_codes.h"
#include "lutqfile/lutq_file.h"
#include "model/blocks/moe_ffn.h"
#include "model/config.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
#include "quant/gptq.h"

namespace lutq::pipeline {
namespace {

// One block layer the allocation gives bits to: a block's own linear, an MoE block's shared
// expert matrix, or one of its 3-D expert tensors (every routed expert of it at the same bits,
// as ExpertWriter resolves each expert by the tensor's name).
struct AllocTarget {
  std::string name;  // the tensor, and the pattern of its override
  int64_t layer = 0;
  LinearRole role = LinearRole::kAttnQ;
  std::vector<int64_t> experts;  // empty: the block's own layer; else its parts' experts
  bool routed = false;           // a 3-D tensor of routed experts
};

// The block layers of `c`, block by block.
std::vector<AllocTarget> alloc_targets(const ModelConfig& c) {
  std::vector<AllocTarget> out;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      if (c.n_expert <= 0 || !model::is_ffn_role(role)) {
        out.push_back({p + role_name(role) + ".weight", l, role, {}, false});
        continue;
      }
      AllocTarget routed{p + role_name(role) + "_exps.weight", l, role, {}, true};
      for (int64_t e = 0; e < c.n_expert; ++e) routed.experts.push_back(e);
      out.push_back(std::move(routed));
      if (c.n_ff_shexp > 0) {
        out.push_back({model::shared_expert_weight(l, role), l, role, {LinearObserver::kSharedExpert}, false});
      }
    }
  }
  return out;
}

// One block layer at every candidate bit count: its sensitivity and stored bits per candidate.
struct Curve {
  std::string name;
  int64_t layer = 0;
  LinearRole role = LinearRole::kAttnQ;
  std::vector<int64_t> experts;             // AllocTarget::experts
  int64_t weights = 0;                      // of all its parts
  size_t base = 0;                          // the candidate at the spec's bits
  std::vector<double> error;                // per candidate: output error, or KL once measured
  std::vector<double> bpw;                  // per candidate
  // Per candidate, one matrix per part (the layer, or each expert): kept for the KL measurement.
  std::vector<std::vector<format::BcqMatrix>> matrices;
};

// A target's weights: `parts` matrices [n][k], one after another (a 3-D tensor's experts).
struct TargetWeights {
  std::vector<float> w;
  int64_t n = 0;
  int64_t k = 0;
  int64_t parts = 1;
};

Result<TargetWeights> read_target(const io::Checkpoint& in, const AllocTarget& t) {
  const io::TensorInfo* info = in.find_tensor(t.name);
  if (info == nullptr) return Status::invalid(in.path() + ": missing tensor '" + t.name + "'");
  Result<std::vector<float>> w = in.dequantize(*info);
  if (!w) return w.status();
  TargetWeights out;
  out.k = info->dims[0];
  out.parts = t.routed ? static_cast<int64_t>(t.experts.size()) : 1;
  out.n = info->num_elements() / (out.k * out.parts);
  out.w = std::move(*w);
  return out;
}

// Part `part`'s statistics: H for the error measure (null without calibration), and the fit it
// gets as quantize_to_file gives it (a routed expert with too few rows: the plain fit).
struct PartStats {
  const double* h = nullptr;
  ExpertFit fit;
};

Result<PartStats> part_stats(const AllocTarget& t, int64_t part, const TargetWeights& tw, const LinearChoice& choice,
                             HessianSource* src, double min_rows) {
  PartStats s;
  s.fit.choice = choice;
  if (src == nullptr) return s;
  if (t.experts.empty()) {
    Result<const double*> h = src->hessian(t.layer, t.role);
    if (!h) return h.status();
    s.h = s.fit.h = *h;
    return s;
  }
  const int64_t x = t.experts[static_cast<size_t>(part)];
  Result<ExpertHessian> h = src->expert_hessian(t.layer, t.role, x);
  if (!h) return Status(h.status().code(), t.name + ": " + h.status().message());
  s.h = s.fit.h = h->h;
  if (!t.routed) return s;
  const ExpertTensor et{t.name, t.role, tw.n, tw.k, tw.parts, t.layer};
  Result<ExpertFit> fit = expert_fit(et, x, choice, src, min_rows);
  if (!fit) return fit.status();
  s.fit = *fit;
  return s;
}

// The squared output error tr((W − Ŵ) H (W − Ŵ)ᵀ) with H, or the squared weight error without.
double fit_error(const float* w, const format::BcqMatrix& q, const double* h, ThreadPool& pool) {
  if (h != nullptr) return quant::calibrated_error(w, q, h, &pool);
  const std::vector<float> wq = format::dequantize(q);
  double e = 0.0;
  for (size_t i = 0; i < wq.size(); ++i) {
    const double d = static_cast<double>(w[i]) - wq[i];
    e += d * d;
  }
  return e;
}

// A target quantized at every candidate: its stored bits, and its error summed over its parts
// (or, by_kl, its matrices for measure_curves).
Result<Curve> make_curve(const AllocTarget& t, const io::Checkpoint& in, const LinearSpec& spec,
                         const std::vector<int>& candidates, HessianSource* src, ThreadPool& pool, bool by_kl,
                         double min_rows) {
  const LinearChoice choice = spec.resolve(t.name, t.role);
  if (!choice.quantize || choice.int8) {
    return Status::invalid("bit allocation: " + t.name + " is not a BCQ layer (dense or int8 overrides cannot take part)");
  }
  Result<TargetWeights> tw = read_target(in, t);
  if (!tw) return tw.status();
  const size_t nc = candidates.size();
  const int64_t nk = tw->n * tw->k;
  Curve c;
  c.name = t.name;
  c.layer = t.layer;
  c.role = t.role;
  c.experts = t.experts;
  c.weights = nk * tw->parts;
  for (size_t ci = 0; ci < nc; ++ci) {
    if (candidates[ci] <= choice.quant.cfg.q) c.base = ci;
  }
  std::vector<double> bits(nc, 0.0);
  c.error.assign(nc, 0.0);
  c.matrices.resize(by_kl ? nc : 0);
  for (int64_t part = 0; part < tw->parts; ++part) {
    const float* w = tw->w.data() + part * nk;
    const std::string name = t.routed ? lutqfile::expert_matrix_name(t.name, part) : t.name;
    Result<PartStats> st = part_stats(t, part, *tw, choice, src, min_rows);
    if (!st) return st.status();
    for (size_t ci = 0; ci < nc; ++ci) {
      LinearChoice at = st->fit.choice;
      at.quant.cfg.q = candidates[ci];
      Result<format::BcqMatrix> q = quantize_layer(name, w, tw->n, tw->k, at, st->fit.h, pool);
      if (!q) return q.status();
      // Built in memory: checked once here, before use() packs it (Linear::from_bcq's precondition).
      if (Status s = format::validate_with_codes(*q); !s) return Status(s.code(), name + ": " + s.message());
      bits[ci] += q->bits_per_weight() * static_cast<double>(nk);
      // With calibration: the layer's output error on the calibration inputs (what GPTQ
      // minimises; its diagonal alone ignores the correlations GPTQ exploits), over the rows each
      // expert received. Without: the plain squared weight error.
      if (by_kl) {
        c.matrices[ci].push_back(std::move(*q));  // measure_curves fills c.error
      } else {
        c.error[ci] += fit_error(w, *q, st->h, pool);
      }
    }
  }
  for (double b : bits) c.bpw.push_back(b / static_cast<double>(c.weights));
  return c;
}

// Bits per layer: the index of the chosen candidate of every curve.
using Choice = std::vector<size_t>;

// Greedy knapsack: every layer starts at its lowest allowed candidate and the upgrade with the
// largest sensitivity reduction per added stored bit that still fits the budget is taken until
// none fits. Downgrades below a layer's base candidate are charged `penalty` times their measured
// sensitivity increase (1: as measured; infinity: not allowed, every layer starts at its base).
// Empty when even the starting point exceeds the budget.
Choice greedy_allocation(const std::vector<Curve>& curves, double weights, double target_bpw, double penalty) {
  const bool no_downgrades = std::isinf(penalty);
  const auto error = [&](const Curve& c, size_t at) {
    const double e = c.error[at];
    return at < c.base ? c.error[c.base] + penalty * (e - c.error[c.base]) : e;
  };
  double budget = target_bpw * weights;  // storage bits still available
  Choice at(curves.size(), 0);
  for (size_t i = 0; i < curves.size(); ++i) {
    if (no_downgrades) at[i] = curves[i].base;
    budget -= curves[i].bpw[at[i]] * static_cast<double>(curves[i].weights);
  }
  if (budget < -1e-6 * weights) return {};
  // A step that does not fit is skipped; a cheaper one may still fit.
  for (;;) {
    size_t best = curves.size();
    double best_gain = 0.0;
    for (size_t i = 0; i < curves.size(); ++i) {
      const Curve& c = curves[i];
      if (at[i] + 1 >= c.bpw.size()) continue;
      const double cost = (c.bpw[at[i] + 1] - c.bpw[at[i]]) * static_cast<double>(c.weights);
      if (cost > budget) continue;
      const double gain = (error(c, at[i]) - error(c, at[i] + 1)) / std::max(cost, 1.0);
      if (best == curves.size() || gain > best_gain) {
        best = i;
        best_gain = gain;
      }
    }
    if (best == curves.size()) break;
    budget -= (curves[best].bpw[at[best] + 1] - curves[best].bpw[at[best]]) * static_cast<double>(curves[best].weights);
    ++at[best];
  }
  return at;
}

using Chunks = std::vector<std::vector<int32_t>>;

// The loss-aware measurement: a model whose block layers can be swapped between candidates, and
// the mean KL(dense || model) over every position of one of its sets of chunks.
class KlProbe {
 public:
  static Result<KlProbe> make(const io::Checkpoint& in, std::vector<const Chunks*> sets, ThreadPool& pool) {
    Result<Model> model = Model::load(in, LoadOptions{}, pool);
    if (!model) return model.status();
    Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), std::nullopt);
    if (!isa) return isa.status();
    int64_t longest = 0;
    for (const Chunks* set : sets) {
      for (const auto& c : *set) longest = std::max<int64_t>(longest, static_cast<int64_t>(c.size()));
    }
    Result<std::unique_ptr<Memory>> cache = model->make_memory(longest);
    if (!cache) return cache.status();
    KlProbe probe(std::move(*model), std::move(*cache), std::move(sets), pool, *isa);
    probe.logits_.resize(static_cast<size_t>(longest * probe.vocab_));
    // The dense model's log-probabilities at every position of every chunk.
    for (const Chunks* set : probe.sets_) {
      auto& ref = probe.reference_.emplace_back();
      for (const auto& chunk : *set) {
        if (Status s = probe.log_probs(chunk); !s) return s;
        ref.emplace_back(probe.logits_.begin(), probe.logits_.begin() + static_cast<int64_t>(chunk.size()) * probe.vocab_);
      }
    }
    return probe;
  }

  // Puts candidate `candidate` of layer `l` into the model (a no-op when it is there already):
  // the block's layer, or each of its experts'.
  Status use(const Curve& l, size_t candidate) {
    auto [it, fresh] = current_.try_emplace(l.name, candidate);
    if (!fresh && it->second == candidate) return Status::ok();
    it->second = candidate;
    const std::vector<format::BcqMatrix>& parts = l.matrices[candidate];
    for (size_t i = 0; i < parts.size(); ++i) {
      Result<Linear> lin = Linear::from_bcq(parts[i], isa_, kernels::Precision::kFast);
      if (!lin) return lin.status();
      Status s = l.experts.empty() ? model_.replace_linear(l.layer, l.role, std::move(*lin))
                                   : model_.replace_expert_linear(l.layer, l.role, l.experts[i], std::move(*lin));
      if (!s) return s;
    }
    return Status::ok();
  }

  // Mean KL over every position of chunk set `set` (an index into make()'s sets).
  Status kl(size_t set, double* out) {
    const Chunks& chunks = *sets_[set];
    double total = 0.0;
    int64_t positions = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (Status s = log_probs(chunks[c]); !s) return s;
      for (size_t t = 0; t < chunks[c].size(); ++t) {
        const size_t at = t * static_cast<size_t>(vocab_);
        total += kl_divergence(std::span<const float>(reference_[set][c].data() + at, static_cast<size_t>(vocab_)),
                               std::span<const float>(logits_.data() + at, static_cast<size_t>(vocab_)));
      }
      positions += static_cast<int64_t>(chunks[c].size());
    }
    *out = total / static_cast<double>(std::max<int64_t>(positions, 1));
    return Status::ok();
  }

 private:
  KlProbe(Model model, std::unique_ptr<Memory> cache, std::vector<const Chunks*> sets, ThreadPool& pool, kernels::Isa isa)
      : model_(std::move(model)),
        cache_(std::move(cache)),
        sets_(std::move(sets)),
        pool_(&pool),
        isa_(isa),
        vocab_(model_.config().n_vocab) {}

  Status log_probs(const std::vector<int32_t>& chunk) {
    cache_->clear(0);
    if (Status s = model_.forward(chunk, 0, *cache_, logits_.data(), *pool_, LogitsMode::kAll); !s) return s;
    for (size_t t = 0; t < chunk.size(); ++t) {
      const std::span<float> row(logits_.data() + t * static_cast<size_t>(vocab_), static_cast<size_t>(vocab_));
      log_softmax(row, row);
    }
    return Status::ok();
  }

  Model model_;
  std::unique_ptr<Memory> cache_;
  std::vector<const Chunks*> sets_;
  ThreadPool* pool_;
  kernels::Isa isa_;
  int64_t vocab_;
  std::vector<float> logits_;
  std::vector<std::vector<std::vector<float>>> reference_;  // [set][chunk]
  std::map<std::string, size_t> current_;  // layer name -> candidate in the model
};

// Each curve's `error` becomes the model's KL (on the probe's first chunk set) with every block
// layer at its base candidate and that layer alone at each other candidate.
Status measure_curves(KlProbe& probe, std::vector<Curve>& layers, const std::function<void(int64_t, int64_t)>& progress,
                      int64_t total) {
  for (const Curve& l : layers) {
    if (Status s = probe.use(l, l.base); !s) return s;
  }
  double base_kl = 0.0;
  if (Status s = probe.kl(0, &base_kl); !s) return s;
  int64_t done = 0;
  for (Curve& l : layers) {
    l.error.assign(l.matrices.size(), base_kl);
    for (size_t c = 0; c < l.matrices.size(); ++c) {
      if (c == l.base) continue;
      if (Status s = probe.use(l, c); !s) return s;
      if (Status s = probe.kl(0, &l.error[c]); !s) return s;
      if (progress) progress(++done, total);
    }
    if (Status s = probe.use(l, l.base); !s) return s;
  }
  return Status::ok();
}

}  // namespace

std::vector<LinearOverride> BitAllocation::overrides() const {
  std::vector<LinearOverride> out;
  for (const Layer& l : layers) {
    LinearOverride o;
    o.pattern = l.name;
    o.q = l.bits;
    out.push_back(o);
  }
  return out;
}

Result<BitAllocation> allocate_bits(const io::Checkpoint& in, const LinearSpec& spec, double target_bpw,
                                    const std::vector<int>& candidates, const CalibrationStats* calib,
                                    ThreadPool& pool, const AllocationOptions& options) {
  const auto& progress = options.progress;
  const bool by_kl = !options.kl_chunks.empty();
  if (candidates.empty() || !std::is_sorted(candidates.begin(), candidates.end()) ||
      candidates.front() < 1 || candidates.back() > format::kMaxBits) {
    return Status::invalid("bit allocation: candidates must be ascending bit counts in 1..8");
  }
  Result<ModelConfig> config = ModelConfig::from_checkpoint(in);
  if (!config) return config.status();

  std::vector<Curve> curves;
  const std::vector<AllocTarget> targets = alloc_targets(*config);
  std::optional<StoredHessians> src;
  if (calib != nullptr) src.emplace(*calib);
  for (const AllocTarget& t : targets) {
    Result<Curve> c = make_curve(t, in, spec, candidates, src ? &*src : nullptr, pool, by_kl, options.expert_min_rows);
    if (!c) return c.status();
    curves.push_back(std::move(*c));
    if (progress) progress(static_cast<int64_t>(curves.size()), static_cast<int64_t>(targets.size()));
  }

  double weights = 0.0;
  for (const Curve& c : curves) weights += static_cast<double>(c.weights);
  double lowest = 0.0;
  for (const Curve& c : curves) lowest += c.bpw[0] * static_cast<double>(c.weights);
  if (lowest - target_bpw * weights > 1e-6 * weights) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "bit allocation: target %.3f bpw is below the %.3f bpw the lowest candidate (%d bits) stores",
                  target_bpw, lowest / weights, candidates.front());
    return Status::invalid(buf);
  }
  const auto result = [&](const Choice& at) {
    BitAllocation out;
    double bits_total = 0.0;
    for (size_t i = 0; i < curves.size(); ++i) {
      const Curve& c = curves[i];
      out.layers.push_back({c.name, candidates[at[i]], c.bpw[at[i]], c.weights});
      bits_total += c.bpw[at[i]] * static_cast<double>(c.weights);
    }
    out.average_bpw = bits_total / weights;
    return out;
  };
  if (!by_kl) return result(greedy_allocation(curves, weights, target_bpw, 1.0));

  // Loss-aware: measure the curves, then the whole model under the allocation of every downgrade
  // penalty on the held-out chunks, and keep the allocation with the lowest KL there.
  const Chunks& held_out = options.selection_chunks.empty() ? options.kl_chunks : options.selection_chunks;
  Result<KlProbe> probe = KlProbe::make(in, {&options.kl_chunks, &held_out}, pool);
  if (!probe) return probe.status();
  int64_t total_measurements = static_cast<int64_t>(options.penalties.size());
  for (const Curve& c : curves) total_measurements += static_cast<int64_t>(c.matrices.size()) - 1;
  if (Status s = measure_curves(*probe, curves, options.kl_progress, total_measurements); !s) return s;
  int64_t done = total_measurements - static_cast<int64_t>(options.penalties.size());
  std::vector<std::pair<Choice, double>> tried;  // allocation, its measured KL
  std::vector<BitAllocation::Trial> trials;
  size_t best = 0;
  for (double penalty : options.penalties) {
    const Choice at = greedy_allocation(curves, weights, target_bpw, penalty);
    double kl = std::numeric_limits<double>::infinity();
    auto same = std::find_if(tried.begin(), tried.end(), [&](const auto& t) { return t.first == at; });
    if (same != tried.end()) {
      kl = same->second;
    } else if (!at.empty()) {
      for (size_t i = 0; i < curves.size(); ++i) {
        if (Status s = probe->use(curves[i], at[i]); !s) return s;
      }
      if (Status s = probe->kl(1, &kl); !s) return s;
      tried.emplace_back(at, kl);
      if (kl < tried[best].second) best = tried.size() - 1;
    }
    if (!at.empty()) trials.push_back({penalty, result(at).average_bpw, kl});
    if (options.kl_progress) options.kl_progress(++done, total_measurements);
  }
  if (tried.empty()) {
    return Status::invalid("bit allocation: no downgrade penalty gives an allocation within the budget (penalties: " +
                           std::to_string(options.penalties.size()) + ")");
  }
  BitAllocation out = result(tried[best].first);
  out.kl = tried[best].second;
  out.trials = std::move(trials);
  return out;
}

}  // namespace lutq::pipeline
