#include "model/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/cpu.h"
#include "core/log_probs.h"
#include "format/bcq_matrix.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/quantize_model.h"
#include "quant/gptq.h"

namespace lutq::model {
namespace {

// One block layer at every candidate bit count: its sensitivity and stored bits per candidate.
struct Curve {
  std::string name;
  int64_t layer = 0;
  LinearRole role = LinearRole::kAttnQ;
  int64_t weights = 0;
  size_t base = 0;                          // the candidate at the spec's bits
  std::vector<double> error;                // per candidate: output error, or KL once measured
  std::vector<double> bpw;                  // per candidate
  std::vector<format::BcqMatrix> matrices;  // per candidate, kept for the KL measurement
};

// The model with every block layer at its base candidate, then each other candidate of each
// layer swapped in alone: mean KL(dense || model) over every position of `chunks`, written to
// each curve's `error`.
Status measure_kl(const io::Checkpoint& in, std::vector<Curve>& layers,
                  const std::vector<std::vector<int32_t>>& chunks, ThreadPool& pool,
                  const std::function<void(int64_t, int64_t)>& progress) {
  Result<LlamaModel> model = LlamaModel::load(in, LoadOptions{}, pool);
  if (!model) return model.status();
  const int64_t vocab = model->config().n_vocab;
  int64_t longest = 0;
  int64_t positions = 0;
  for (const auto& c : chunks) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(c.size()));
    positions += static_cast<int64_t>(c.size());
  }
  Result<KvCache> cache = model->make_cache(longest);
  if (!cache) return cache.status();
  std::vector<float> logits(static_cast<size_t>(longest * vocab));
  // The dense model's log-probabilities at every position of every chunk.
  std::vector<std::vector<float>> reference;
  const auto log_probs = [&](const std::vector<int32_t>& chunk) -> Status {
    cache->clear();
    if (Status s = model->forward(chunk, 0, *cache, logits.data(), pool, LogitsMode::kAll); !s) return s;
    for (size_t t = 0; t < chunk.size(); ++t) {
      const std::span<float> row(logits.data() + t * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
      log_softmax(row, row);
    }
    return Status::ok();
  };
  for (const auto& chunk : chunks) {
    if (Status s = log_probs(chunk); !s) return s;
    reference.emplace_back(logits.begin(), logits.begin() + static_cast<int64_t>(chunk.size()) * vocab);
  }
  const auto kl_of = [&](double* kl) -> Status {
    double total = 0.0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (Status s = log_probs(chunks[c]); !s) return s;
      for (size_t t = 0; t < chunks[c].size(); ++t) {
        const size_t at = t * static_cast<size_t>(vocab);
        total += kl_divergence(std::span<const float>(reference[c].data() + at, static_cast<size_t>(vocab)),
                               std::span<const float>(logits.data() + at, static_cast<size_t>(vocab)));
      }
    }
    *kl = total / static_cast<double>(positions);
    return Status::ok();
  };
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), std::nullopt);
  if (!isa) return isa.status();
  const auto use = [&](const Curve& l, size_t candidate) -> Status {
    Result<LinearLayer> lin = LinearLayer::from_bcq(l.matrices[candidate], *isa, kernels::Precision::kFast);
    if (!lin) return lin.status();
    return model->replace_linear(l.layer, l.role, std::move(*lin));
  };
  for (const Curve& l : layers) {
    if (Status s = use(l, l.base); !s) return s;
  }
  double base_kl = 0.0;
  if (Status s = kl_of(&base_kl); !s) return s;
  int64_t total = 0;
  for (const Curve& l : layers) total += static_cast<int64_t>(l.matrices.size()) - 1;
  int64_t done = 0;
  for (Curve& l : layers) {
    l.error.assign(l.matrices.size(), base_kl);
    for (size_t c = 0; c < l.matrices.size(); ++c) {
      if (c == l.base) continue;
      if (Status s = use(l, c); !s) return s;
      if (Status s = kl_of(&l.error[c]); !s) return s;
      if (progress) progress(++done, total);
    }
    if (Status s = use(l, l.base); !s) return s;
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
  const auto nc = candidates.size();

  std::vector<Curve> curves;
  const int64_t total = config->n_layer * kNumLinearRoles;
  for (int64_t l = 0; l < config->n_layer; ++l) {
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      const std::string name = "blk." + std::to_string(l) + "." + role_name(role) + ".weight";
      LinearChoice choice = spec.resolve(name, role);
      if (!choice.quantize || choice.int8) {
        return Status::invalid("bit allocation: " + name + " is not a BCQ layer (dense or int8 overrides cannot take part)");
      }
      const io::TensorInfo* info = in.find_tensor(name);
      if (info == nullptr) return Status::invalid(in.path() + ": missing tensor '" + name + "'");
      Result<std::vector<float>> w = in.dequantize(*info);
      if (!w) return w.status();
      const int64_t k = info->dims[0];
      const int64_t n = info->num_elements() / k;
      const double* h = calib != nullptr ? calib->hessian(l, role).h().data() : nullptr;
      Curve c;
      c.name = name;
      c.layer = l;
      c.role = role;
      c.weights = n * k;
      for (size_t ci = 0; ci < nc; ++ci) {
        if (candidates[ci] <= choice.quant.cfg.q) c.base = ci;
      }
      for (int bits : candidates) {
        choice.quant.cfg.q = bits;
        Result<format::BcqMatrix> q = quantize_layer(name, w->data(), n, k, choice, h, pool);
        if (!q) return q.status();
        c.bpw.push_back(q->bits_per_weight());
        if (by_kl) {
          c.matrices.push_back(std::move(*q));  // measure_kl fills c.error
          continue;
        }
        // With calibration: the layer's output error on the calibration inputs,
        // tr((W − Ŵ) H (W − Ŵ)ᵀ) with the full H (what GPTQ minimises; its diagonal alone
        // ignores the correlations GPTQ exploits). Without: the plain squared weight error.
        double e = 0.0;
        if (h != nullptr) {
          e = quant::calibrated_error(w->data(), *q, h, &pool);
        } else {
          const std::vector<float> wq = format::dequantize(*q);
          for (size_t i = 0; i < wq.size(); ++i) {
            const double d = static_cast<double>((*w)[i]) - wq[i];
            e += d * d;
          }
        }
        c.error.push_back(e);
      }
      curves.push_back(std::move(c));
      if (progress) progress(static_cast<int64_t>(curves.size()), total);
    }
  }

  if (by_kl) {
    if (Status s = measure_kl(in, curves, options.kl_chunks, pool, options.kl_progress); !s) return s;
  }
  double weights = 0.0;
  double budget = 0.0;  // storage bits still available
  for (const Curve& c : curves) weights += static_cast<double>(c.weights);
  budget = target_bpw * weights;
  std::vector<size_t> at(curves.size(), 0);
  for (const Curve& c : curves) budget -= c.bpw[0] * static_cast<double>(c.weights);
  if (budget < -1e-6 * weights) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "bit allocation: target %.3f bpw is below the %.3f bpw the lowest candidate (%d bits) stores",
                  target_bpw, target_bpw - budget / weights, candidates.front());
    return Status::invalid(buf);
  }
  // Greedy by error reduction per added bit; a step that does not fit is skipped, a cheaper one
  // may still fit.
  for (;;) {
    size_t best = curves.size();
    double best_gain = 0.0;
    for (size_t i = 0; i < curves.size(); ++i) {
      if (at[i] + 1 >= nc) continue;
      const Curve& c = curves[i];
      const double cost = (c.bpw[at[i] + 1] - c.bpw[at[i]]) * static_cast<double>(c.weights);
      if (cost > budget) continue;
      const double gain = (c.error[at[i]] - c.error[at[i] + 1]) / std::max(cost, 1.0);
      if (best == curves.size() || gain > best_gain) {
        best = i;
        best_gain = gain;
      }
    }
    if (best == curves.size()) break;
    budget -= (curves[best].bpw[at[best] + 1] - curves[best].bpw[at[best]]) * static_cast<double>(curves[best].weights);
    ++at[best];
  }

  BitAllocation out;
  double bits_total = 0.0;
  for (size_t i = 0; i < curves.size(); ++i) {
    const Curve& c = curves[i];
    out.layers.push_back({c.name, candidates[at[i]], c.bpw[at[i]], c.weights});
    bits_total += c.bpw[at[i]] * static_cast<double>(c.weights);
  }
  out.average_bpw = bits_total / weights;
  return out;
}

}  // namespace lutq::model
