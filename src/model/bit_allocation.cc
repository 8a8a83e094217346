#include "model/bit_allocation.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "format/bcq_matrix.h"
#include "model/config.h"
#include "model/quantize_model.h"
#include "quant/gptq.h"

namespace lutq::model {

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
                                    ThreadPool& pool, const std::function<void(int64_t, int64_t)>& progress) {
  if (candidates.empty() || !std::is_sorted(candidates.begin(), candidates.end()) ||
      candidates.front() < 1 || candidates.back() > format::kMaxBits) {
    return Status::invalid("bit allocation: candidates must be ascending bit counts in 1..8");
  }
  Result<ModelConfig> config = ModelConfig::from_checkpoint(in);
  if (!config) return config.status();
  const auto nc = candidates.size();

  struct Curve {
    std::string name;
    int64_t weights = 0;
    std::vector<double> error;  // per candidate
    std::vector<double> bpw;    // per candidate
  };
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
      Curve c{name, n * k, {}, {}};
      for (int bits : candidates) {
        choice.quant.cfg.q = bits;
        Result<format::BcqMatrix> q = quantize_layer(name, w->data(), n, k, choice, h, pool);
        if (!q) return q.status();
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
        c.bpw.push_back(q->bits_per_weight());
      }
      curves.push_back(std::move(c));
      if (progress) progress(static_cast<int64_t>(curves.size()), total);
    }
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
