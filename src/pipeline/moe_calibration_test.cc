// Calibration of mixture-of-experts blocks (docs/moe.md, "Calibrated experts"): the per-expert
// statistics LayerwiseCalibration collects equal a brute-force accumulation over the tokens an
// independent double-precision routing sends to each expert.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "pipeline/calibration.h"
#include "support/reference_forward.h"
#include "support/tiny_model.h"

namespace lutq::pipeline {
namespace {

using testing::Tiny;
using testing::TinySpec;

std::vector<std::vector<int32_t>> random_chunks(int n, int64_t len, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> chunks(static_cast<size_t>(n));
  for (auto& c : chunks) {
    c.resize(static_cast<size_t>(len));
    for (int32_t& t : c) t = tok(rng);
  }
  return chunks;
}

double dot(const std::vector<float>& w, int64_t row, const std::vector<double>& x) {
  double s = 0.0;
  for (size_t j = 0; j < x.size(); ++j) s += static_cast<double>(w[static_cast<size_t>(row) * x.size() + j]) * x[j];
  return s;
}

// Brute force in double: the top-k experts of softmax(router · h) (ties: the lower index).
std::vector<size_t> routed_experts(const TinySpec& s, const testing::TinyWeights::Layer& L,
                                   const std::vector<double>& h) {
  std::vector<double> z(static_cast<size_t>(s.n_expert));
  for (int64_t e = 0; e < s.n_expert; ++e) z[static_cast<size_t>(e)] = dot(L.router, e, h);
  std::vector<size_t> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return z[a] > z[b]; });
  order.resize(static_cast<size_t>(s.n_expert_used));
  return order;
}

// Σ x xᵀ over the rows routed to each expert: [expert] of {gate/up input, down input}, and rows.
struct BruteForce {
  std::vector<std::vector<double>> ffn, down;
  std::vector<int64_t> rows;
};

BruteForce brute_force(const Tiny& t, const std::vector<std::vector<int32_t>>& chunks, size_t layer) {
  const TinySpec& s = t.spec;
  const int64_t e = s.n_embd;
  const int64_t ff = testing::tiny_expert_ff(s);
  const auto E = static_cast<size_t>(s.n_expert);
  BruteForce b{std::vector<std::vector<double>>(E, std::vector<double>(static_cast<size_t>(e * e))),
               std::vector<std::vector<double>>(E, std::vector<double>(static_cast<size_t>(ff * ff))),
               std::vector<int64_t>(E)};
  const auto outer = [](std::vector<double>& acc, const std::vector<double>& x) {
    for (size_t i = 0; i < x.size(); ++i) {
      for (size_t j = 0; j < x.size(); ++j) acc[i * x.size() + j] += x[i] * x[j];
    }
  };
  const testing::TinyWeights::Layer& L = t.w.layers[layer];
  for (const std::vector<int32_t>& chunk : chunks) {
    testing::ReferenceTrace trace;
    testing::reference_logits(t, chunk, &trace);
    for (const std::vector<double>& h : trace.ffn_in[layer]) {
      for (size_t ex : routed_experts(s, L, h)) {
        std::vector<double> a(static_cast<size_t>(ff));
        for (int64_t c = 0; c < ff; ++c) {
          const double g = dot(L.eg[ex], c, h);
          a[static_cast<size_t>(c)] = g / (1.0 + std::exp(-g)) * dot(L.eu[ex], c, h);
        }
        outer(b.ffn[ex], h);
        outer(b.down[ex], a);
        ++b.rows[ex];
      }
    }
  }
  return b;
}

// Worst |H − reference| in units of 1e-4 · Σ|x_i x_j| (the reference's own magnitude): the
// runtime's fp32 activations and tile sums against the double reference.
double worst_entry(const double* h, const std::vector<double>& ref, int64_t k) {
  double worst = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const double scale = std::sqrt(ref[static_cast<size_t>(i * k + i)] * ref[static_cast<size_t>(j * k + j)]);
      const double d = std::abs(h[i * k + j] - ref[static_cast<size_t>(i * k + j)]);
      worst = std::max(worst, d / (1e-4 * scale + 1e-12));
    }
  }
  return worst;
}

TEST(MoeCalibration, ExpertStatisticsEqualBruteForceOverRoutedTokens) {
  for (const char* arch : {"llama", "qwen2moe"}) {
    SCOPED_TRACE(arch);
    const Tiny t = testing::make_tiny(testing::tiny_moe_spec(arch));
    const io::GgufFile f = testing::open_tiny(t);
    ThreadPool pool(2);
    const Model model = testing::load_tiny(f, pool);
    const std::vector<std::vector<int32_t>> chunks = random_chunks(3, 21, t.spec.n_vocab, 5);
    Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
    ASSERT_TRUE(lw.is_ok()) << lw.status().message();
    const int64_t ff = testing::tiny_expert_ff(t.spec);
    for (int64_t l = 0; l < t.spec.n_layer; ++l) {
      const BruteForce ref = brute_force(t, chunks, static_cast<size_t>(l));
      EXPECT_TRUE(lw->hessian(l, LinearRole::kAttnQ).is_ok());
      EXPECT_FALSE(lw->hessian(l, LinearRole::kFfnUp).is_ok()) << "an MoE block has no dense FFN statistics";
      int64_t routed = 0;
      for (int64_t e = 0; e < t.spec.n_expert; ++e) {
        Result<ExpertHessian> gate = lw->expert_hessian(l, LinearRole::kFfnGate, e);
        Result<ExpertHessian> up = lw->expert_hessian(l, LinearRole::kFfnUp, e);
        Result<ExpertHessian> down = lw->expert_hessian(l, LinearRole::kFfnDown, e);
        ASSERT_TRUE(gate.is_ok() && up.is_ok() && down.is_ok()) << gate.status().message();
        EXPECT_EQ(gate->h, up->h) << "gate and up read one input";
        EXPECT_EQ(gate->rows, ref.rows[static_cast<size_t>(e)]) << "layer " << l << " expert " << e;
        EXPECT_EQ(down->rows, gate->rows);
        EXPECT_LE(worst_entry(gate->h, ref.ffn[static_cast<size_t>(e)], t.spec.n_embd), 1.0) << l << "/" << e;
        EXPECT_LE(worst_entry(down->h, ref.down[static_cast<size_t>(e)], ff), 1.0) << l << "/" << e;
        routed += gate->rows;
      }
      EXPECT_EQ(routed, 3 * 21 * t.spec.n_expert_used);
      EXPECT_FALSE(lw->expert_hessian(l, LinearRole::kFfnGate, t.spec.n_expert).is_ok());
    }
    // The whole-model statistics (cache, --target-bpw) keep nothing per expert: refused by name.
    Result<CalibrationStats> whole = collect_hessians(model, chunks, {}, pool);
    ASSERT_FALSE(whole.is_ok());
    EXPECT_NE(whole.status().message().find("mixture-of-experts"), std::string::npos) << whole.status().message();
  }
}

}  // namespace
}  // namespace lutq::pipeline
