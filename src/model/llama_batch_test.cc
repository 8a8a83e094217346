// LlamaModel::forward_batch against per-sequence forward() on a tiny random model: several
// sequences at different positions decoded together give the same logits and cache contents.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "model/llama.h"
#include "support/tiny_llama.h"

namespace lutq::model {
namespace {

struct Fixture {
  explicit Fixture(int threads) : pool(threads) {}
  ThreadPool pool;
  io::GgufFile gguf = testing::tiny_llama_gguf();
  LlamaModel model = std::move(*LlamaModel::load(gguf, LoadOptions{}, pool));
};

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 5 + 3) % 40));
  return p;
}

TEST(LlamaForwardBatch, MatchesPerSequenceForward) {
  for (int threads : {1, 2}) {
    Fixture f(threads);
    const auto V = static_cast<size_t>(f.model.config().n_vocab);
    const std::vector<int> lengths = {1, 5, 12, 3};
    std::vector<KvCache> batched, single;
    for (size_t s = 0; s < lengths.size(); ++s) {
      batched.push_back(std::move(*f.model.make_cache(32)));
      single.push_back(std::move(*f.model.make_cache(32)));
      const std::vector<int32_t> p = prompt(lengths[s], static_cast<int>(s));
      std::vector<float> logits(V);
      ASSERT_TRUE(f.model.forward(p, 0, batched[s], logits.data(), f.pool).is_ok());
      ASSERT_TRUE(f.model.forward(p, 0, single[s], logits.data(), f.pool).is_ok());
    }
    float worst = 0.0f;
    for (int step = 0; step < 6; ++step) {
      std::vector<BatchItem> items;
      for (size_t s = 0; s < lengths.size(); ++s) {
        items.push_back({static_cast<int32_t>((step * 11 + s * 3) % 40), batched[s].size(), &batched[s]});
      }
      std::vector<float> got(items.size() * V);
      const Status st = f.model.forward_batch(items, got.data(), f.pool);
      ASSERT_TRUE(st.is_ok()) << st.message();
      for (size_t s = 0; s < items.size(); ++s) {
        std::vector<float> want(V);
        const int32_t tok[1] = {items[s].token};
        ASSERT_TRUE(f.model.forward(tok, single[s].size(), single[s], want.data(), f.pool).is_ok());
        for (size_t v = 0; v < V; ++v) {
          worst = std::max(worst, std::abs(got[s * V + v] - want[v]) / std::max(1.0f, std::abs(want[v])));
        }
        EXPECT_EQ(batched[s].size(), single[s].size());
      }
    }
    EXPECT_LT(worst, 1e-4f) << "threads " << threads;
  }
}

TEST(LlamaForwardBatch, BatchOfOneIsBitIdenticalToForward) {
  Fixture f(2);
  const auto V = static_cast<size_t>(f.model.config().n_vocab);
  KvCache a = std::move(*f.model.make_cache(32));
  KvCache b = std::move(*f.model.make_cache(32));
  std::vector<float> la(V), lb(V);
  const std::vector<int32_t> p = prompt(9, 1);
  ASSERT_TRUE(f.model.forward(p, 0, a, la.data(), f.pool).is_ok());
  ASSERT_TRUE(f.model.forward(p, 0, b, lb.data(), f.pool).is_ok());
  const int32_t tok[1] = {17};
  ASSERT_TRUE(f.model.forward(tok, a.size(), a, la.data(), f.pool).is_ok());
  const BatchItem item{17, b.size(), &b};
  ASSERT_TRUE(f.model.forward_batch(std::span<const BatchItem>(&item, 1), lb.data(), f.pool).is_ok());
  EXPECT_EQ(la, lb);
}

TEST(LlamaForwardBatch, RejectsBadItems) {
  Fixture f(1);
  const auto V = static_cast<size_t>(f.model.config().n_vocab);
  KvCache a = std::move(*f.model.make_cache(4));
  KvCache b = std::move(*f.model.make_cache(4));
  std::vector<float> logits(2 * V);
  auto run = [&](std::vector<BatchItem> items) { return f.model.forward_batch(items, logits.data(), f.pool); };
  EXPECT_FALSE(run({}).is_ok());
  EXPECT_NE(run({{1, 0, nullptr}}).message().find("null KV cache"), std::string::npos);
  EXPECT_NE(run({{1, 0, &a}, {2, 0, &a}}).message().find("twice"), std::string::npos);
  EXPECT_NE(run({{1, 1, &a}}).message().find("gap"), std::string::npos);
  EXPECT_NE(run({{99, 0, &a}}).message().find("vocabulary"), std::string::npos);
  EXPECT_FALSE(f.model.forward_batch(std::vector<BatchItem>{{1, 0, &a}}, nullptr, f.pool).is_ok());
  for (int64_t pos = 0; pos < 4; ++pos) ASSERT_TRUE(run({{1, pos, &a}, {2, pos, &b}}).is_ok());
  EXPECT_NE(run({{1, 4, &a}}).message().find("KV cache full"), std::string::npos);
  EXPECT_EQ(a.size(), 4);
}

}  // namespace
}  // namespace lutq::model
