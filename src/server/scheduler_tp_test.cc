// The scheduler on rank 0 of two tensor-parallel ranks (threads with a ThreadCommunicator): its
// memory and forwards go through a StepLeader to rank 1's follow_steps, and the batched greedy
// texts equal the one-process scheduler's.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "model/step_broadcast.h"
#include "server/scheduler.h"
#include "support/thread_communicator.h"
#include "support/tiny_llama.h"

namespace lutq::server {
namespace {

testing::TinySpec spec() {
  testing::TinySpec s = testing::small_tiny_spec();
  s.n_embd = 96;
  s.n_head = 6;
  s.n_head_kv = 3;  // 2 ranks: 1 + 2 KV heads
  s.n_ff = 192;
  return s;
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 13 + 3) % 40));
  return p;
}

constexpr std::array<int, 4> kLengths = {3, 20, 1, 9};
constexpr std::array<int64_t, 4> kMaxTokens = {12, 7, 15, 10};

// Every request's greedy text from a scheduler with 3 slots (so requests wait and reuse slots).
std::vector<std::string> texts(const model::Model& m, ThreadPool& pool, model::StepLeader* steps) {
  const gen::Tokenizer tok{testing::tiny_llama_vocab(spec())};
  Metrics metrics;
  SchedulerOptions o;
  o.parallel = 3;
  o.ctx = 64;
  o.prefill_chunk = 8;
  o.steps = steps;
  auto sched = Scheduler::create(m, tok, pool, o, metrics);
  EXPECT_TRUE(sched.is_ok()) << sched.status().message();
  if (!sched.is_ok()) return {};
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < kLengths.size(); ++i) {
    GenRequest r;
    r.prompt = prompt(kLengths[i], static_cast<int>(i));
    r.max_tokens = kMaxTokens[i];
    r.sampling = gen::SamplerOptions{0.0f, 0, 1.0f, 0};
    Submitted s = (*sched)->submit(std::move(r));
    EXPECT_TRUE(s.job) << s.message;
    if (s.job) jobs.push_back(s.job);
  }
  std::vector<std::string> out;
  for (auto& job : jobs) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string text;
    JobUpdate u;
    do {
      u = job->wait(std::chrono::milliseconds(50));
      text += u.text;
    } while (!u.finished && std::chrono::steady_clock::now() < deadline);
    EXPECT_TRUE(u.finished);
    EXPECT_EQ(u.reason, FinishReason::kLength);
    out.push_back(text);
  }
  (*sched)->stop();
  return out;
}

TEST(SchedulerTensorParallel, TwoRanksAnswerLikeOneProcess) {
  const io::GgufFile f = testing::tiny_llama_gguf(spec());
  ThreadPool pool(1);
  Result<model::Model> single = model::Model::load(f, model::LoadOptions{}, pool);
  ASSERT_TRUE(single.is_ok()) << single.status().message();
  const std::vector<std::string> want = texts(*single, pool, nullptr);
  ASSERT_EQ(want.size(), kLengths.size());

  testing::ThreadGroup group(2);
  std::vector<std::string> got;
  Status followed = Status::invalid("not run");
  int64_t steps_sent = 0;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      testing::ThreadCommunicator comm(group, r);
      ThreadPool rank_pool(1);
      model::LoadOptions opt;
      opt.comm = &comm;
      Result<model::Model> m = model::Model::load(f, opt, rank_pool);
      ASSERT_TRUE(m.is_ok()) << m.status().message();
      if (r == 0) {
        model::StepLeader steps(*m, &comm);
        got = texts(*m, rank_pool, &steps);
        steps.stop();
        steps_sent = steps.sent().first;
      } else {
        followed = model::follow_steps(*m, comm, rank_pool);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(followed.is_ok()) << followed.message();
  EXPECT_EQ(got, want);
  EXPECT_GT(steps_sent, 10);
}

}  // namespace
}  // namespace lutq::server
