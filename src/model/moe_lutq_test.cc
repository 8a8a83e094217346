// An MoE model's experts in a lutq file, one matrix per expert (docs/moe.md, "Quantized experts
// in the lutq file"): `quantize_to_file` writes each expert of a tiny random MoE as a BCQ or a
// QMoE (ternary) entry named blk.L.ffn_*_exps.e.weight instead of the 3-D tensor, the file loads
// back, and its logits equal the double-precision reference of the same model whose experts are
// the dequantized matrices read from the file; a missing expert is refused by name.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/gguf_writer.h"
#include "lutqfile/lutq_file.h"
#include "lutqfile/qmoe_entry.h"
#include "model/model.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_model.h"
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

// A tiny Mixtral-layout MoE whose experts' extents (64 and 64) suit the LUT kernels' k % 32.
TinySpec spec_for_files() {
  TinySpec s = testing::tiny_moe_spec("llama");
  s.n_embd = 64;
  s.n_ff = 64;
  return s;
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() / ("lutq_moe_" + tag + "_" + std::to_string(::getpid()) + ".lutq"))
      .string();
}

// Quantizes only the experts (attention, router and head stay dense) into `path`.
pipeline::QuantizeReport write_experts_file(const Tiny& t, const std::string& path,
                                            const pipeline::ExpertsOptions& eo) {
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  LinearSpec spec;
  Result<LinearOverride> o = parse_override("blk.*.ffn_*_exps=q=3,g=32");
  EXPECT_TRUE(o.is_ok()) << o.status().message();
  spec.overrides.push_back(*o);
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool, {}, nullptr, eo);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? *r : pipeline::QuantizeReport{};
}

// t with every expert replaced by the matrix `dequantized(name)` gives for it.
template <typename F>
Tiny with_experts(const Tiny& t, F dequantized) {
  Tiny out = t;
  for (size_t l = 0; l < out.w.layers.size(); ++l) {
    TinyWeights::Layer& layer = out.w.layers[l];
    for (size_t e = 0; e < layer.eg.size(); ++e) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const auto ex = static_cast<int64_t>(e);
      layer.eg[e] = dequantized(lutqfile::expert_matrix_name(p + "ffn_gate_exps.weight", ex));
      layer.eu[e] = dequantized(lutqfile::expert_matrix_name(p + "ffn_up_exps.weight", ex));
      layer.ed[e] = dequantized(lutqfile::expert_matrix_name(p + "ffn_down_exps.weight", ex));
    }
  }
  return out;
}

// Worst |logit − reference| relative to max(1, max |reference|), as in moe_test.cc; the bound
// 2e-4 is derived there (fp32 sums of short dot products, softmax routing weights). The BCQ
// kernel at exact precision and the QMoE kernel sum the same products in another order, which
// stays inside it.
double worst_error(const Model& model, const Tiny& reference, ThreadPool& pool) {
  const std::vector<float> got = prefill_all(model, kTokens, pool);
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

LoadOptions exact_scalar() {
  LoadOptions opt;
  opt.isa = kernels::Isa::kScalar;
  opt.precision = kernels::Precision::kExact;
  return opt;
}

TEST(MoeLutqFile, BcqExpertsLoadAndMatchTheirDequantizedMatrices) {
  const Tiny t = make_tiny(spec_for_files());
  const std::string path = temp_path("bcq");
  const pipeline::QuantizeReport report = write_experts_file(t, path, {});
  EXPECT_EQ(report.experts, 2 * 3 * t.spec.n_expert);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  EXPECT_EQ(lf->find_tensor("blk.0.ffn_up_exps.weight"), nullptr);  // replaced by the experts' entries
  EXPECT_NE(lf->find_tensor("blk.1.attn_q.weight"), nullptr);       // the dense layers copied
  Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(*lf, "blk.1.ffn_down_exps.5.weight");
  ASSERT_TRUE(entry.is_ok() && entry->has_value());
  EXPECT_EQ((*entry)->n, t.spec.n_embd);
  EXPECT_EQ((*entry)->cfg.q, 3);

  ThreadPool pool(2);
  const Model model = load_tiny(*lf, pool, exact_scalar());
  const Linear* ex = model.expert_linear(1, LinearRole::kFfnDown, 5);
  ASSERT_NE(ex, nullptr);
  EXPECT_NE(ex->bcq(), nullptr);
  EXPECT_FALSE(model.linear(0, LinearRole::kAttnQ)->is_quantized());
  const Tiny reference = with_experts(t, [&](const std::string& name) {
    Result<format::BcqMatrix> m = lutqfile::read_bcq(*lf, name);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? format::dequantize(*m) : std::vector<float>();
  });
  EXPECT_LE(worst_error(model, reference, pool), 2e-4);
  EXPECT_GT(worst_error(model, t, pool), 1e-3) << "3-bit experts should differ visibly from the fp32 ones";
  std::filesystem::remove(path);
}

TEST(MoeLutqFile, TernaryQmoeExpertsLoadAndMatchTheirDequantizedMatrices) {
  const Tiny t = make_tiny(spec_for_files());
  const std::string path = temp_path("qmoe");
  pipeline::ExpertsOptions eo;
  eo.form = pipeline::ExpertsForm::kTernary;
  const pipeline::QuantizeReport report = write_experts_file(t, path, eo);
  EXPECT_EQ(report.experts, 2 * 3 * t.spec.n_expert);
  EXPECT_GT(report.dictionary_bytes, 0);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  EXPECT_EQ(lf->find_tensor("blk.1.ffn_gate_exps.weight"), nullptr);
  EXPECT_TRUE(lutqfile::has_qmoe(*lf, "blk.1.ffn_gate_exps.2.weight"));
  EXPECT_TRUE(lf->has("lutq.qmoe_dict.experts"));

  ThreadPool pool(2);
  const Model model = load_tiny(*lf, pool, exact_scalar());
  const Linear* ex = model.expert_linear(0, LinearRole::kFfnGate, 2);
  ASSERT_NE(ex, nullptr);
  ASSERT_NE(ex->qmoe(), nullptr);
  // Every expert shares the one runtime table of the file's dictionary.
  EXPECT_EQ(ex->qmoe()->table, model.expert_linear(1, LinearRole::kFfnDown, 5)->qmoe()->table);
  lutqfile::QmoeDictionaries dicts;
  int64_t params = 0;
  int64_t bytes = 0;
  const Tiny reference = with_experts(t, [&](const std::string& name) {
    Result<std::optional<format::QmoeMatrix>> m = lutqfile::read_qmoe(*lf, name, dicts);
    EXPECT_TRUE(m.is_ok() && m->has_value()) << name;
    if (!m.is_ok() || !m->has_value()) return std::vector<float>();
    params += (*m)->n * (*m)->k;
    bytes += static_cast<int64_t>((*m)->codes.size() * 2 + (*m)->scale.size() * 2 + (*m)->row_offset.size() * 4);
    Result<format::TernaryMatrix> tm = format::decode(**m);
    EXPECT_TRUE(tm.is_ok());
    return tm.is_ok() ? format::dequantize(*tm) : std::vector<float>();
  });
  EXPECT_LE(worst_error(model, reference, pool), 2e-4);
  // Bits per parameter of the experts: codes, offsets and scales; and with the dictionary.
  const double bpw = 8.0 * static_cast<double>(bytes) / static_cast<double>(params);
  const double bpw_all = 8.0 * static_cast<double>(bytes + report.dictionary_bytes) / static_cast<double>(params);
  std::printf("tiny MoE, ternary QMoE experts: %lld parameters, %.3f bits/param (%.3f with the dictionary of %lld "
              "bytes)\n",
              static_cast<long long>(params), bpw, bpw_all, static_cast<long long>(report.dictionary_bytes));
  EXPECT_LT(bpw, 3.0);
  std::filesystem::remove(path);
}

// The load line's bpw (Model::block_linear_stats) counts every routed expert once: with ternary
// experts and fp32 attention it equals a hand count over the file's tensors as the runtime holds
// them (attention fp32; per expert I16 codes, I32 row offsets and its fp16 scales widened to
// fp32) divided by the block matrices' parameters.
TEST(MoeLutqFile, BlockLinearStatsBpwIsTheHandCountOfTheFile) {
  const Tiny t = make_tiny(spec_for_files());
  const std::string path = temp_path("stats");
  pipeline::ExpertsOptions eo;
  eo.form = pipeline::ExpertsForm::kTernary;
  write_experts_file(t, path, eo);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  const auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  int64_t params = 0;
  int64_t bits = 0;
  int64_t experts = 0;
  for (const io::TensorInfo& ti : lf->tensors()) {
    const std::string& name = ti.name;
    if (name.rfind("blk.", 0) != 0) continue;
    const int64_t elems = ti.num_elements();
    if (ends_with(name, ".qmoe_codes")) {
      bits += 16 * elems;
      ++experts;
    } else if (ends_with(name, ".qmoe_offsets") || ends_with(name, ".qmoe_scale")) {
      bits += 32 * elems;
      // One scale per row; the row length is n_ff for ffn_down, n_embd for ffn_gate / ffn_up.
      const bool down = name.find("ffn_down_exps") != std::string::npos;
      if (ends_with(name, ".qmoe_scale")) params += elems * (down ? t.spec.n_ff : t.spec.n_embd);
    } else {
      for (const char* role : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".attn_output.weight"}) {
        if (ends_with(name, role)) {
          params += elems;
          bits += 32 * elems;
        }
      }
    }
  }
  ASSERT_EQ(experts, 2 * 3 * t.spec.n_expert);

  ThreadPool pool(2);
  const Model model = load_tiny(*lf, pool, exact_scalar());
  const LinearStats stats = model.block_linear_stats();
  EXPECT_EQ(stats.linears, 2 * 4);
  EXPECT_EQ(stats.quantized, 0);
  EXPECT_EQ(stats.expert_matrices, experts);
  EXPECT_EQ(stats.experts_quantized, experts);
  EXPECT_EQ(stats.params, params);
  EXPECT_EQ(8 * stats.bytes, bits);
  EXPECT_NEAR(stats.bpw(), static_cast<double>(bits) / static_cast<double>(params), 1e-12);
  std::filesystem::remove(path);
}

// The file's BCQ experts are the matrices quantize-at-load makes from the same spec: on the same
// kernel (scalar, exact tables) the logits agree bit for bit.
TEST(MoeLutqFile, BcqExpertsEqualQuantizeAtLoadBitForBit) {
  const Tiny t = make_tiny(spec_for_files());
  const std::string path = temp_path("atload");
  write_experts_file(t, path, {});
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  ThreadPool pool(2);
  const Model from_file = load_tiny(*lf, pool, exact_scalar());

  const io::GgufFile f = open_tiny(t);
  LoadOptions at_load = exact_scalar();
  for (LinearChoice& c : at_load.linear.roles) {
    c.isa = kernels::Isa::kScalar;
    c.precision = kernels::Precision::kExact;
  }
  Result<LinearOverride> o = parse_override("blk.*.ffn_*_exps=q=3,g=32");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  at_load.linear.overrides.push_back(*o);
  const Model quantized_at_load = load_tiny(f, pool, at_load);
  ASSERT_NE(quantized_at_load.expert_linear(0, LinearRole::kFfnUp, 1)->bcq(), nullptr);
  EXPECT_EQ(prefill_all(from_file, kTokens, pool), prefill_all(quantized_at_load, kTokens, pool));
  std::filesystem::remove(path);
}

// Calibration chunks for the tiny model: enough tokens that each of the 6 experts (top-2) sees
// more rows than a quarter of its input width (ExpertsOptions::min_rows).
std::vector<std::vector<int32_t>> calibration_chunks() {
  std::vector<std::vector<int32_t>> chunks(4);
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int32_t i = 0; i < 48; ++i) chunks[c].push_back(static_cast<int32_t>((7 * i + 13 * c + i * i) % 50));
  }
  return chunks;
}

// Experts quantized with per-expert calibration statistics (GPTQ-BCQ on the rows the router
// sends to each expert, pipeline/moe_calibration_test.cc; ternary GPTQ) load back and compute
// what their stored matrices say, as the uncalibrated ones do; GPTQ is recorded as their method.
TEST(MoeLutqFile, CalibratedExpertsLoadAndMatchTheirDequantizedMatrices) {
  const Tiny t = make_tiny(spec_for_files());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model dense = load_tiny(f, pool);
  for (const bool ternary : {false, true}) {
    SCOPED_TRACE(ternary ? "ternary-gptq" : "gptq-bcq");
    Result<pipeline::LayerwiseCalibration> lw = pipeline::LayerwiseCalibration::create(dense, calibration_chunks(), pool);
    ASSERT_TRUE(lw.is_ok()) << lw.status().message();
    LinearSpec spec;
    Result<LinearOverride> o = parse_override("blk.*.ffn_*_exps=q=3,g=32,method=gptq-bcq");
    ASSERT_TRUE(o.is_ok()) << o.status().message();
    spec.overrides.push_back(*o);
    pipeline::ExpertsOptions eo;
    eo.form = ternary ? pipeline::ExpertsForm::kTernary : pipeline::ExpertsForm::kBcq;
    eo.ternary_gptq = ternary;
    const std::string path = temp_path(ternary ? "tgptq" : "gptq");
    Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool, {}, &*lw, eo);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->experts, 2 * 3 * t.spec.n_expert);
    EXPECT_EQ(r->experts_uncalibrated, 0);
    Result<io::GgufFile> lf = io::GgufFile::open(path);
    ASSERT_TRUE(lf.is_ok()) << lf.status().message();
    if (!ternary) {
      Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(*lf, "blk.1.ffn_down_exps.4.weight");
      ASSERT_TRUE(entry.is_ok() && entry->has_value());
      EXPECT_EQ((*entry)->method, "gptq-alternating");
    }
    const Model model = load_tiny(*lf, pool, exact_scalar());
    lutqfile::QmoeDictionaries dicts;
    const Tiny reference = with_experts(t, [&](const std::string& name) {
      if (!ternary) {
        Result<format::BcqMatrix> m = lutqfile::read_bcq(*lf, name);
        return m.is_ok() ? format::dequantize(*m) : std::vector<float>();
      }
      Result<std::optional<format::QmoeMatrix>> m = lutqfile::read_qmoe(*lf, name, dicts);
      if (!m.is_ok() || !m->has_value()) return std::vector<float>();
      Result<format::TernaryMatrix> tm = format::decode(**m);
      return tm.is_ok() ? format::dequantize(*tm) : std::vector<float>();
    });
    EXPECT_LE(worst_error(model, reference, pool), 2e-4);
    std::filesystem::remove(path);
  }
  // Without statistics, ternary GPTQ is refused before anything is written.
  pipeline::ExpertsOptions eo;
  eo.form = pipeline::ExpertsForm::kTernary;
  eo.ternary_gptq = true;
  const std::string path = temp_path("tgptq_nocalib");
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, LinearSpec{}, path, pool, {}, nullptr, eo);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("calibration"), std::string::npos) << r.status().message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

// Copies a GGUF image leaving out one matrix's lutq key and tensors.
std::vector<uint8_t> without_matrix(const io::GgufFile& f, const std::string& name) {
  io::GgufWriter out;
  const std::string key_of_name = std::string(lutqfile::kBcqKeyPrefix) + name;
  for (const std::string& key : f.keys()) {
    if (key == key_of_name || key.starts_with(key_of_name + ".")) continue;
    EXPECT_TRUE(out.add(key, *f.find(key)).is_ok());
  }
  for (const io::TensorInfo& t : f.tensors()) {
    if (t.name.starts_with(name + ".")) continue;
    EXPECT_TRUE(out.add_tensor(t.name, t.dims, t.type, f.tensor_bytes(t)).is_ok());
  }
  return out.to_bytes();
}

TEST(MoeLutqFile, AMissingExpertEntryIsAnErrorNamingTheMatrix) {
  const Tiny t = make_tiny(spec_for_files());
  const std::string path = temp_path("missing");
  write_experts_file(t, path, {});
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  Result<io::GgufFile> damaged =
      io::GgufFile::from_memory(without_matrix(*lf, "blk.1.ffn_up_exps.3.weight"), "damaged.lutq");
  ASSERT_TRUE(damaged.is_ok()) << damaged.status().message();
  ThreadPool pool(1);
  Result<Model> m = Model::load(*damaged, {}, pool);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("missing expert matrix 'blk.1.ffn_up_exps.3.weight'"), std::string::npos)
      << m.status().message();
  std::filesystem::remove(path);
}

// The experts kept dense by an override stay 3-D tensors, and an expert entry may sit beside its
// 3-D tensor (it then takes the place of its slice).
TEST(MoeLutqFile, DenseExpertsStayThreeDimensionalTensors) {
  const Tiny t = make_tiny(spec_for_files());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  quant::QuantOptions q;
  q.cfg.q = 4;
  q.cfg.g = 32;
  LinearSpec spec = LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact);
  Result<LinearOverride> o = parse_override("blk.*.ffn_*_exps=dense");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  spec.overrides.push_back(*o);
  const std::string path = temp_path("dense");
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->experts, 0);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  EXPECT_NE(lf->find_tensor("blk.0.ffn_up_exps.weight"), nullptr);
  EXPECT_FALSE(lutqfile::has_weight(*lf, "blk.0.ffn_up_exps.0.weight"));
  const Model model = load_tiny(*lf, pool);
  EXPECT_FALSE(model.expert_linear(0, LinearRole::kFfnUp, 0)->is_quantized());
  EXPECT_TRUE(model.linear(0, LinearRole::kAttnQ)->is_quantized());
  std::filesystem::remove(path);
}

TEST(MoeLutqFile, Int8ExpertsAreRefusedByName) {
  const Tiny t = make_tiny(spec_for_files());
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  LinearSpec spec;
  Result<LinearOverride> o = parse_override("blk.*.ffn_up_exps=int8");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  spec.overrides.push_back(*o);
  const std::string path = temp_path("int8");
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, spec, path, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("'blk.0.ffn_up_exps.weight': int8 experts"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace lutq::model
