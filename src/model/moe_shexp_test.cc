// A qwen2moe shared expert in a lutq file (docs/moe.md, "Quantized experts in the lutq file"):
// quantize_to_file quantizes blk.L.ffn_{gate,up,down}_shexp.weight like a dense block's FFN
// layers (RTN, or GPTQ-BCQ on the shared expert's own statistics: every row of its block), the
// file loads back and computes what its stored matrices say, the logits stay close to the fp32
// model's (much closer than the model without its shared expert), and an override keeping the
// shared expert dense writes it as fp32 tensors, which load as before.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "lutqfile/lutq_file.h"
#include "model/blocks/moe_ffn.h"
#include "model/model.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_model.h"
#include "quant/gptq.h"
#include "support/reference_forward.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

using testing::load_tiny;
using testing::make_tiny;
using testing::open_tiny;
using testing::prefill_all;
using testing::Tiny;
using testing::TinySpec;
using testing::TinyWeights;

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8, 25, 31};


std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() / ("lutq_shexp_" + tag + "_" + std::to_string(::getpid()) + ".lutq"))
      .string();
}

LinearSpec spec_of(const std::vector<std::string>& overrides, const LinearSpec& base = {}) {
  LinearSpec spec = base;
  for (const std::string& text : overrides) {
    Result<LinearOverride> o = parse_override(text);
    EXPECT_TRUE(o.is_ok()) << o.status().message();
    if (o.is_ok()) spec.overrides.push_back(*o);
  }
  return spec;
}

LoadOptions exact_scalar() {
  LoadOptions opt;
  opt.isa = kernels::Isa::kScalar;
  opt.precision = kernels::Precision::kExact;
  return opt;
}

// Worst |logit − reference| relative to max(1, max |reference|) (moe_test.cc's measure and bound).
double worst_error(const std::vector<float>& got, const Tiny& reference) {
  const std::vector<std::vector<double>> want = testing::reference_logits(reference, kTokens);
  double scale = 1.0;
  for (const auto& row : want) {
    for (double v : row) scale = std::max(scale, std::abs(v));
  }
  double worst = 0.0;
  const auto V = static_cast<size_t>(reference.spec.n_vocab);
  for (size_t i = 0; i < want.size() * V; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i / V][i % V]));
  }
  return worst / scale;
}

// t with every shared expert matrix replaced by `matrix(name, role)`.
template <typename F>
Tiny with_shared_experts(const Tiny& t, F matrix) {
  Tiny out = t;
  for (size_t l = 0; l < out.w.layers.size(); ++l) {
    TinyWeights::Layer& layer = out.w.layers[l];
    std::vector<float>* w[] = {&layer.sg, &layer.su, &layer.sd};
    for (int r = 0; r < 3; ++r) *w[r] = matrix(shared_expert_weight(static_cast<int64_t>(l), kFfnRoles[r]), *w[r]);
  }
  return out;
}

// The file's shared experts are BCQ entries of `bits` (down: `down_bits`) recorded as `method`;
// loaded, the model computes the reference whose shared experts are the dequantized entries,
// and its logits are far closer to the fp32 model's than those of the model without its shared
// expert (what a shared expert lost or garbled on the way would give): within 0.3 of that error
// (measured: 0.13 at 4 bits RTN with down at 5, 0.13 at 4 bits GPTQ-BCQ).
void check_quantized_file(const Tiny& t, const std::string& path, int bits, int down_bits, const std::string& method) {
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  for (int64_t l = 0; l < t.spec.n_layer; ++l) {
    for (LinearRole role : kFfnRoles) {
      const std::string name = shared_expert_weight(l, role);
      EXPECT_EQ(lf->find_tensor(name), nullptr) << name << ": the fp32 tensor is replaced";
      Result<std::optional<lutqfile::BcqEntry>> e = lutqfile::find_bcq(*lf, name);
      ASSERT_TRUE(e.is_ok() && e->has_value()) << name;
      EXPECT_EQ((*e)->cfg.q, role == LinearRole::kFfnDown ? down_bits : bits) << name;
      EXPECT_EQ((*e)->method, method) << name;
    }
    EXPECT_NE(lf->find_tensor("blk." + std::to_string(l) + ".ffn_gate_inp_shexp.weight"), nullptr);
    EXPECT_NE(lf->find_tensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight"), nullptr);
  }
  ThreadPool pool(2);
  const Model model = load_tiny(*lf, pool, exact_scalar());
  const Linear* down = model.expert_linear(1, LinearRole::kFfnDown, LinearObserver::kSharedExpert);
  ASSERT_NE(down, nullptr);
  EXPECT_NE(down->bcq(), nullptr);
  EXPECT_NE(model.describe().find("ffn_down_shexp: "), std::string::npos);
  const std::vector<float> logits = prefill_all(model, kTokens, pool);
  const Tiny stored = with_shared_experts(t, [&](const std::string& name, const std::vector<float>&) {
    Result<format::BcqMatrix> m = lutqfile::read_bcq(*lf, name);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? format::dequantize(*m) : std::vector<float>();
  });
  EXPECT_LE(worst_error(logits, stored), 2e-4);
  const Tiny without = with_shared_experts(t, [](const std::string&, const std::vector<float>& w) {
    return std::vector<float>(w.size(), 0.0f);
  });
  const double error = worst_error(logits, t);
  std::vector<float> without_logits;
  for (const std::vector<double>& row : testing::reference_logits(without, kTokens)) {
    for (double v : row) without_logits.push_back(static_cast<float>(v));
  }
  const double dropped = worst_error(without_logits, t);
  std::printf("shared expert %s, %d/%d bits: logit error %.4f (without the shared expert: %.4f)\n", method.c_str(),
              bits, down_bits, error, dropped);
  EXPECT_GT(error, 1e-4) << "quantized shared experts should differ visibly from the fp32 ones";
  EXPECT_LT(error, 0.3 * dropped);
}

// -q / the role rules apply: every block layer at 4 bits RTN with ffn_down at 5 (the shared
// expert's down included); attention, routed experts and head kept dense to isolate it.
TEST(MoeSharedExpert, RtnSharedExpertFollowsTheRoleRulesAndLoads) {
  const Tiny t = make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  quant::QuantOptions q;
  q.method = quant::Method::kRtn;
  q.cfg.q = 4;
  q.cfg.g = 32;
  const LinearSpec spec = spec_of({"ffn_down=q=5", "blk.*.attn_*=dense", "blk.*.ffn_*_exps=dense", "output=dense"},
                                  LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact));
  const std::string path = temp_path("rtn");
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->experts, 0);
  int shexp_layers = 0;
  for (const pipeline::QuantizedLayer& l : r->layers) shexp_layers += l.name.find("_shexp.") != std::string::npos;
  EXPECT_EQ(shexp_layers, 3 * t.spec.n_layer);
  check_quantized_file(t, path, 4, 5, "rtn");
  std::filesystem::remove(path);
}

// GPTQ-BCQ on the shared expert's own statistics: recorded as GPTQ, loads, and each of its
// matrices has a lower calibrated output error than the plain alternating fit of the same grid.
TEST(MoeSharedExpert, GptqBcqSharedExpertIsCalibratedOnItsOwnStatistics) {
  const Tiny t = make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model dense = load_tiny(f, pool);
  std::vector<std::vector<int32_t>> chunks(4);
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int32_t i = 0; i < 48; ++i) chunks[c].push_back(static_cast<int32_t>((7 * i + 13 * c + i * i) % 50));
  }
  std::vector<std::string> paths;
  for (const char* method : {"gptq-bcq", "alternating"}) {
    Result<pipeline::LayerwiseCalibration> lw = pipeline::LayerwiseCalibration::create(dense, chunks, pool);
    ASSERT_TRUE(lw.is_ok()) << lw.status().message();
    const LinearSpec spec = spec_of({std::string("blk.*.ffn_*_shexp=q=4,g=32,method=") + method});
    paths.push_back(temp_path(method));
    Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, paths.back(), pool, {}, &*lw);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
  }
  check_quantized_file(t, paths[0], 4, 4, "gptq-alternating");
  Result<pipeline::LayerwiseCalibration> lw = pipeline::LayerwiseCalibration::create(dense, chunks, pool);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  Result<io::GgufFile> fg = io::GgufFile::open(paths[0]);
  Result<io::GgufFile> fa = io::GgufFile::open(paths[1]);
  ASSERT_TRUE(fg.is_ok() && fa.is_ok());
  for (int64_t l = 0; l < t.spec.n_layer; ++l) {
    const TinyWeights::Layer& L = t.w.layers[static_cast<size_t>(l)];
    const std::vector<float>* w[] = {&L.sg, &L.su, &L.sd};
    for (int r = 0; r < 3; ++r) {
      const std::string name = shared_expert_weight(l, kFfnRoles[r]);
      Result<pipeline::ExpertHessian> h = lw->expert_hessian(l, kFfnRoles[r], LinearObserver::kSharedExpert);
      Result<format::BcqMatrix> qg = lutqfile::read_bcq(*fg, name);
      Result<format::BcqMatrix> qa = lutqfile::read_bcq(*fa, name);
      ASSERT_TRUE(h.is_ok() && qg.is_ok() && qa.is_ok()) << name;
      EXPECT_EQ(h->rows, 4 * 48) << name << ": every calibration row";
      EXPECT_LT(quant::calibrated_error(w[r]->data(), *qg, h->h, &pool),
                quant::calibrated_error(w[r]->data(), *qa, h->h, &pool))
          << name;
    }
  }
  for (const std::string& p : paths) std::filesystem::remove(p);
}

// `--override 'blk.*.ffn_*_shexp=dense'` keeps the shared expert as it was written before it was
// quantized (fp32 tensors), and such a file loads as before: its logits are those of the model
// whose routed experts are the file's (dequantized) BCQ matrices and whose shared expert is fp32.
TEST(MoeSharedExpert, DenseOverrideKeepsFp32SharedExpertsWhichStillLoad) {
  const Tiny t = make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  quant::QuantOptions q;
  q.cfg.q = 3;
  q.cfg.g = 32;
  const LinearSpec spec = spec_of({"blk.*.ffn_*_shexp=dense", "blk.*.attn_*=dense", "output=dense"},
                                  LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact));
  const std::string path = temp_path("dense");
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->experts, 3 * t.spec.n_layer * t.spec.n_expert);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  for (int64_t l = 0; l < t.spec.n_layer; ++l) {
    for (LinearRole role : kFfnRoles) {
      const io::TensorInfo* info = lf->find_tensor(shared_expert_weight(l, role));
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(info->type, io::GgmlType::F32);
      Result<std::optional<lutqfile::BcqEntry>> e = lutqfile::find_bcq(*lf, shared_expert_weight(l, role));
      ASSERT_TRUE(e.is_ok());
      EXPECT_FALSE(e->has_value());
    }
  }
  const Model model = load_tiny(*lf, pool, exact_scalar());
  EXPECT_NE(model.describe().find("ffn_gate_shexp: dense"), std::string::npos) << model.describe();
  Tiny reference = t;
  for (size_t l = 0; l < reference.w.layers.size(); ++l) {
    TinyWeights::Layer& layer = reference.w.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    for (size_t e = 0; e < layer.eg.size(); ++e) {
      std::vector<float>* w[] = {&layer.eg[e], &layer.eu[e], &layer.ed[e]};
      const char* base[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
      for (int r = 0; r < 3; ++r) {
        Result<format::BcqMatrix> m =
            lutqfile::read_bcq(*lf, lutqfile::expert_matrix_name(p + base[r] + ".weight", static_cast<int64_t>(e)));
        ASSERT_TRUE(m.is_ok()) << m.status().message();
        *w[r] = format::dequantize(*m);
      }
    }
  }
  EXPECT_LE(worst_error(prefill_all(model, kTokens, pool), reference), 2e-4);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace lutq::model
