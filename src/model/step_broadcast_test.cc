// Step broadcast (model/step_broadcast.h): the message round-trips, a bad message is a clear
// error, and a leader on rank 0 with a follower on rank 1 (threads, ThreadCommunicator) computes
// what one process computes.
#include "model/step_broadcast.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "model/model.h"
#include "support/thread_communicator.h"
#include "support/tiny_model.h"
#include "support/tp_check.h"

namespace lutq::model {
namespace {

using testing::ThreadCommunicator;
using testing::ThreadGroup;

Step forward_step() {
  Step s;
  s.kind = StepKind::kForward;
  s.memory = 3;
  s.rows = {{5, 0, 0, false}, {7, 12, 1, true}, {2147483, 2147483647, 255, true}};
  return s;
}

std::vector<uint8_t> encoded(const Step& s) {
  Result<std::vector<uint8_t>> b = encode_step(s);
  EXPECT_TRUE(b.is_ok()) << b.status().message();
  return b.is_ok() ? *b : std::vector<uint8_t>{};
}

bool same(const Step& a, const Step& b) {
  const bool rows = std::equal(a.rows.begin(), a.rows.end(), b.rows.begin(), b.rows.end(),
                               [](const BatchRow& x, const BatchRow& y) {
                                 return x.token == y.token && x.pos == y.pos && x.seq == y.seq && x.logits == y.logits;
                               });
  return rows && a.kind == b.kind && a.memory == b.memory && a.capacity == b.capacity && a.sequences == b.sequences &&
         a.memory_kind == b.memory_kind && a.options == b.options && a.seq == b.seq && a.length == b.length;
}

void expect_error(std::span<const uint8_t> bytes, const std::string& want) {
  Result<Step> s = decode_step(bytes);
  ASSERT_FALSE(s.is_ok()) << "decoded: " << want;
  EXPECT_NE(s.status().message().find(want), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("step message"), std::string::npos) << s.status().message();
}

TEST(StepBroadcast, EveryKindRoundTrips) {
  Step make;
  make.kind = StepKind::kMakeMemory;
  make.memory = 1;
  make.capacity = 2048;
  make.sequences = 4;
  make.memory_kind = MemoryKind::kXQuantCl;
  make.options = {3, 2};
  Step trunc;
  trunc.kind = StepKind::kTruncate;
  trunc.memory = 1;
  trunc.seq = 2;
  trunc.length = 17;
  for (const Step& s : {make, trunc, forward_step(), Step{}}) {
    const std::vector<uint8_t> b = encoded(s);
    ASSERT_EQ(static_cast<int64_t>(b.size()), kStepHeaderBytes + kStepRowBytes * static_cast<int64_t>(s.rows.size()));
    const std::span<const uint8_t> header(b.data(), static_cast<size_t>(kStepHeaderBytes));
    EXPECT_EQ(*step_body_bytes(header), kStepRowBytes * static_cast<int64_t>(s.rows.size()));
    Result<Step> back = decode_step(b);
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    EXPECT_TRUE(same(*back, s)) << step_kind_name(s.kind);
  }
  EXPECT_EQ(encoded(forward_step()).size(), 40u + 3u * 16u);
}

TEST(StepBroadcast, BadMessagesAreClearErrors) {
  const std::vector<uint8_t> good = encoded(forward_step());
  expect_error(std::span(good).first(10), "shorter than the 40-byte header");
  expect_error(std::span(good).first(good.size() - 1), "where the header announces");
  std::vector<uint8_t> b = good;
  b[0] ^= 0xff;
  expect_error(b, "bad magic");
  b = good;
  b[4] = 9;  // kind
  expect_error(b, "unknown kind 9");
  b = good;
  b[6] = 77;  // memory kind
  expect_error(b, "unknown memory kind 77");
  b = good;
  b[static_cast<size_t>(kStepHeaderBytes) + 12] = 2;  // first row's flags
  expect_error(b, "flags 2");
  b = good;
  std::memset(b.data() + 12, 0, 4);  // a forward of 0 rows
  b.resize(static_cast<size_t>(kStepHeaderBytes));
  expect_error(b, "a forward of 0 rows");
  EXPECT_FALSE(step_body_bytes(std::span(good).first(39)).is_ok());

  Step s = forward_step();
  s.rows[0].pos = int64_t{1} << 31;
  EXPECT_FALSE(encode_step(s).is_ok());
  s.rows.clear();
  EXPECT_FALSE(encode_step(s).is_ok());
  Step stop_with_rows;
  stop_with_rows.rows = forward_step().rows;
  EXPECT_FALSE(encode_step(stop_with_rows).is_ok());
}

// The calls serve and chat make: a memory of two sequences, a prefill of each, a batched decode
// step, a truncation and a re-run from the kept prefix. Returns every logit written.
std::vector<float> run_script(const Model& m, ThreadPool& pool, StepLeader& steps) {
  const auto vocab = static_cast<size_t>(m.config().n_vocab);
  std::vector<float> all;
  std::vector<float> logits(3 * vocab);
  auto keep = [&](size_t rows) { all.insert(all.end(), logits.begin(), logits.begin() + rows * vocab); };
  Result<std::unique_ptr<Memory>> mem = steps.make_memory(16, 2, MemoryKind::kF32, {});
  EXPECT_TRUE(mem.is_ok());
  const std::vector<int32_t> a = {1, 7, 3}, b = {4, 2}, c = {9, 8};
  EXPECT_TRUE(steps.forward(a, 0, **mem, logits.data(), pool, LogitsMode::kLast, 0).is_ok());
  keep(1);
  EXPECT_TRUE(steps.forward(b, 0, **mem, logits.data(), pool, LogitsMode::kLast, 1).is_ok());
  keep(1);
  Batch decode;
  decode.add(5, 3, 0, true);
  decode.add(6, 2, 1, true);
  EXPECT_TRUE(steps.forward(decode, **mem, logits.data(), pool).is_ok());
  keep(2);
  steps.truncate(**mem, 0, 1);
  EXPECT_EQ((*mem)->size(0), 1);
  EXPECT_TRUE(steps.forward(c, 1, **mem, logits.data(), pool, LogitsMode::kAll, 0).is_ok());
  keep(2);
  return all;
}

testing::TinySpec three_kv_heads() {
  testing::TinySpec s;
  s.n_embd = 96;
  s.n_head = 6;
  s.n_head_kv = 3;
  s.n_ff = 192;
  return s;
}

TEST(StepBroadcast, FollowerRunsTheLeadersStepsLikeOneProcess) {
  const testing::Tiny t = testing::make_tiny(three_kv_heads());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(1);
  const Model single = testing::load_tiny(f, pool);
  StepLeader direct(single, nullptr);
  EXPECT_FALSE(direct.broadcasting());
  const std::vector<float> want = run_script(single, pool, direct);
  EXPECT_EQ(direct.sent().first, 0);

  ThreadGroup group(2);
  std::vector<float> got;
  Status followed = Status::invalid("not run");
  std::pair<int64_t, int64_t> sent;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      ThreadPool rank_pool(1);
      LoadOptions opt;
      opt.comm = &comm;
      const Model m = testing::load_tiny(f, rank_pool, opt);
      if (r == 0) {
        StepLeader steps(m, &comm);
        got = run_script(m, rank_pool, steps);
        steps.stop();
        steps.stop();  // once only
        sent = steps.sent();
      } else {
        followed = follow_steps(m, comm, rank_pool);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_TRUE(followed.is_ok()) << followed.message();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(testing::max_abs_diff(got, want), testing::tp_logit_bound(single.config(), want));
  EXPECT_EQ(sent.first, 7);  // make, 4 forwards, truncate, stop
  EXPECT_EQ(sent.second, 7 * kStepHeaderBytes + (3 + 2 + 2 + 2) * kStepRowBytes);
}

TEST(StepBroadcast, FollowerRefusesAMessageThatIsNotAStep) {
  const testing::Tiny t = testing::make_tiny(three_kv_heads());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadGroup group(2);
  Status followed;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      ThreadPool rank_pool(1);
      LoadOptions opt;
      opt.comm = &comm;
      const Model m = testing::load_tiny(f, rank_pool, opt);
      if (r == 0) {
        std::vector<uint8_t> junk(static_cast<size_t>(kStepHeaderBytes), 0x5a);
        EXPECT_TRUE(comm.broadcast_idle(junk.data(), kStepHeaderBytes, 0).is_ok());
      } else {
        followed = follow_steps(m, comm, rank_pool);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_FALSE(followed.is_ok());
  EXPECT_NE(followed.message().find("step message: bad magic"), std::string::npos) << followed.message();
}

}  // namespace
}  // namespace lutq::model
