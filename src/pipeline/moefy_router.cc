// MoEfication routers fitted on calibration tokens: for each layer, the router row of cluster j
// is the ridge least-squares fit r_j = argmin Σ_t (r_j · h_t − s_jt)² + λ‖r_j‖², where h_t is the
// FFN input (the ffn_norm output) of calibration token t and s_jt = Σ_{i in j} |a_it| the
// cluster's activation mass (a = silu(gate h) · up h, the input of ffn_down). The dense model is
// run once; G = Σ h hᵀ and B = Σ h sᵀ are accumulated per layer, then (G + λI) R = B is solved.
#include "pipeline/moefy_router.h"

#include <cmath>
#include <string>

#include "quant/hessian.h"

namespace lutq::pipeline {
namespace {

class RouterStats final : public LinearObserver {
 public:
  RouterStats(const std::vector<std::vector<int32_t>>& clusters, int64_t experts, int64_t e, ThreadPool& pool)
      : clusters_(clusters), experts_(experts), e_(e), pool_(pool), b_(clusters.size()) {}

  Status init() {
    for (size_t l = 0; l < clusters_.size(); ++l) {
      Result<quant::HessianAccumulator> a = quant::HessianAccumulator::create(e_);
      if (!a) return a.status();
      g_.push_back(std::move(*a));
      b_[l].assign(static_cast<size_t>(e_ * experts_), 0.0);
    }
    return Status::ok();
  }

  Status observe(int64_t layer, LinearRole role, const float* x, int64_t m, int64_t k) override {
    if (role == LinearRole::kFfnGate) {
      h_.assign(x, x + m * k);
      return g_[static_cast<size_t>(layer)].add(x, m, &pool_);
    }
    if (role != LinearRole::kFfnDown) return Status::ok();
    const std::vector<int32_t>& cl = clusters_[static_cast<size_t>(layer)];
    std::vector<double>& b = b_[static_cast<size_t>(layer)];
    std::vector<double> s(static_cast<size_t>(experts_));
    for (int64_t t = 0; t < m; ++t) {
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t i = 0; i < k; ++i) s[static_cast<size_t>(cl[static_cast<size_t>(i)])] += std::abs(x[t * k + i]);
      for (int64_t c = 0; c < e_; ++c) {
        const double hc = h_[static_cast<size_t>(t * e_ + c)];
        for (int64_t j = 0; j < experts_; ++j) b[static_cast<size_t>(c * experts_ + j)] += hc * s[static_cast<size_t>(j)];
      }
    }
    return Status::ok();
  }

  const quant::HessianAccumulator& g(int64_t l) const { return g_[static_cast<size_t>(l)]; }
  const std::vector<double>& b(int64_t l) const { return b_[static_cast<size_t>(l)]; }

 private:
  const std::vector<std::vector<int32_t>>& clusters_;
  int64_t experts_, e_;
  ThreadPool& pool_;
  std::vector<quant::HessianAccumulator> g_;
  std::vector<std::vector<double>> b_;  // [layer][e][E]
  std::vector<float> h_;                // the current layer's FFN input rows
};

// Solves (G + λI) R = B for R [e][E] by Cholesky (G symmetric positive semi-definite); false when
// a pivot is not positive.
bool solve_ridge(std::vector<double> g, std::vector<double> b, int64_t e, int64_t experts, double ridge,
                 std::vector<double>& r) {
  double trace = 0.0;
  for (int64_t i = 0; i < e; ++i) trace += g[static_cast<size_t>(i * e + i)];
  const double lambda = ridge * std::max(trace / static_cast<double>(e), 1e-12);
  for (int64_t i = 0; i < e; ++i) g[static_cast<size_t>(i * e + i)] += lambda;
  for (int64_t j = 0; j < e; ++j) {  // G = L Lᵀ, L in the lower triangle
    double d = g[static_cast<size_t>(j * e + j)];
    for (int64_t p = 0; p < j; ++p) d -= g[static_cast<size_t>(j * e + p)] * g[static_cast<size_t>(j * e + p)];
    if (!(d > 0.0)) return false;
    const double ljj = std::sqrt(d);
    g[static_cast<size_t>(j * e + j)] = ljj;
    for (int64_t i = j + 1; i < e; ++i) {
      double v = g[static_cast<size_t>(i * e + j)];
      for (int64_t p = 0; p < j; ++p) v -= g[static_cast<size_t>(i * e + p)] * g[static_cast<size_t>(j * e + p)];
      g[static_cast<size_t>(i * e + j)] = v / ljj;
    }
  }
  for (int64_t c = 0; c < experts; ++c) {  // L y = b, then Lᵀ x = y, column by column
    for (int64_t i = 0; i < e; ++i) {
      double v = b[static_cast<size_t>(i * experts + c)];
      for (int64_t p = 0; p < i; ++p) v -= g[static_cast<size_t>(i * e + p)] * b[static_cast<size_t>(p * experts + c)];
      b[static_cast<size_t>(i * experts + c)] = v / g[static_cast<size_t>(i * e + i)];
    }
    for (int64_t i = e - 1; i >= 0; --i) {
      double v = b[static_cast<size_t>(i * experts + c)];
      for (int64_t p = i + 1; p < e; ++p) v -= g[static_cast<size_t>(p * e + i)] * b[static_cast<size_t>(p * experts + c)];
      b[static_cast<size_t>(i * experts + c)] = v / g[static_cast<size_t>(i * e + i)];
    }
  }
  r = std::move(b);
  return true;
}

}  // namespace

Result<std::vector<std::vector<float>>> fit_routers(const Model& model, const std::vector<std::vector<int32_t>>& clusters,
                                                    int64_t experts, std::span<const std::vector<int32_t>> chunks,
                                                    double ridge, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  RouterStats stats(clusters, experts, c.n_embd, pool);
  if (Status s = stats.init(); !s) return s;
  int64_t longest = 0;
  for (const std::vector<int32_t>& ch : chunks) longest = std::max<int64_t>(longest, static_cast<int64_t>(ch.size()));
  Result<std::unique_ptr<Memory>> memory = model.make_memory(longest);
  if (!memory) return memory.status();
  std::vector<float> logits(static_cast<size_t>(c.n_vocab));
  for (const std::vector<int32_t>& ch : chunks) {
    (*memory)->clear(0);
    if (Status s = model.forward(ch, 0, **memory, logits.data(), pool, LogitsMode::kLast, &stats); !s) return s;
  }
  std::vector<std::vector<float>> routers;  // [layer][E][e]
  for (int64_t l = 0; l < c.n_layer; ++l) {
    std::vector<double> r;
    if (!solve_ridge(stats.g(l).h(), stats.b(l), c.n_embd, experts, ridge, r)) {
      return Status::invalid("moefy: the router fit of layer " + std::to_string(l) +
                             " is singular (too few calibration tokens?)");
    }
    std::vector<float> rows(static_cast<size_t>(experts * c.n_embd));
    for (int64_t j = 0; j < experts; ++j) {
      for (int64_t i = 0; i < c.n_embd; ++i) {
        rows[static_cast<size_t>(j * c.n_embd + i)] = static_cast<float>(r[static_cast<size_t>(i * experts + j)]);
      }
    }
    routers.push_back(std::move(rows));
  }
  return routers;
}

}  // namespace lutq::pipeline
