// MoEfication (pipeline/moefy.h) on tiny random dense models: with top-k = E the converted model
// gives the dense logits; the clusters are balanced and recover planted groups; bad requests are
// refused with the reason.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "pipeline/moefy.h"
#include "support/tiny_model.h"

namespace lutq::pipeline {
namespace {

using testing::make_tiny;
using testing::open_tiny;
using testing::Tiny;
using testing::TinySpec;

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_moefy_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Logits of every position of kTokens from the model in `ckpt`.
std::vector<float> logits_of(const io::Checkpoint& ckpt, ThreadPool& pool, std::string* summary = nullptr) {
  Result<Model> m = Model::load(ckpt, {}, pool);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  if (!m) return {};
  if (summary != nullptr) *summary = m->config().summary();
  return testing::prefill_all(*m, kTokens, pool);
}

// Converts `spec`'s model with E experts and top-k, returns (dense, converted) logits.
std::pair<std::vector<float>, std::vector<float>> convert(const TinySpec& spec, int64_t experts, int64_t top_k,
                                                          std::string* summary = nullptr) {
  const Tiny t = make_tiny(spec);
  const io::GgufFile dense = open_tiny(t);
  ThreadPool pool(2);
  const std::string out = temp_path(spec.arch + std::to_string(top_k) + ".gguf");
  MoefyOptions opt;
  opt.experts = experts;
  opt.top_k = top_k;
  Result<MoefyReport> r = moefy_to_file(dense, opt, out, pool);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  Result<std::unique_ptr<io::Checkpoint>> moe = io::open_checkpoint(out);
  EXPECT_TRUE(moe.is_ok()) << moe.status().message();
  std::pair<std::vector<float>, std::vector<float>> both{logits_of(dense, pool), logits_of(**moe, pool, summary)};
  std::filesystem::remove(out);
  return both;
}

TEST(Moefy, AllExpertsReproduceTheDenseLogits) {
  for (const char* arch : {"llama", "qwen2"}) {
    TinySpec spec;
    spec.arch = arch;
    std::string summary;
    const auto [dense, moe] = convert(spec, 4, 4, &summary);
    ASSERT_EQ(dense.size(), moe.size());
    EXPECT_NE(summary.find("experts 4/4 x ffn 32 (unit weights)"), std::string::npos) << summary;
    float worst = 0.0f;
    for (size_t i = 0; i < dense.size(); ++i) {
      worst = std::max(worst, std::abs(dense[i] - moe[i]) / std::max(1.0f, std::abs(dense[i])));
    }
    EXPECT_LT(worst, 1e-4f) << arch << ": only the summation order of the FFN differs";
  }
}

TEST(Moefy, FewerExpertsRunAndChangeTheLogits) {
  const auto [dense, moe] = convert(TinySpec{}, 4, 2);
  double diff = 0.0;
  for (size_t i = 0; i < dense.size(); ++i) {
    ASSERT_TRUE(std::isfinite(moe[i]));
    diff = std::max(diff, static_cast<double>(std::abs(dense[i] - moe[i])));
  }
  EXPECT_GT(diff, 1e-3);  // half the neurons are skipped per token
}

// Routers fitted on calibration tokens: the converted model loads, is exact at top-k = E, and
// differs at top-k < E. (Which router is closer on a random tiny model says nothing about a real
// one: docs/moe.md has SmolLM2's figures.)
TEST(Moefy, CalibratedRoutersRunAndAllExpertsStayExact) {
  TinySpec spec;
  spec.n_ff = 128;
  const Tiny t = make_tiny(spec);
  const io::GgufFile dense = open_tiny(t);
  ThreadPool pool(2);
  std::vector<std::vector<int32_t>> calib;
  for (int c = 0; c < 4; ++c) {
    std::vector<int32_t> ch;
    for (int i = 0; i < 32; ++i) ch.push_back(static_cast<int32_t>((i * 13 + c * 7 + 5) % spec.n_vocab));
    calib.push_back(ch);
  }
  const std::vector<float> want = logits_of(dense, pool);
  double err[2] = {0.0, 0.0};
  for (int fitted = 0; fitted < 2; ++fitted) {
    for (int64_t top_k : {4, 2}) {
      MoefyOptions opt;
      opt.experts = 4;
      opt.top_k = top_k;
      if (fitted == 1) opt.calib = calib;
      const std::string out = temp_path("calib.gguf");
      Result<MoefyReport> r = moefy_to_file(dense, opt, out, pool);
      ASSERT_TRUE(r.is_ok()) << r.status().message();
      EXPECT_EQ(r->calib_tokens, fitted == 1 ? 128 : 0);
      Result<std::unique_ptr<io::Checkpoint>> moe = io::open_checkpoint(out);
      ASSERT_TRUE(moe.is_ok());
      const std::vector<float> got = logits_of(**moe, pool);
      std::filesystem::remove(out);
      double e2 = 0.0;
      for (size_t i = 0; i < got.size(); ++i) e2 += (got[i] - want[i]) * (got[i] - want[i]);
      if (top_k == 4) {
        EXPECT_LT(e2, 1e-6) << "top-k = E is exact whatever the router";
      } else {
        err[fitted] = e2;
      }
    }
  }
  EXPECT_GT(err[0], 0.0);
  EXPECT_GT(err[1], 0.0);
  EXPECT_NE(err[0], err[1]);  // the fitted routers choose differently
}

TEST(Moefy, BalancedClustersRecoverPlantedGroups) {
  // 4 groups of 12 rows around 4 orthogonal directions, shuffled.
  const int64_t n = 48, d = 16, k = 4;
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<int> truth(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) truth[static_cast<size_t>(i)] = static_cast<int>((i * 7) % k);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) x[static_cast<size_t>(i * d + j)] = noise(rng) + (j == truth[static_cast<size_t>(i)] ? 1.0f : 0.0f);
  }
  const std::vector<int32_t> c = balanced_clusters(x.data(), n, d, k, 10, 3);
  std::map<int32_t, int> sizes;
  std::map<int, int32_t> label;
  for (int64_t i = 0; i < n; ++i) {
    ++sizes[c[static_cast<size_t>(i)]];
    const int g = truth[static_cast<size_t>(i)];
    if (!label.count(g)) label[g] = c[static_cast<size_t>(i)];
    EXPECT_EQ(c[static_cast<size_t>(i)], label[g]) << "row " << i;
  }
  EXPECT_EQ(sizes.size(), 4u);
  for (const auto& [cl, size] : sizes) EXPECT_EQ(size, 12) << "cluster " << cl;
}

TEST(Moefy, BadRequestsAreRefused) {
  const Tiny t = make_tiny(TinySpec{});
  const io::GgufFile dense = open_tiny(t);
  ThreadPool pool(1);
  const std::string out = temp_path("bad.gguf");
  MoefyOptions opt;
  opt.experts = 5;  // n_ff = 128
  Result<MoefyReport> r = moefy_to_file(dense, opt, out, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("--experts 5 must be at least 2 and divide the FFN width 128"), std::string::npos)
      << r.status().message();
  opt.experts = 4;
  opt.top_k = 5;
  r = moefy_to_file(dense, opt, out, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("--top-k 5 must be in 1..4"), std::string::npos) << r.status().message();

  const Tiny moe = make_tiny(testing::tiny_moe_spec("llama"));
  const io::GgufFile moe_file = open_tiny(moe);
  opt.top_k = 2;
  r = moefy_to_file(moe_file, opt, out, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("already a mixture-of-experts model"), std::string::npos) << r.status().message();
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace lutq::pipeline
