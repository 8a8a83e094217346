// Calibration of mixture-of-experts blocks (docs/moe.md, "Calibrated experts"): the per-expert
// statistics LayerwiseCalibration collects equal a brute-force accumulation over the tokens an
// independent double-precision routing sends to each expert (every token for a qwen2moe shared
// expert), and GPTQ on them gives every
// expert of a tiny MoE a lower calibrated output error than the plain fit of the same grid.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "lutqfile/lutq_file.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_model.h"
#include "quant/gptq.h"
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
    // The whole-model statistics (the cache) keep the same per expert: moe_calibration_cache_test.cc.
    Result<CalibrationStats> whole = collect_hessians(model, chunks, {}, pool);
    ASSERT_TRUE(whole.is_ok()) << whole.status().message();
    EXPECT_EQ(whole->expert_hessian(1, LinearRole::kFfnDown, 2)->rows,
              lw->expert_hessian(1, LinearRole::kFfnDown, 2)->rows);
  }
}

// The shared expert runs on every row: its gate/up statistics are Σ h hᵀ over all FFN inputs h
// of the block and its down statistics Σ a aᵀ over its SwiGLU outputs a, with one row per token.
TEST(MoeCalibration, SharedExpertStatisticsCoverEveryRow) {
  const Tiny t = testing::make_tiny(testing::tiny_moe_spec("qwen2moe"));
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  const std::vector<std::vector<int32_t>> chunks = random_chunks(3, 21, t.spec.n_vocab, 5);
  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  const int64_t e = t.spec.n_embd;
  const int64_t ff = t.spec.n_ff_shexp;
  for (int64_t l = 0; l < t.spec.n_layer; ++l) {
    const testing::TinyWeights::Layer& L = t.w.layers[static_cast<size_t>(l)];
    std::vector<double> ffn(static_cast<size_t>(e * e)), down(static_cast<size_t>(ff * ff));
    int64_t rows = 0;
    for (const std::vector<int32_t>& chunk : chunks) {
      testing::ReferenceTrace trace;
      testing::reference_logits(t, chunk, &trace);
      for (const std::vector<double>& h : trace.ffn_in[static_cast<size_t>(l)]) {
        std::vector<double> a(static_cast<size_t>(ff));
        for (int64_t c = 0; c < ff; ++c) {
          const double g = dot(L.sg, c, h);
          a[static_cast<size_t>(c)] = g / (1.0 + std::exp(-g)) * dot(L.su, c, h);
        }
        for (size_t i = 0; i < h.size(); ++i) {
          for (size_t j = 0; j < h.size(); ++j) ffn[i * h.size() + j] += h[i] * h[j];
        }
        for (size_t i = 0; i < a.size(); ++i) {
          for (size_t j = 0; j < a.size(); ++j) down[i * a.size() + j] += a[i] * a[j];
        }
        ++rows;
      }
    }
    Result<ExpertHessian> gate = lw->expert_hessian(l, LinearRole::kFfnGate, LinearObserver::kSharedExpert);
    Result<ExpertHessian> up = lw->expert_hessian(l, LinearRole::kFfnUp, LinearObserver::kSharedExpert);
    Result<ExpertHessian> dn = lw->expert_hessian(l, LinearRole::kFfnDown, LinearObserver::kSharedExpert);
    ASSERT_TRUE(gate.is_ok() && up.is_ok() && dn.is_ok()) << gate.status().message();
    EXPECT_EQ(rows, 3 * 21);
    EXPECT_EQ(gate->rows, rows) << "layer " << l << ": the shared expert sees every row";
    EXPECT_EQ(dn->rows, rows);
    EXPECT_EQ(gate->h, up->h) << "gate and up read one input";
    EXPECT_LE(worst_entry(gate->h, ffn, e), 1.0) << l;
    EXPECT_LE(worst_entry(dn->h, down, ff), 1.0) << l;
    // The routed experts' statistics stay their own (their rows sum to k per token).
    int64_t routed = 0;
    for (int64_t x = 0; x < t.spec.n_expert; ++x) routed += lw->expert_hessian(l, LinearRole::kFfnGate, x)->rows;
    EXPECT_EQ(routed, rows * t.spec.n_expert_used);
  }
  // A Mixtral-layout block has no shared expert to ask for.
  const Tiny mixtral = testing::make_tiny(testing::tiny_moe_spec("llama"));
  const io::GgufFile fm = testing::open_tiny(mixtral);
  const Model mm = testing::load_tiny(fm, pool);
  Result<LayerwiseCalibration> lm = LayerwiseCalibration::create(mm, chunks, pool);
  ASSERT_TRUE(lm.is_ok()) << lm.status().message();
  Result<ExpertHessian> none = lm->expert_hessian(0, LinearRole::kFfnGate, LinearObserver::kSharedExpert);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("no shared expert"), std::string::npos) << none.status().message();
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() / ("lutq_moecal_" + tag + "_" + std::to_string(::getpid()) + ".lutq"))
      .string();
}

// The tiny MoE of these tests: 64-wide experts (the LUT kernels' k % 32), 6 of them, top-2.
TinySpec calibration_spec() {
  TinySpec s = testing::tiny_moe_spec("llama");
  s.n_embd = 64;
  s.n_ff = 64;
  return s;
}

// Quantizes only the experts of t per `override_text`, calibrated layer by layer on `chunks`.
QuantizeReport quantize_experts(const Tiny& t, const std::string& override_text,
                                const std::vector<std::vector<int32_t>>& chunks, const std::string& path,
                                const ExpertsOptions& eo = {}) {
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
  EXPECT_TRUE(lw.is_ok()) << lw.status().message();
  LinearSpec spec;
  Result<LinearOverride> o = model::parse_override(override_text);
  EXPECT_TRUE(o.is_ok()) << o.status().message();
  spec.overrides.push_back(*o);
  Result<QuantizeReport> r = quantize_to_file(f, spec, path, pool, {}, lw.is_ok() ? &*lw : nullptr, eo);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? *r : QuantizeReport{};
}

const char* kExpertNames[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

// Each expert matrix's calibrated output error tr(ΔHΔᵀ) in the files `a` and `b` (same order).
void calibrated_errors(const Tiny& t, const std::vector<std::vector<int32_t>>& chunks, const std::string& a,
                       const std::string& b, std::vector<double>& err_a, std::vector<double>& err_b) {
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  Result<io::GgufFile> fa = io::GgufFile::open(a);
  Result<io::GgufFile> fb = io::GgufFile::open(b);
  ASSERT_TRUE(fa.is_ok() && fb.is_ok());
  for (int64_t l = 0; l < t.spec.n_layer; ++l) {
    const testing::TinyWeights::Layer& L = t.w.layers[static_cast<size_t>(l)];
    for (int64_t e = 0; e < t.spec.n_expert; ++e) {
      const std::vector<float>* w[] = {&L.eg[static_cast<size_t>(e)], &L.eu[static_cast<size_t>(e)],
                                       &L.ed[static_cast<size_t>(e)]};
      for (int r = 0; r < 3; ++r) {
        const std::string name = lutqfile::expert_matrix_name(
            "blk." + std::to_string(l) + "." + kExpertNames[r] + ".weight", e);
        Result<ExpertHessian> h = lw->expert_hessian(l, model::kFfnRoles[r], e);
        Result<format::BcqMatrix> qa = lutqfile::read_bcq(*fa, name);
        Result<format::BcqMatrix> qb = lutqfile::read_bcq(*fb, name);
        ASSERT_TRUE(h.is_ok() && qa.is_ok() && qb.is_ok()) << name;
        ASSERT_GE(h->rows, 16) << name << ": too few rows for this test's seed";
        err_a.push_back(quant::calibrated_error(w[r]->data(), *qa, h->h, &pool));
        err_b.push_back(quant::calibrated_error(w[r]->data(), *qb, h->h, &pool));
      }
    }
  }
}

// GPTQ per expert on the rows routed to it beats the plain fit of the same grid on each expert's
// own calibrated output error (a property of the objective GPTQ minimises greedily, not a bound
// it guarantees: checked for every one of the 36 matrices of this fixed tiny model).
TEST(MoeCalibration, GptqExpertsBeatThePlainFitOnTheirRoutedRows) {
  const Tiny t = testing::make_tiny(calibration_spec());
  const std::vector<std::vector<int32_t>> chunks = random_chunks(6, 48, t.spec.n_vocab, 11);
  for (const auto& [gptq, plain] : {std::pair{"gptq-bcq", "alternating"}, std::pair{"gptq", "rtn"}}) {
    SCOPED_TRACE(gptq);
    const std::string a = temp_path(gptq);
    const std::string b = temp_path(plain);
    const QuantizeReport ra =
        quantize_experts(t, std::string("blk.*.ffn_*_exps=q=2,g=32,method=") + gptq, chunks, a);
    quantize_experts(t, std::string("blk.*.ffn_*_exps=q=2,g=32,method=") + plain, chunks, b);
    EXPECT_EQ(ra.experts, 3 * t.spec.n_layer * t.spec.n_expert);
    EXPECT_EQ(ra.experts_uncalibrated, 0);
    std::vector<double> err_gptq, err_plain;
    calibrated_errors(t, chunks, a, b, err_gptq, err_plain);
    ASSERT_EQ(err_gptq.size(), static_cast<size_t>(ra.experts));
    for (size_t i = 0; i < err_gptq.size(); ++i) {
      EXPECT_LT(err_gptq[i], err_plain[i]) << "expert matrix " << i;
    }
    std::filesystem::remove(a);
    std::filesystem::remove(b);
  }
}

// An expert that received too few calibration rows gets the fit without statistics: with a
// threshold no expert reaches, the GPTQ-BCQ file's experts are the plain alternating ones.
TEST(MoeCalibration, ExpertsWithTooFewRowsGetThePlainFit) {
  const Tiny t = testing::make_tiny(calibration_spec());
  const std::vector<std::vector<int32_t>> chunks = random_chunks(2, 20, t.spec.n_vocab, 3);
  ExpertsOptions eo;
  eo.min_rows = 1000.0;  // rows >= 1000·k: none
  const std::string a = temp_path("few");
  const std::string b = temp_path("plain");
  const QuantizeReport ra = quantize_experts(t, "blk.*.ffn_*_exps=q=2,g=32,method=gptq-bcq", chunks, a, eo);
  quantize_experts(t, "blk.*.ffn_*_exps=q=2,g=32,method=alternating", chunks, b);
  EXPECT_EQ(ra.experts_uncalibrated, ra.experts);
  Result<io::GgufFile> fa = io::GgufFile::open(a);
  Result<io::GgufFile> fb = io::GgufFile::open(b);
  ASSERT_TRUE(fa.is_ok() && fb.is_ok());
  for (int64_t e = 0; e < t.spec.n_expert; ++e) {
    const std::string name = lutqfile::expert_matrix_name("blk.1.ffn_down_exps.weight", e);
    Result<format::BcqMatrix> qa = lutqfile::read_bcq(*fa, name);
    Result<format::BcqMatrix> qb = lutqfile::read_bcq(*fb, name);
    ASSERT_TRUE(qa.is_ok() && qb.is_ok());
    EXPECT_EQ(format::dequantize(*qa), format::dequantize(*qb)) << name;
  }
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

}  // namespace
}  // namespace lutq::pipeline
