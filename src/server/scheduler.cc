// Scheduler: the job channel and the continuous-batching loop described in scheduler.h.
#include "server/scheduler.h"

#include <algorithm>
#include <optional>
#include <span>
#include <utility>

#include "gen/session.h"
#include "server/stop_matcher.h"

namespace lutq::server {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "error";
}

// ---- Job ----

JobUpdate Job::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !text_.empty() || finished_; });
  JobUpdate u;
  u.text.swap(text_);
  u.finished = finished_;
  u.reason = reason_;
  u.error = error_;
  u.prompt_tokens = prompt_tokens_;
  u.completion_tokens = completion_tokens_;
  return u;
}

void Job::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
}

bool Job::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void Job::set_notifier(std::function<void()> notify) {
  bool pending = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    notify_ = notify;
    pending = !text_.empty() || finished_;
  }
  if (pending && notify) notify();
}

void Job::append(const std::string& text) {
  if (text.empty()) return;
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    text_ += text;
    notify = notify_;
  }
  cv_.notify_all();
  if (notify) notify();
}

void Job::finish(FinishReason reason, int64_t completion_tokens, std::string error) {
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    reason_ = reason;
    completion_tokens_ = completion_tokens;
    error_ = std::move(error);
    notify = notify_;
  }
  cv_.notify_all();
  if (notify) notify();
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

// ---- Scheduler ----

struct Scheduler::Sequence {
  Sequence(Pending p, int slot_index)
      : job(std::move(p.job)),
        request(std::move(p.request)),
        slot(slot_index),
        sampler(request.sampling),
        stop(request.stop),
        submitted(p.submitted) {
    if (request.json_object) json.emplace();
    if (request.grammar) grammar.emplace(request.grammar);
  }

  std::shared_ptr<Job> job;
  GenRequest request;
  int slot;
  int64_t prefilled = 0;  // prompt tokens in the cache
  bool decoding = false;  // next_token waits to be fed
  int32_t next_token = 0;
  int64_t generated = 0;
  bool done = false;
  gen::Sampler sampler;
  gen::Utf8Buffer utf8;
  StopMatcher stop;
  std::optional<JsonAcceptor> json;  // response_format json_object
  std::optional<GrammarMatcher> grammar;  // response_format json_schema, tool calls
  Clock::time_point submitted;
  Clock::time_point last_token;
};

Result<std::unique_ptr<Scheduler>> Scheduler::create(const model::Model& model, const gen::Tokenizer& tokenizer,
                                                     ThreadPool& pool, const SchedulerOptions& options,
                                                     Metrics& metrics) {
  if (options.parallel < 1) return Status::invalid("--parallel must be >= 1");
  if (options.ctx < 2) return Status::invalid("--ctx must be >= 2");
  if (options.queue_limit < 0) return Status::invalid("the queue limit must be >= 0");
  if (options.prefill_chunk < 1) return Status::invalid("the prefill chunk must be >= 1");
  if (tokenizer.vocab_size() > model.config().n_vocab) {
    return Status::invalid("tokenizer vocabulary (" + std::to_string(tokenizer.vocab_size()) +
                           ") is larger than the model's (" + std::to_string(model.config().n_vocab) + ")");
  }
  // One memory, one sequence per slot.
  const model::MemorySpec& kv = options.kv_cache;
  Result<std::unique_ptr<model::Memory>> memory =
      options.steps != nullptr ? options.steps->make_memory(options.ctx, options.parallel, kv.kind, kv.options)
                               : model.make_memory(options.ctx, options.parallel, kv.kind, kv.options);
  if (!memory) return memory.status();
  return std::unique_ptr<Scheduler>(new Scheduler(model, tokenizer, pool, options, metrics, std::move(*memory)));
}

Scheduler::Scheduler(const model::Model& model, const gen::Tokenizer& tokenizer, ThreadPool& pool,
                     const SchedulerOptions& options, Metrics& metrics, std::unique_ptr<model::Memory> memory)
    : model_(model), tokenizer_(tokenizer), pool_(pool), options_(options), metrics_(metrics),
      memory_(std::move(memory)) {
  for (int i = options_.parallel - 1; i >= 0; --i) free_slots_.push_back(i);
  const int32_t n_vocab = tokenizer_.vocab_size();
  token_table_.pieces.reserve(static_cast<size_t>(n_vocab));
  for (int32_t id = 0; id < n_vocab; ++id) {
    token_table_.pieces.push_back(tokenizer_.token_to_piece(id));
    token_table_.end_of_generation.push_back(tokenizer_.is_eog(id));
  }
  token_trie_ = std::make_unique<TokenTrie>(token_table_);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

Submitted Scheduler::submit(GenRequest request) {
  Submitted out;
  auto invalid = [&](std::string message) {
    out.error = SubmitError::kInvalid;
    out.message = std::move(message);
    return out;
  };
  const auto n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) return invalid("the prompt is empty");
  if (n >= options_.ctx) {
    return invalid("the prompt has " + std::to_string(n) + " tokens; the context holds " +
                   std::to_string(options_.ctx) + " (prompt and completion together)");
  }
  if (request.max_tokens < 1) return invalid("max_tokens must be >= 1");
  if (request.adapter < 0 || request.adapter > model_.adapters()) {
    return invalid("adapter " + std::to_string(request.adapter) + " is not one of the model's " +
                   std::to_string(model_.adapters()));
  }
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= tokenizer_.vocab_size()) return invalid("token id " + std::to_string(id) + " is out of range");
  }
  auto job = std::make_shared<Job>(n);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      out.error = SubmitError::kStopped;
      out.message = "the server is shutting down";
      return out;
    }
    // Waiting jobs beyond what the free slots take at once count against the queue limit.
    const auto waiting = static_cast<int64_t>(queue_.size());
    if (waiting >= options_.queue_limit + static_cast<int64_t>(free_slots_.size())) {
      out.error = SubmitError::kQueueFull;
      out.message = "all " + std::to_string(options_.parallel) + " sequence slots are busy and " +
                    std::to_string(options_.queue_limit) + " requests are already waiting; retry later";
      return out;
    }
    queue_.push_back(Pending{std::move(request), job, Clock::now()});
  }
  cv_.notify_all();
  out.job = std::move(job);
  return out;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& seq : active_) {
    if (!seq->done) finish(*seq, FinishReason::kCancelled);
  }
  active_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (Pending& p : queue_) p.job->finish(FinishReason::kCancelled, 0);
  queue_.clear();
  active_count_ = 0;
}

LiveGauges Scheduler::gauges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return LiveGauges{static_cast<int64_t>(queue_.size()), active_count_, options_.parallel};
}

void Scheduler::loop() {
  while (true) {
    std::vector<Pending> admitted;
    std::vector<int> slots;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !active_.empty() || (!queue_.empty() && !free_slots_.empty()); });
      if (stopping_) return;
      // Jobs whose client left while they waited give their place up without taking a slot.
      std::erase_if(queue_, [&](const Pending& p) {
        if (!p.job->cancelled()) return false;
        p.job->finish(FinishReason::kCancelled, 0);
        metrics_.count_finish(finish_reason_name(FinishReason::kCancelled));
        return true;
      });
      while (!queue_.empty() && !free_slots_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
        slots.push_back(free_slots_.back());
        free_slots_.pop_back();
        ++active_count_;
      }
    }
    for (size_t i = 0; i < admitted.size(); ++i) {
      active_.push_back(std::make_unique<Sequence>(std::move(admitted[i]), slots[i]));
    }
    for (auto& seq : active_) {
      if (seq->job->cancelled()) finish(*seq, FinishReason::kCancelled);
    }
    remove_finished();
    prefill_step();
    remove_finished();
    decode_step();
    remove_finished();
  }
}

void Scheduler::prefill_step() {
  // A budget of prefill_chunk prompt tokens per iteration, spent oldest first: several short
  // prompts that arrive together all start in one iteration, while a long prompt is cut into
  // chunks so the decoding sequences get their step in between.
  int64_t budget = options_.prefill_chunk;
  for (auto& seq_ptr : active_) {
    if (budget <= 0) return;
    Sequence& seq = *seq_ptr;
    const auto total = static_cast<int64_t>(seq.request.prompt.size());
    if (seq.decoding || seq.done || seq.prefilled >= total) continue;
    const int64_t n = std::min(budget, total - seq.prefilled);
    budget -= n;
    const std::span<const int32_t> part(seq.request.prompt.data() + seq.prefilled, static_cast<size_t>(n));
    logits_.resize(static_cast<size_t>(model_.config().n_vocab));
    const Status st = forward(
        model::Batch::sequence(part, seq.prefilled, seq.slot, model::LogitsMode::kLast, seq.request.adapter),
        logits_.data());
    if (!st) {
      finish(seq, FinishReason::kError, st.message());
      continue;
    }
    seq.prefilled += n;
    if (seq.prefilled == total) {
      metrics_.add_prompt_tokens(total);
      take_token(seq, logits_.data());
    }
  }
}

void Scheduler::decode_step() {
  // One row per decoding sequence: the weights are streamed once for all of them.
  model::Batch batch;
  std::vector<Sequence*> seqs;
  for (auto& seq : active_) {
    if (!seq->decoding || seq->done) continue;
    batch.add(seq->next_token, memory_->size(seq->slot), seq->slot, /*logits=*/true, seq->request.adapter);
    seqs.push_back(seq.get());
  }
  if (seqs.empty()) return;
  const auto vocab = static_cast<size_t>(model_.config().n_vocab);
  logits_.resize(seqs.size() * vocab);
  const Status st = forward(batch, logits_.data());
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (!st) {
      finish(*seqs[i], FinishReason::kError, st.message());
    } else {
      take_token(*seqs[i], logits_.data() + i * vocab);
    }
  }
}

Status Scheduler::forward(const model::Batch& batch, float* logits) {
  if (options_.steps != nullptr) return options_.steps->forward(batch, *memory_, logits, pool_);
  return model_.forward(batch, *memory_, logits, pool_);
}

bool Scheduler::take_token(Sequence& seq, float* logits) {
  // Only ids the tokenizer knows can be sampled (a model may pad its vocabulary).
  const std::span<float> known(logits, static_cast<size_t>(tokenizer_.vocab_size()));
  if (seq.json) mask_json_logits(*seq.json, token_table_, known);
  if (seq.grammar) seq.grammar->mask(*token_trie_, known);
  const int32_t id = seq.sampler.sample(std::span<const float>(known));
  ++seq.generated;
  metrics_.add_generated_tokens(1);
  const Clock::time_point now = Clock::now();
  if (seq.generated == 1) {
    metrics_.observe_ttft(std::chrono::duration<double>(now - seq.submitted).count());
  } else {
    metrics_.observe_inter_token(std::chrono::duration<double>(now - seq.last_token).count());
  }
  seq.last_token = now;
  seq.decoding = false;
  if (tokenizer_.is_eog(id)) {
    finish(seq, FinishReason::kStop);
    return false;
  }
  bool hit = false;
  const std::string& piece = token_table_.pieces[static_cast<size_t>(id)];
  seq.job->append(seq.stop.push(seq.utf8.push(piece), &hit));
  if (seq.json) seq.json->feed(piece);  // allowed by the mask, so accepted
  if (seq.grammar) seq.grammar->feed(piece);
  if (hit || (seq.json && seq.json->done()) || (seq.grammar && seq.grammar->done())) {
    seq.utf8.flush();
    finish(seq, FinishReason::kStop);
    return false;
  }
  if (seq.generated >= seq.request.max_tokens || memory_->size(seq.slot) >= memory_->capacity()) {
    finish(seq, FinishReason::kLength);
    return false;
  }
  seq.next_token = id;
  seq.decoding = true;
  return true;
}

void Scheduler::finish(Sequence& seq, FinishReason reason, const std::string& error) {
  if (seq.done) return;
  seq.done = true;
  seq.decoding = false;
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
    // Release what was held back: an incomplete UTF-8 tail, a partial stop string.
    bool hit = false;
    seq.job->append(seq.stop.push(seq.utf8.flush(), &hit));
    if (!hit) seq.job->append(seq.stop.flush());
  }
  seq.job->finish(reason, seq.generated, error);
  metrics_.count_finish(finish_reason_name(reason));
  metrics_.observe_latency(std::chrono::duration<double>(Clock::now() - seq.submitted).count());
}

void Scheduler::remove_finished() {
  std::vector<int> freed;
  std::erase_if(active_, [&](const std::unique_ptr<Sequence>& seq) {
    if (!seq->done) return false;
    freed.push_back(seq->slot);
    return true;
  });
  if (freed.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (int slot : freed) free_slots_.push_back(slot);
  active_count_ -= static_cast<int64_t>(freed.size());
}

}  // namespace lutq::server
