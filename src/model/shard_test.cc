// Tensor parallelism without MPI: the shard plan, BCQ / int8 / dense slicing, and the sharded
// forward pass of N ranks simulated by N threads (support/thread_communicator.h) against the
// single-process forward.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "format/scale_codes.h"
#include "model/shard.h"
#include "support/random_bcq.h"
#include "support/thread_communicator.h"
#include "support/tiny_model.h"
#include "support/tp_check.h"

namespace lutq::model {
namespace {

using testing::ThreadCommunicator;
using testing::ThreadGroup;

ModelConfig config(int64_t n_head, int64_t n_head_kv, int64_t n_ff) {
  ModelConfig c;
  c.n_embd = 64;
  c.n_head = n_head;
  c.n_head_kv = n_head_kv;
  c.head_dim = 16;
  c.n_ff = n_ff;
  c.n_layer = 2;
  return c;
}

TEST(ShardPlan, SplitsWholeKvGroupsUnevenly) {
  const ModelConfig c = config(9, 3, 1536);  // SmolLM2's heads
  const ShardPlan r0 = *plan_shard(c, 0, 2);
  const ShardPlan r1 = *plan_shard(c, 1, 2);
  EXPECT_EQ(r0.kv_begin, 0);
  EXPECT_EQ(r0.kv_end, 1);
  EXPECT_EQ(r1.kv_begin, 1);
  EXPECT_EQ(r1.kv_end, 3);
  EXPECT_EQ(local_config(c, r1).n_head, 6);
  EXPECT_EQ(local_config(c, r1).n_head_kv, 2);
  EXPECT_EQ(r0.ff_end, 768);  // 6 units of 256 over 2 ranks
  EXPECT_EQ(r1.ff_begin, 768);
  const ShardPlan t2 = *plan_shard(c, 2, 3);
  EXPECT_EQ(t2.ff_begin, 1024);
  EXPECT_EQ(t2.ff_end, 1536);
}

TEST(ShardPlan, VocabularyOfTheHeadInUnits) {
  ModelConfig c = config(9, 3, 1536);
  c.n_vocab = 151936;  // 2^7 * 1187: units of 128
  const ShardPlan r1 = *plan_shard(c, 1, 2);
  EXPECT_EQ(r1.vocab_begin, 593 * 128);
  EXPECT_EQ(r1.vocab_end, 151936);
  EXPECT_EQ(r1.vocab_counts, (std::vector<int64_t>{593 * 128, 594 * 128}));
  EXPECT_EQ(head_slice(r1).axis, SplitAxis::kRows);
}

TEST(ShardPlan, NFfInUnitsThatKeepGroupsWhole) {
  const ModelConfig c = config(12, 2, 8960);  // Qwen2.5-1.5B: 35 units of 256
  const ShardPlan r1 = *plan_shard(c, 1, 2);
  EXPECT_EQ(r1.ff_begin, 17 * 256);
  EXPECT_EQ(r1.ff_end, 8960);
}

TEST(ShardPlan, MoreRanksThanKvHeadsIsAClearError) {
  Result<ShardPlan> p = plan_shard(config(12, 2, 8960), 0, 3);
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("cannot split 2 KV heads over 3 ranks"), std::string::npos)
      << p.status().message();
}

TEST(ShardPlan, SlicesFollowTheHeads) {
  const ModelConfig c = config(6, 3, 192);
  const ShardPlan p = *plan_shard(c, 1, 2);  // KV heads [1, 3): query heads [2, 6)
  const TensorSlice q = slice_for(p, c, LinearRole::kAttnQ);
  EXPECT_EQ(q.axis, SplitAxis::kRows);
  EXPECT_EQ(q.begin, 2 * 16);
  EXPECT_EQ(q.end, 6 * 16);
  const TensorSlice o = slice_for(p, c, LinearRole::kAttnOutput);
  EXPECT_EQ(o.axis, SplitAxis::kCols);
  EXPECT_FALSE(o.bias_here);  // added on rank 0 only
  EXPECT_EQ(slice_for(p, c, LinearRole::kAttnK).begin, 16);
  EXPECT_EQ(slice_for(p, c, LinearRole::kFfnDown).axis, SplitAxis::kCols);
}

// Slicing the stored form must equal slicing the dequantized matrix.
void expect_slice_matches(const format::BcqMatrix& w, const TensorSlice& s) {
  Result<format::BcqMatrix> part = slice_bcq(w, s, "t");
  ASSERT_TRUE(part.is_ok()) << part.status().message();
  const std::vector<float> full = format::dequantize(w);
  EXPECT_EQ(format::dequantize(*part), slice_dense(full, w.n, w.k, s));
}

TEST(ShardSlice, BcqRowsAndColumnsOnGroupBoundaries) {
  std::mt19937_64 rng(testing::test_seed());
  for (auto orient : {format::Orientation::kPerOC, format::Orientation::kPerIC}) {
    const format::BcqConfig cfg{3, 32, orient, true};
    const format::BcqMatrix w = testing::random_bcq(96, 128, cfg, rng);
    expect_slice_matches(w, {SplitAxis::kRows, 32, 96, true});
    expect_slice_matches(w, {SplitAxis::kCols, 64, 128, false});
    expect_slice_matches(w, {SplitAxis::kCols, 0, 32, true});
  }
  // The ungrouped axis may be cut anywhere (bit-level copy when not on a byte).
  const format::BcqMatrix ic = testing::random_bcq(64, 100, {2, 32, format::Orientation::kPerIC, false}, rng);
  expect_slice_matches(ic, {SplitAxis::kCols, 13, 77, true});
}

TEST(ShardSlice, CompressedScalesStayCodes) {
  // A coded matrix's slices keep their codes (kept sets) and line scales (kept lines): they still
  // decode to the slice's scales, and the slice equals slicing the dequantized matrix.
  std::mt19937_64 rng(testing::test_seed());
  for (auto orient : {format::Orientation::kPerOC, format::Orientation::kPerIC}) {
    const format::BcqConfig cfg{3, 32, orient, true};
    Result<format::BcqMatrix> w = format::encode_scales(testing::random_bcq(96, 128, cfg, rng), 6);
    ASSERT_TRUE(w.is_ok()) << w.status().message();
    for (const TensorSlice& s : {TensorSlice{SplitAxis::kRows, 32, 96, true}, TensorSlice{SplitAxis::kCols, 64, 128, false},
                                 TensorSlice{SplitAxis::kCols, 0, 32, true}}) {
      SCOPED_TRACE(std::string(format::orientation_name(orient)) + (s.axis == SplitAxis::kRows ? " rows " : " cols ") +
                   std::to_string(s.begin) + ".." + std::to_string(s.end));
      expect_slice_matches(*w, s);
      Result<format::BcqMatrix> part = slice_bcq(*w, s, "t");
      ASSERT_TRUE(part.is_ok());
      EXPECT_EQ(part->codes.bits, 6);
      EXPECT_TRUE(format::validate_codes(*part).is_ok());
      EXPECT_TRUE(format::scales_match_codes(*part));
    }
  }
}

TEST(ShardSlice, BcqCutInsideAGroupNamesTheTensor) {
  std::mt19937_64 rng(testing::test_seed());
  const format::BcqMatrix w = testing::random_bcq(64, 256, {3, 128, format::Orientation::kPerOC, false}, rng);
  Result<format::BcqMatrix> part = slice_bcq(w, {SplitAxis::kCols, 64, 256, false}, "blk.0.ffn_down.weight");
  ASSERT_FALSE(part.is_ok());
  EXPECT_NE(part.status().message().find("blk.0.ffn_down.weight"), std::string::npos);
  EXPECT_NE(part.status().message().find("groups of 128"), std::string::npos) << part.status().message();
}

TEST(ShardSlice, Int8RowsAndColumns) {
  lutqfile::Int8Entry w;
  w.n = 3;
  w.k = 4;
  for (int i = 0; i < 12; ++i) w.q.push_back(static_cast<int8_t>(i));
  w.scale = {1.0f, 2.0f, 3.0f};
  const lutqfile::Int8Entry rows = slice_int8(w, {SplitAxis::kRows, 1, 3, true});
  EXPECT_EQ(rows.q, (std::vector<int8_t>{4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(rows.scale, (std::vector<float>{2.0f, 3.0f}));
  const lutqfile::Int8Entry cols = slice_int8(w, {SplitAxis::kCols, 1, 3, false});
  EXPECT_EQ(cols.q, (std::vector<int8_t>{1, 2, 5, 6, 9, 10}));
  EXPECT_EQ(cols.scale, w.scale);
}

// Every rank's all-logits prefill, ranks running as threads.
std::vector<std::vector<float>> sharded_logits(const io::GgufFile& f, int ranks, const LoadOptions& base,
                                               const std::vector<int32_t>& tokens) {
  ThreadGroup group(ranks);
  std::vector<std::vector<float>> out(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      ThreadPool pool(1);
      LoadOptions opt = base;
      opt.comm = &comm;
      const Model m = testing::load_tiny(f, pool, opt);
      out[static_cast<size_t>(r)] = testing::prefill_all(m, tokens, pool);
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

void expect_sharded_equals_single(const testing::TinySpec& spec, const LoadOptions& opt) {
  const testing::Tiny t = testing::make_tiny(spec);
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(1);
  const Model single = testing::load_tiny(f, pool, opt);
  const std::vector<int32_t> tokens = {1, 7, 3, 11, 2, 9};
  const std::vector<float> want = testing::prefill_all(single, tokens, pool);
  const ModelConfig& full = single.config();
  for (int ranks = 1; ranks <= 3; ++ranks) {
    const std::vector<std::vector<float>> got = sharded_logits(f, ranks, opt, tokens);
    const double bound = testing::tp_logit_bound(full, want);
    for (int r = 0; r < ranks; ++r) {
      ASSERT_EQ(got[static_cast<size_t>(r)].size(), want.size());
      const double d = testing::max_abs_diff(got[static_cast<size_t>(r)], want);
      EXPECT_LE(d, bound) << spec.arch << ", " << ranks << " ranks, rank " << r;
      if (ranks == 1) {
        EXPECT_EQ(d, 0.0);  // one rank: no split, no reordering
      }
    }
    EXPECT_EQ(got.front(), got.back()) << "ranks disagree";
  }
}

testing::TinySpec three_kv_heads(const std::string& arch) {
  testing::TinySpec s;
  s.arch = arch;
  s.n_embd = 96;
  s.n_head = 6;
  s.n_head_kv = 3;  // 2 ranks: 2 + 1 KV heads (uneven)
  s.n_ff = 192;     // 2 ranks: 64 + 128
  return s;
}

TEST(TensorParallelSim, DenseLlamaEqualsSingleProcess) { expect_sharded_equals_single(three_kv_heads("llama"), {}); }

TEST(TensorParallelSim, Qwen2BiasesShardedOrAddedOnce) { expect_sharded_equals_single(three_kv_heads("qwen2"), {}); }

TEST(TensorParallelSim, Qwen3QkNormsPerLocalHead) { expect_sharded_equals_single(three_kv_heads("qwen3"), {}); }

TEST(TensorParallelSim, QuantizedAtLoadEqualsSingleProcess) {
  LoadOptions opt;
  for (int r = 0; r < kNumLinearRoles; ++r) {
    LinearChoice& ch = opt.linear.roles[static_cast<size_t>(r)];
    ch.quantize = true;
    ch.quant.cfg = format::BcqConfig{3, 32, format::Orientation::kPerOC, true};
    ch.isa = kernels::Isa::kScalar;
    ch.precision = kernels::Precision::kExact;
    ch.adapt_group = false;
  }
  opt.isa = kernels::Isa::kScalar;
  opt.precision = kernels::Precision::kExact;
  expect_sharded_equals_single(three_kv_heads("llama"), opt);
}

TEST(TensorParallelSim, MemoryHoldsOnlyTheLocalKvHeads) {
  const testing::Tiny t = testing::make_tiny(three_kv_heads("llama"));
  const io::GgufFile f = testing::open_tiny(t);
  ThreadGroup group(2);
  std::vector<int64_t> kv(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      ThreadPool pool(1);
      LoadOptions opt;
      opt.comm = &comm;
      const Model m = testing::load_tiny(f, pool, opt);
      kv[static_cast<size_t>(r)] = m.memory_shape(8, 1).n_head_kv;
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(kv, (std::vector<int64_t>{1, 2}));
}

TEST(TensorParallelSim, TooManyRanksIsAClearLoadError) {
  testing::TinySpec s;  // 2 KV heads
  const testing::Tiny t = testing::make_tiny(s);
  const io::GgufFile f = testing::open_tiny(t);
  ThreadGroup group(3);
  ThreadCommunicator comm(group, 0);  // plan_shard refuses before any collective
  ThreadPool pool(1);
  LoadOptions opt;
  opt.comm = &comm;
  Result<Model> m = Model::load(f, opt, pool);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("cannot split 2 KV heads over 3 ranks"), std::string::npos);
}

TEST(TensorParallelSim, FingerprintMismatchFailsOnEveryRank) {
  ThreadGroup group(3);
  std::vector<std::string> errors(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      ModelFingerprint f{100, 7, 1};
      if (r == 2) f.file_size = 99;
      const Status s = check_same_model(f, comm);
      errors[static_cast<size_t>(r)] = s.is_ok() ? "(ok)" : s.message();
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_NE(errors[0].find("rank(s) 2 hold a different model file"), std::string::npos) << errors[0];
  EXPECT_NE(errors[2].find("99 bytes (rank 0: 100)"), std::string::npos) << errors[2];
}

}  // namespace
}  // namespace lutq::model
