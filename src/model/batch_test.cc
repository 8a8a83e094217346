// Model::forward over batches of several sequences against per-sequence forward() on a tiny
// random model: sequences at different positions decoded together, and prefill rows of one
// sequence mixed with decode rows of others, give the same logits and memory contents.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "support/tiny_llama.h"

namespace lutq::model {
namespace {

struct Fixture {
  explicit Fixture(int threads) : pool(threads) {}
  ThreadPool pool;
  io::GgufFile gguf = testing::tiny_llama_gguf();
  Model model = std::move(*Model::load(gguf, LoadOptions{}, pool));
  std::unique_ptr<Memory> memory(int64_t capacity, int64_t sequences = 1) {
    return std::move(*model.make_memory(capacity, sequences));
  }
};

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 5 + 3) % 40));
  return p;
}

float worst_relative(const float* got, const float* want, size_t n) {
  float worst = 0.0f;
  for (size_t v = 0; v < n; ++v) worst = std::max(worst, std::abs(got[v] - want[v]) / std::max(1.0f, std::abs(want[v])));
  return worst;
}

TEST(ModelBatch, DecodeOfSeveralSequencesMatchesPerSequenceForward) {
  for (int threads : {1, 2}) {
    Fixture f(threads);
    const auto V = static_cast<size_t>(f.model.config().n_vocab);
    const std::vector<int> lengths = {1, 5, 12, 3};
    const auto S = static_cast<int32_t>(lengths.size());
    std::unique_ptr<Memory> batched = f.memory(32, S);
    std::vector<std::unique_ptr<Memory>> single;
    for (int32_t s = 0; s < S; ++s) {
      single.push_back(f.memory(32));
      const std::vector<int32_t> p = prompt(lengths[static_cast<size_t>(s)], s);
      std::vector<float> logits(V);
      ASSERT_TRUE(f.model.forward(p, 0, *batched, logits.data(), f.pool, LogitsMode::kLast, nullptr, s).is_ok());
      ASSERT_TRUE(f.model.forward(p, 0, *single.back(), logits.data(), f.pool).is_ok());
    }
    float worst = 0.0f;
    for (int step = 0; step < 6; ++step) {
      Batch batch;
      for (int32_t s = 0; s < S; ++s) batch.add((step * 11 + s * 3) % 40, batched->size(s), s, true);
      std::vector<float> got(static_cast<size_t>(S) * V);
      const Status st = f.model.forward(batch, *batched, got.data(), f.pool);
      ASSERT_TRUE(st.is_ok()) << st.message();
      for (int32_t s = 0; s < S; ++s) {
        std::vector<float> want(V);
        const int32_t tok[1] = {batch.rows[static_cast<size_t>(s)].token};
        Memory& one = *single[static_cast<size_t>(s)];
        ASSERT_TRUE(f.model.forward(tok, one.size(0), one, want.data(), f.pool).is_ok());
        worst = std::max(worst, worst_relative(got.data() + static_cast<size_t>(s) * V, want.data(), V));
        EXPECT_EQ(batched->size(s), one.size(0));
      }
    }
    EXPECT_LT(worst, 1e-4f) << "threads " << threads;
  }
}

TEST(ModelBatch, PrefillRowsMixWithDecodeRows) {
  Fixture f(2);
  const auto V = static_cast<size_t>(f.model.config().n_vocab);
  std::unique_ptr<Memory> mixed = f.memory(32, 2);
  std::unique_ptr<Memory> a = f.memory(32);
  std::unique_ptr<Memory> b = f.memory(32);
  const std::vector<int32_t> pa = prompt(6, 1);
  const std::vector<int32_t> pb = prompt(5, 2);
  std::vector<float> logits(8 * V);
  // Sequence 0 already holds its prompt; sequence 1 is prefilled in the same batch that decodes 0.
  ASSERT_TRUE(f.model.forward(pa, 0, *mixed, logits.data(), f.pool, LogitsMode::kLast, nullptr, 0).is_ok());
  ASSERT_TRUE(f.model.forward(pa, 0, *a, logits.data(), f.pool).is_ok());
  Batch batch;
  for (size_t i = 0; i < pb.size(); ++i) batch.add(pb[i], static_cast<int64_t>(i), 1, i + 1 == pb.size());
  batch.add(9, 6, 0, true);
  ASSERT_TRUE(f.model.forward(batch, *mixed, logits.data(), f.pool).is_ok());
  std::vector<float> want_b(V), want_a(V);
  ASSERT_TRUE(f.model.forward(pb, 0, *b, want_b.data(), f.pool).is_ok());
  const int32_t tok[1] = {9};
  ASSERT_TRUE(f.model.forward(tok, 6, *a, want_a.data(), f.pool).is_ok());
  EXPECT_LT(worst_relative(logits.data(), want_b.data(), V), 1e-4f);
  EXPECT_LT(worst_relative(logits.data() + V, want_a.data(), V), 1e-4f);
  EXPECT_EQ(mixed->size(0), 7);
  EXPECT_EQ(mixed->size(1), 5);
}

TEST(ModelBatch, BatchOfOneIsBitIdenticalToForward) {
  Fixture f(2);
  const auto V = static_cast<size_t>(f.model.config().n_vocab);
  std::unique_ptr<Memory> a = f.memory(32);
  std::unique_ptr<Memory> b = f.memory(32, 3);
  std::vector<float> la(V), lb(V);
  const std::vector<int32_t> p = prompt(9, 1);
  ASSERT_TRUE(f.model.forward(p, 0, *a, la.data(), f.pool).is_ok());
  ASSERT_TRUE(f.model.forward(p, 0, *b, lb.data(), f.pool, LogitsMode::kLast, nullptr, 2).is_ok());
  const int32_t tok[1] = {17};
  ASSERT_TRUE(f.model.forward(tok, a->size(0), *a, la.data(), f.pool).is_ok());
  Batch batch;
  batch.add(17, b->size(2), 2, true);
  ASSERT_TRUE(f.model.forward(batch, *b, lb.data(), f.pool).is_ok());
  EXPECT_EQ(la, lb);
}

TEST(ModelBatch, RejectsBadRows) {
  Fixture f(1);
  const auto V = static_cast<size_t>(f.model.config().n_vocab);
  std::unique_ptr<Memory> mem = f.memory(4, 2);
  std::vector<float> logits(2 * V);
  auto run = [&](std::vector<BatchRow> rows) {
    Batch b;
    b.rows = std::move(rows);
    return f.model.forward(b, *mem, logits.data(), f.pool);
  };
  EXPECT_FALSE(run({}).is_ok());
  EXPECT_NE(run({{1, 0, 2, true}}).message().find("outside the memory"), std::string::npos);
  EXPECT_NE(run({{1, 0, 0, true}, {2, 0, 0, true}}).message().find("does not follow"), std::string::npos);
  EXPECT_NE(run({{1, 1, 0, true}}).message().find("gap"), std::string::npos);
  EXPECT_NE(run({{99, 0, 0, true}}).message().find("vocabulary"), std::string::npos);
  Batch one;
  one.add(1, 0, 0, true);
  EXPECT_FALSE(f.model.forward(one, *mem, nullptr, f.pool).is_ok());
  MemoryShape shape = f.model.memory_shape(4, 2);
  shape.n_layer += 1;
  std::unique_ptr<Memory> other = std::move(*make_memory(MemoryKind::kF32, shape));
  EXPECT_NE(f.model.forward(one, *other, logits.data(), f.pool).message().find("another model"), std::string::npos);
  for (int64_t pos = 0; pos < 4; ++pos) ASSERT_TRUE(run({{1, pos, 0, true}, {2, pos, 1, true}}).is_ok());
  EXPECT_NE(run({{1, 4, 0, true}}).message().find("KV cache full"), std::string::npos);
  EXPECT_EQ(mem->size(0), 4);
}

TEST(ModelBatch, MemoryAccountingMatchesTheAllocation) {
  Fixture f(1);
  const ModelConfig& c = f.model.config();
  std::unique_ptr<Memory> mem = f.memory(16, 3);
  const int64_t per_token = 2 * c.n_layer * c.kv_dim() * static_cast<int64_t>(sizeof(float));
  EXPECT_EQ(mem->bytes_per_token(), per_token);
  EXPECT_EQ(mem->bytes(), per_token * 16 * 3);
  EXPECT_EQ(memory_bytes(MemoryKind::kF32, mem->shape()), mem->bytes());
  EXPECT_EQ(f.model.make_memory(int64_t{1} << 40).status().code(), StatusCode::kOutOfMemory);
}

}  // namespace
}  // namespace lutq::model
