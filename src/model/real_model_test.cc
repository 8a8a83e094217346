// The real models against goldens from Hugging Face transformers (scripts/check_logits.py
// --goldens prints them): SmolLM2-135M-Instruct (LUTQ_MODEL_GGUF, fetched by scripts/test.sh) and
// Qwen2.5-Coder-1.5B-Instruct (LUTQ_QWEN_GGUF, scripts/fetch-qwen.sh). Both GGUFs are quantized
// at the source (Q4_1, Q4_K_M); dequantized to fp32 on both sides they are the reference models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "kernels/linear.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"

namespace lutq::model {
namespace {

// The GGUF named by environment variable `var`, or nullopt with the reason to skip.
std::optional<io::GgufFile> open_env_model(const char* var, std::string& skip) {
  const char* env = std::getenv(var);
  if (env == nullptr || *env == '\0') {
    skip = std::string(var) + " not set (scripts/test.sh sets it when the model is fetched)";
    return std::nullopt;
  }
  if (!std::filesystem::exists(env)) {
    skip = std::string("no ") + env;
    return std::nullopt;
  }
  Result<io::GgufFile> f = io::GgufFile::open(env);
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  if (!f) return std::nullopt;
  return std::move(*f);
}

Model load(const io::GgufFile& f, ThreadPool& pool) {
  Result<Model> m = Model::load(f, {}, pool);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(*m);
}

std::vector<float> prefill_all(const Model& model, const std::vector<int32_t>& tokens, ThreadPool& pool) {
  Result<std::unique_ptr<Memory>> cache = model.make_memory(static_cast<int64_t>(tokens.size()));
  EXPECT_TRUE(cache.is_ok());
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model.config().n_vocab));
  const Status s = model.forward(tokens, 0, **cache, logits.data(), pool, LogitsMode::kAll);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return logits;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_real_" + std::to_string(getpid()) + "_" + name)).string();
}

struct Logit {
  size_t pos;
  int32_t token;
  float value;
};

// Argmax per position (-1: the reference's top two are too close to call) and chosen logits.
void expect_goldens(const std::vector<float>& got, size_t V, const std::vector<int32_t>& argmax,
                    const std::vector<Logit>& logits, float tol) {
  for (size_t i = 0; i < argmax.size(); ++i) {
    if (argmax[i] < 0) continue;
    const auto top = std::max_element(got.begin() + static_cast<std::ptrdiff_t>(i * V),
                                      got.begin() + static_cast<std::ptrdiff_t>((i + 1) * V)) - got.begin();
    EXPECT_EQ(static_cast<size_t>(top) - i * V, static_cast<size_t>(argmax[i])) << "position " << i;
  }
  for (const Logit& l : logits) {
    EXPECT_NEAR(got[l.pos * V + static_cast<size_t>(l.token)], l.value, tol) << "position " << l.pos << " token "
                                                                             << l.token;
  }
}

TEST(RealModelSmolLm2, MatchesTransformersGoldens) {
  std::string skip;
  std::optional<io::GgufFile> f = open_env_model("LUTQ_MODEL_GGUF", skip);
  if (!f) GTEST_SKIP() << skip;
  ThreadPool pool(2);
  const Model model = load(*f, pool);
  const std::vector<int32_t> ids = {14086, 30,  32436, 28,  4994, 30,   20605, 4267, 28,  16647, 282,
                                    5061,  28,  24667, 14603, 28, 957,  6955, 3913,  42,   1046, 359,
                                    22712, 288, 325,   8441, 418, 451,  3847, 281,   1463, 30};
  const std::vector<int32_t> argmax = {29,  198, 282, 216, 30,  32436, 29,  28, 339, 282, 260,
                                       28,  284, 288, 28,  284, 6786,  4240, 28, 198, 359, 253,
                                       288, 457, 281, 30,  253, 655,   30,  655, 30,  198};
  const std::vector<Logit> logits = {{0, 29, 23.563629f},   {0, 28, 22.449886f},   {0, 198, 21.133686f},
                                     {0, 1000, 15.998119f}, {15, 284, 11.595066f}, {15, 260, 9.033747f},
                                     {15, 198, 8.056314f},  {15, 1000, -5.656475f}, {31, 198, 15.487021f},
                                     {31, 339, 14.296633f}, {31, 1046, 13.852270f}, {31, 1000, 1.199700f}};
  const std::vector<float> got = prefill_all(model, ids, pool);
  const auto V = static_cast<size_t>(model.config().n_vocab);
  ASSERT_EQ(V, 49152u);
  // The reference's top-1 margins are all >= 0.05; fp32 on both sides, differences from summation
  // order only: ~1e-4 observed over 256 tokens.
  expect_goldens(got, V, argmax, logits, 1e-3f);

  // The main job's path on the real model: a 4-bit lutq file (RTN, g=64, 8-bit head) written and
  // loaded back predicts the reference's next token at most positions.
  const std::string lutq_path = temp_path("smollm2-q4.lutq");
  quant::QuantOptions qo;
  qo.method = quant::Method::kRtn;
  qo.cfg.q = 4;
  qo.cfg.g = 64;
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu());
  ASSERT_TRUE(isa.is_ok());
  ASSERT_TRUE(pipeline::quantize_to_file(*f, LinearSpec::quantized(qo, *isa, kernels::Precision::kFast), lutq_path, pool).is_ok());
  Result<io::GgufFile> qf = io::GgufFile::open(lutq_path);
  ASSERT_TRUE(qf.is_ok()) << qf.status().message();
  const Model qmodel = load(*qf, pool);
  EXPECT_TRUE(qmodel.output().is_quantized());
  const std::vector<float> qgot = prefill_all(qmodel, ids, pool);
  int agree = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto top = std::max_element(qgot.begin() + static_cast<std::ptrdiff_t>(i * V),
                                      qgot.begin() + static_cast<std::ptrdiff_t>((i + 1) * V)) - qgot.begin();
    agree += static_cast<size_t>(top) - i * V == static_cast<size_t>(argmax[i]);
  }
  std::printf("[ SmolLM2 4-bit lutq file ] top-1 agreement with fp32 %d/%zu\n", agree, ids.size());
  EXPECT_GE(agree, 20);
  std::filesystem::remove(lutq_path);
}

// Qwen2.5-Coder-1.5B-Instruct (qwen2: q/k/v biases, NeoX RoPE, untied head, 151936 tokens),
// dense fp32 from its Q4_K_M GGUF. scripts/check_logits.py over 256 tokens of sotu-eval: max
// |dlogit| 6.3e-5, top-1 256/256, tokenizer ids 256/256 equal to Hugging Face's.
TEST(RealModelQwen2, MatchesTransformersGoldens) {
  std::string skip;
  std::optional<io::GgufFile> f = open_env_model("LUTQ_QWEN_GGUF", skip);
  if (!f) GTEST_SKIP() << skip;
  ThreadPool pool(2);
  const Model model = load(*f, pool);
  EXPECT_EQ(model.config().arch, "qwen2");
  EXPECT_TRUE(model.config().qkv_bias);
  EXPECT_FALSE(model.config().tied_output);
  const std::vector<int32_t> ids = {12275, 13,   29073, 11,  4392, 13,  22461, 4795,  11,   16954, 315,
                                    7992,  11,   38277, 14709, 11, 847, 12357, 8877, 25,   1205,  525,
                                    39410, 311,  387,  13675, 518, 419, 4445,  304,  3840, 13};
  const std::vector<int32_t> argmax = {13,  25164, 11,  358, 13,  31624, 29073, 11,  323,  315, 279,
                                       11,  323,   14709, 11, 323, 17639, 10283, 11,  358,  525, 20190,
                                       311, 387,   1588, 304, 419, 882,   304,   3840, 13,   1205};
  const std::vector<Logit> logits = {{0, 13, 8.408514f},       {0, 16, 7.691089f},       {0, 585, 7.638985f},
                                     {0, 1000, -5.310810f},    {16, 17639, 12.908209f},  {16, 12357, 12.800335f},
                                     {16, 4780, 11.704983f},   {16, 1000, -2.435835f},   {31, 1205, 14.763780f},
                                     {31, 1084, 13.748432f},   {31, 576, 13.665827f},    {31, 1000, -1.168740f}};
  const std::vector<float> got = prefill_all(model, ids, pool);
  const auto V = static_cast<size_t>(model.config().n_vocab);
  ASSERT_EQ(V, 151936u);
  expect_goldens(got, V, argmax, logits, 1e-3f);
}

}  // namespace
}  // namespace lutq::model
