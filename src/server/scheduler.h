// Continuous batching without HTTP: a bounded queue of generation jobs, a fixed set of sequence
// slots (one KV cache each, allocated up front: --parallel × --ctx is the memory budget) and one
// scheduler thread. Each iteration of its loop
//   1. admits queued jobs into free slots and drops cancelled sequences (freeing their slots),
//   2. prefills at most prefill_chunk prompt tokens, oldest sequence first (several short prompts
//      start together; a long prompt delays the others' next token by one chunk, not by the
//      whole prompt),
//   3. runs one decode step of every sequence that has a token to feed, all together through
//      Model::forward with one batch row per sequence (the linear layers see m = number of them;
//      rows of sequences with different scale adapters share the batch, model/adapter_rows.h),
// then samples per sequence, applies stop strings / end of generation / max_tokens, and hands the
// text to the job. The HTTP side reads jobs through Job::wait and cancels them with Job::cancel.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "gen/sampler.h"
#include "gen/tokenizer.h"
#include "model/model.h"
#include "model/step_broadcast.h"
#include "server/grammar.h"
#include "server/json_constraint.h"
#include "server/metrics.h"

namespace lutq::server {

struct GenRequest {
  std::vector<int32_t> prompt;  // token ids, BOS included where the model wants it
  int64_t max_tokens = 16;      // >= 1
  gen::SamplerOptions sampling;
  std::vector<std::string> stop;
  bool json_object = false;  // constrained decoding: the output is one JSON object (json_constraint.h)
  std::shared_ptr<const Grammar> grammar;  // constrained decoding by a grammar (json_schema, tool calls)
  int32_t adapter = 0;  // the model's scale adapter for this request (Model::add_adapter); 0: none
};

enum class FinishReason { kStop, kLength, kCancelled, kError };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "cancelled", "error"

struct JobUpdate {
  std::string text;  // text produced since the previous wait()
  bool finished = false;
  FinishReason reason = FinishReason::kStop;
  std::string error;  // kError only
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// One request's channel between the scheduler (producer) and an HTTP handler (consumer).
class Job {
 public:
  explicit Job(int64_t prompt_tokens) : prompt_tokens_(prompt_tokens) {}

  // Waits until there is new text or the job finished, at most `timeout`; returns the new text
  // (possibly empty) and, once all text has been taken, the finish.
  JobUpdate wait(std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this job and free its slot (the client went away).
  void cancel();
  bool cancelled() const;
  // `notify` runs (on the scheduler thread, outside the job's lock) after each append and the
  // finish, so an event-driven consumer need not poll; it must be cheap and thread-safe. When
  // set after the job already produced something, it runs once at once.
  void set_notifier(std::function<void()> notify);

  // Scheduler side.
  void append(const std::string& text);
  void finish(FinishReason reason, int64_t completion_tokens, std::string error = "");
  bool finished() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::function<void()> notify_;
  bool cancelled_ = false;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::kStop;
  std::string error_;
  int64_t prompt_tokens_ = 0;
  int64_t completion_tokens_ = 0;
};

struct SchedulerOptions {
  int parallel = 4;            // sequence slots
  int64_t ctx = 2048;          // positions per slot
  model::MemorySpec kv_cache;  // the attention memory's kind (--kv-cache)
  int64_t queue_limit = 16;    // jobs waiting for a slot before submit() refuses
  int64_t prefill_chunk = 64;  // prompt tokens prefilled per scheduler iteration
  // Rank 0 of a tensor-parallel `lutq serve` (model/step_broadcast.h): the memory and every
  // forward go through it to the follower ranks. nullptr: the model is called directly. Must
  // outlive the scheduler.
  model::StepLeader* steps = nullptr;
};

enum class SubmitError { kNone, kQueueFull, kInvalid, kStopped };

struct Submitted {
  std::shared_ptr<Job> job;  // null on error
  SubmitError error = SubmitError::kNone;
  std::string message;
};

class Scheduler {
 public:
  // Allocates the slots' caches (errors when they do not fit) and starts the scheduler thread.
  // The model, tokenizer, pool and metrics must outlive the scheduler.
  static Result<std::unique_ptr<Scheduler>> create(const model::Model& model, const gen::Tokenizer& tokenizer,
                                                   ThreadPool& pool, const SchedulerOptions& options,
                                                   Metrics& metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation. Errors: kInvalid (empty prompt, prompt not shorter than the context,
  // max_tokens < 1, token outside the vocabulary, an adapter the model does not hold), kQueueFull,
  // kStopped.
  Submitted submit(GenRequest request);

  // Finishes every job (kCancelled) and joins the thread; idempotent.
  void stop();

  LiveGauges gauges() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Sequence;
  struct Pending {
    GenRequest request;
    std::shared_ptr<Job> job;
    std::chrono::steady_clock::time_point submitted;
  };

  Scheduler(const model::Model& model, const gen::Tokenizer& tokenizer, ThreadPool& pool,
            const SchedulerOptions& options, Metrics& metrics, std::unique_ptr<model::Memory> memory);
  void loop();
  void prefill_step();
  void decode_step();
  // Model::forward, through the step leader when there is one.
  Status forward(const model::Batch& batch, float* logits);
  // Samples from `logits` and applies the stop rules; false when the sequence finished.
  bool take_token(Sequence& seq, float* logits);
  void finish(Sequence& seq, FinishReason reason, const std::string& error = "");
  void remove_finished();

  const model::Model& model_;
  const gen::Tokenizer& tokenizer_;
  ThreadPool& pool_;
  SchedulerOptions options_;
  Metrics& metrics_;
  std::unique_ptr<model::Memory> memory_;  // one sequence per slot
  TokenTable token_table_;  // pieces for constrained decoding
  std::unique_ptr<TokenTrie> token_trie_;  // the same as a trie (grammar masks)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::vector<int> free_slots_;
  int64_t active_count_ = 0;
  bool stopping_ = false;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> active_;
  std::vector<float> logits_;
  std::thread thread_;
};

}  // namespace lutq::server
