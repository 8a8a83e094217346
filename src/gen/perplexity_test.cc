#include "gen/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

namespace lutq::gen {
namespace {

TEST(PerplexityTest, LogSoftmaxIsNormalizedAndStable) {
  const std::vector<float> l = {1000.0f, 999.0f, 998.0f};
  std::vector<float> out(3);
  log_softmax(l, out);
  double s = 0.0;
  for (float v : out) s += std::exp(static_cast<double>(v));
  EXPECT_NEAR(s, 1.0, 1e-6);
  EXPECT_NEAR(out[0] - out[1], 1.0, 1e-5);
  EXPECT_TRUE(std::isfinite(out[2]));
}

TEST(PerplexityTest, UniformLogitsGivePerplexityVocab) {
  const ChunkPlan plan = *plan_chunks(8, 8, 0);
  const int64_t nv = 10;
  std::vector<float> logits(static_cast<size_t>(8 * nv), 0.0f);
  std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  PerplexityAccumulator acc;
  score_chunk(logits, toks, nv, plan, acc, nullptr);
  EXPECT_EQ(acc.count(), 3);  // positions 4, 5, 6
  EXPECT_NEAR(acc.perplexity(), 10.0, 1e-4);
  EXPECT_NEAR(acc.error(), 0.0, 1e-9);
}

TEST(PerplexityTest, ErrorMatchesLlamaCppFormula) {
  PerplexityAccumulator acc;
  const std::vector<double> nll = {1.0, 2.0, 3.0, 4.0};
  for (double v : nll) acc.add(v);
  const double mean = 2.5;
  const double var = (1 + 4 + 9 + 16) / 4.0 - mean * mean;  // 1.25
  EXPECT_NEAR(acc.perplexity(), std::exp(mean), 1e-9);
  EXPECT_NEAR(acc.error(), std::exp(mean) * std::sqrt(var / 3.0), 1e-9);
}

TEST(PerplexityTest, ChunkPlanAndBos) {
  EXPECT_FALSE(plan_chunks(10, 16, 0).is_ok());
  EXPECT_FALSE(plan_chunks(100, 2, 0).is_ok());
  const ChunkPlan p = *plan_chunks(100, 16, 0);
  EXPECT_EQ(p.n_chunks, 6);
  EXPECT_EQ(p.first_scored, 8);
  EXPECT_EQ(p.scored_per_chunk(), 7);
  EXPECT_EQ(plan_chunks(100, 16, 2)->n_chunks, 2);
  std::vector<int32_t> all(100);
  for (int i = 0; i < 100; ++i) all[static_cast<size_t>(i)] = i;
  const auto c1 = chunk_tokens(all, p, 1, -1);
  EXPECT_EQ(c1.front(), 16);
  EXPECT_EQ(c1.back(), 31);
  EXPECT_EQ(chunk_tokens(all, p, 1, 99).front(), 99);
}

TEST(PerplexityTest, KlDivergence) {
  std::vector<float> a(4), b(4);
  log_softmax(std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}, a);
  log_softmax(std::vector<float>{4.0f, 3.0f, 2.0f, 1.0f}, b);
  EXPECT_NEAR(kl_divergence(a, a), 0.0, 1e-9);
  double expect = 0.0;
  for (int i = 0; i < 4; ++i) expect += std::exp(a[i]) * (a[i] - b[i]);
  EXPECT_NEAR(kl_divergence(a, b), expect, 1e-6);
  KlStats st;
  st.add(a, a);
  st.add(a, b);
  EXPECT_EQ(st.count, 2);
  EXPECT_EQ(st.top1_same, 1);
  EXPECT_NEAR(st.mean_kl(), expect / 2, 1e-6);
}

TEST(PerplexityTest, LogProbFileRoundTrip) {
  const std::string path = (std::filesystem::temp_directory_path() / "lutq_perplexity_test.lpf").string();
  const uint32_t nv = 5;
  std::vector<float> rows(2 * nv);
  log_softmax(std::vector<float>{0.1f, 0.2f, 3.0f, -1.0f, 0.0f}, std::span<float>(rows.data(), nv));
  log_softmax(std::vector<float>{2.0f, 0.2f, 1.0f, -4.0f, 0.0f}, std::span<float>(rows.data() + nv, nv));
  const std::vector<int32_t> next = {2, 4};
  {
    auto w = LogProbWriter::open(path, LogProbHeader{nv, 8, 2, 0});
    ASSERT_TRUE(w.is_ok()) << w.status().message();
    ASSERT_TRUE(w->write(rows, next).is_ok());
    ASSERT_TRUE(w->finish(1).is_ok());
  }
  auto r = LogProbReader::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->header().n_vocab, nv);
  EXPECT_EQ(r->header().ctx, 8u);
  EXPECT_EQ(r->header().n_chunks, 1u);
  std::vector<float> got(nv);
  for (int row = 0; row < 2; ++row) {
    int32_t t = -1;
    ASSERT_TRUE(r->read(&t, got).is_ok());
    EXPECT_EQ(t, next[static_cast<size_t>(row)]);
    std::span<const float> want(rows.data() + row * nv, nv);
    for (uint32_t i = 0; i < nv; ++i) EXPECT_NEAR(got[i], want[i], 4e-3);
    EXPECT_LT(kl_divergence(got, want), 1e-4);
  }
  int32_t t = 0;
  EXPECT_FALSE(r->read(&t, got).is_ok());
  std::filesystem::remove(path);
  EXPECT_FALSE(LogProbReader::open(path).is_ok());
}

}  // namespace
}  // namespace lutq::gen
