// The scheduler on a tiny random model: batched greedy generation equals one Session per
// prompt, the queue bound, cancellation freeing a slot, stop strings; plus StopMatcher and the
// metrics text.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gen/session.h"
#include "server/stop_matcher.h"
#include "support/tiny_llama.h"

namespace lutq::server {
namespace {

using std::chrono::milliseconds;

struct Fixture {
  ThreadPool pool{2};
  io::GgufFile gguf = testing::tiny_llama_gguf();
  model::Model model = std::move(*model::Model::load(gguf, model::LoadOptions{}, pool));
  gen::Tokenizer tok{testing::tiny_llama_vocab()};
  Metrics metrics;

  std::unique_ptr<Scheduler> make(int parallel, int64_t queue, int64_t ctx = 128, int64_t chunk = 8) {
    SchedulerOptions o;
    o.parallel = parallel;
    o.queue_limit = queue;
    o.ctx = ctx;
    o.prefill_chunk = chunk;
    auto s = Scheduler::create(model, tok, pool, o, metrics);
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    return std::move(*s);
  }

  // Greedy text of one Session (the single-sequence reference).
  std::string reference(const std::vector<int32_t>& prompt, int64_t max_tokens) {
    auto s = gen::Session::create(model, tok, pool, 128);
    EXPECT_TRUE(s->prefill(prompt).is_ok());
    gen::Sampler greedy(gen::SamplerOptions{0.0f, 0, 1.0f, 0});
    std::string text;
    EXPECT_TRUE(s->generate(max_tokens, greedy, [&](std::string_view p) { text += p; }).is_ok());
    return text;
  }
};

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + salt * 13 + 3) % 40));
  return p;
}

GenRequest greedy_request(std::vector<int32_t> p, int64_t max_tokens) {
  GenRequest r;
  r.prompt = std::move(p);
  r.max_tokens = max_tokens;
  r.sampling = gen::SamplerOptions{0.0f, 0, 1.0f, 0};
  return r;
}

// Collects a job's text until it finishes (bounded: fails the test after 30 s).
JobUpdate drain(Job& job, std::string& text) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  JobUpdate u;
  do {
    u = job.wait(milliseconds(50));
    text += u.text;
  } while (!u.finished && std::chrono::steady_clock::now() < deadline);
  EXPECT_TRUE(u.finished) << "job did not finish";
  return u;
}

TEST(Scheduler, BatchedGreedyEqualsOneSessionPerPrompt) {
  Fixture f;
  auto sched = f.make(/*parallel=*/3, /*queue=*/8);
  const std::vector<int> lengths = {3, 20, 1, 9, 14, 5};
  const std::vector<int64_t> max_tokens = {12, 7, 15, 10, 3, 12};
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Submitted s = sched->submit(greedy_request(prompt(lengths[i], static_cast<int>(i)), max_tokens[i]));
    ASSERT_TRUE(s.job) << s.message;
    jobs.push_back(s.job);
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::string text;
    const JobUpdate u = drain(*jobs[i], text);
    EXPECT_EQ(u.reason, FinishReason::kLength);
    EXPECT_EQ(u.completion_tokens, max_tokens[i]);
    EXPECT_EQ(u.prompt_tokens, lengths[i]);
    EXPECT_EQ(text, f.reference(prompt(lengths[i], static_cast<int>(i)), max_tokens[i])) << "prompt " << i;
  }
  const LiveGauges g = sched->gauges();
  EXPECT_EQ(g.queue_depth, 0);
  EXPECT_EQ(g.slots, 3);
}

TEST(Scheduler, RefusesBeyondTheQueueAndServesTheRest) {
  Fixture f;
  auto sched = f.make(/*parallel=*/1, /*queue=*/1);
  std::vector<std::shared_ptr<Job>> accepted;
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    Submitted s = sched->submit(greedy_request(prompt(4, i), 100));
    if (s.job) {
      accepted.push_back(s.job);
    } else {
      EXPECT_EQ(s.error, SubmitError::kQueueFull);
      EXPECT_NE(s.message.find("retry"), std::string::npos);
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  EXPECT_GE(accepted.size(), 2u);
  for (auto& job : accepted) {
    std::string text;
    EXPECT_EQ(drain(*job, text).reason, FinishReason::kLength);
  }
}

TEST(Scheduler, CancelFreesTheSlot) {
  Fixture f;
  auto sched = f.make(/*parallel=*/1, /*queue=*/0, /*ctx=*/4096);
  Submitted a = sched->submit(greedy_request(prompt(4, 1), 4000));
  ASSERT_TRUE(a.job);
  std::string text;
  while (text.empty()) text += a.job->wait(milliseconds(50)).text;
  a.job->cancel();
  EXPECT_EQ(drain(*a.job, text).reason, FinishReason::kCancelled);
  // The slot comes back: a new request is accepted and runs to its end.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sched->gauges().active_sequences != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(sched->gauges().active_sequences, 0);
  Submitted b = sched->submit(greedy_request(prompt(4, 2), 5));
  ASSERT_TRUE(b.job) << b.message;
  std::string tb;
  EXPECT_EQ(drain(*b.job, tb).reason, FinishReason::kLength);
}

TEST(Scheduler, StopStringEndsGenerationBeforeIt) {
  Fixture f;
  const std::vector<int32_t> p = prompt(6, 3);
  const std::string full = f.reference(p, 20);
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(full.size() / 2, 5);
  auto sched = f.make(2, 4);
  GenRequest r = greedy_request(p, 20);
  r.stop = {"never-appears", stop};
  Submitted s = sched->submit(r);
  ASSERT_TRUE(s.job);
  std::string text;
  EXPECT_EQ(drain(*s.job, text).reason, FinishReason::kStop);
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
}

TEST(Scheduler, ContextEndFinishesWithLength) {
  Fixture f;
  auto sched = f.make(1, 1, /*ctx=*/16);
  Submitted s = sched->submit(greedy_request(prompt(10, 0), 100));
  ASSERT_TRUE(s.job);
  std::string text;
  const JobUpdate u = drain(*s.job, text);
  EXPECT_EQ(u.reason, FinishReason::kLength);
  EXPECT_EQ(u.completion_tokens, 7);  // positions 10..15 fed, the 7th token sampled from position 15
}

TEST(Scheduler, RejectsInvalidRequests) {
  Fixture f;
  auto sched = f.make(1, 1, /*ctx=*/16);
  EXPECT_EQ(sched->submit(greedy_request({}, 5)).error, SubmitError::kInvalid);
  EXPECT_EQ(sched->submit(greedy_request(prompt(16, 0), 5)).error, SubmitError::kInvalid);
  EXPECT_EQ(sched->submit(greedy_request({1, 99}, 5)).error, SubmitError::kInvalid);
  EXPECT_EQ(sched->submit(greedy_request({1, 2}, 0)).error, SubmitError::kInvalid);
  sched->stop();
  EXPECT_EQ(sched->submit(greedy_request({1, 2}, 5)).error, SubmitError::kStopped);
}

TEST(Scheduler, StopCancelsRunningAndQueuedJobs) {
  Fixture f;
  auto sched = f.make(1, 4, /*ctx=*/4096);
  Submitted a = sched->submit(greedy_request(prompt(4, 1), 4000));
  Submitted b = sched->submit(greedy_request(prompt(4, 2), 4000));
  ASSERT_TRUE(a.job && b.job);
  sched->stop();
  std::string text;
  EXPECT_EQ(drain(*a.job, text).reason, FinishReason::kCancelled);
  EXPECT_EQ(drain(*b.job, text).reason, FinishReason::kCancelled);
}

TEST(StopMatcher, HoldsBackPartialMatches) {
  StopMatcher m({"END", "xy"});
  bool hit = false;
  EXPECT_EQ(m.push("abc E", &hit), "abc ");
  EXPECT_FALSE(hit);
  EXPECT_EQ(m.push("N", &hit), "");
  EXPECT_EQ(m.push("d x", &hit), "ENd ");
  EXPECT_EQ(m.push("z", &hit), "xz");
  EXPECT_EQ(m.push("qqENDrest", &hit), "qq");
  EXPECT_TRUE(hit);
  StopMatcher tail({"abc"});
  EXPECT_EQ(tail.push("zab", &hit), "z");
  EXPECT_EQ(tail.flush(), "ab");
  StopMatcher none({});
  EXPECT_EQ(none.push("anything", &hit), "anything");
  EXPECT_FALSE(hit);
}

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("other", 404);
  m.add_prompt_tokens(12);
  m.add_generated_tokens(3);
  m.observe_ttft(0.2);
  m.observe_latency(100.0);
  m.count_finish("length");
  const std::string t = m.render(LiveGauges{2, 3, 4});
  EXPECT_NE(t.find("lutq_requests_total{route=\"/v1/completions\",status=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_requests_total{route=\"other\",status=\"404\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_prompt_tokens_total 12\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_generated_tokens_total 3\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_queue_depth 2\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_active_sequences 3\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_time_to_first_token_seconds_bucket{le=\"0.25\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_time_to_first_token_seconds_bucket{le=\"0.1\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_request_latency_seconds_bucket{le=\"+Inf\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("lutq_generations_total{reason=\"length\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace lutq::server
