// A generation session: one sequence's KV cache over a loaded model and its tokenizer. Prefill
// runs the prompt in chunks; generate() samples tokens one at a time and streams their text with
// UTF-8 buffering (a multi-byte character split across tokens is emitted whole).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "gen/sampler.h"
#include "gen/tokenizer.h"
#include "model/model.h"
#include "model/step_broadcast.h"

namespace lutq::gen {

enum class StopReason { kEog, kLength, kContextFull };
const char* stop_reason_name(StopReason reason);

// Accumulates token pieces and releases only complete UTF-8 characters; flush() releases the rest.
class Utf8Buffer {
 public:
  std::string push(std::string_view piece);
  std::string flush();

 private:
  std::string pending_;
};

struct GenerateResult {
  StopReason reason = StopReason::kLength;
  int64_t tokens = 0;  // tokens sampled (the end-of-generation token included)
};

class Session {
 public:
  static constexpr int64_t kDefaultChunk = 64;

  // The model, tokenizer and pool must outlive the session. capacity <= 0: trained context.
  // `steps` (optional, must outlive the session): rank 0 of a tensor-parallel `lutq chat`, whose
  // memory, forwards and truncations go to the follower ranks (model/step_broadcast.h); the
  // sampled tokens then stay on rank 0. Without it every rank runs its own session in lockstep
  // (`lutq run`) and rank 0's sampled token is broadcast.
  static Result<Session> create(const model::Model& model, const Tokenizer& tokenizer, ThreadPool& pool,
                                int64_t capacity = 0, const model::MemorySpec& kv_cache = {},
                                model::StepLeader* steps = nullptr);

  // Appends tokens to the sequence (forward in chunks of at most `chunk`), leaving the logits
  // of the last token for generate(). Errors when the cache cannot hold them.
  Status prefill(std::span<const int32_t> tokens, int64_t chunk = kDefaultChunk);

  // Samples up to max_tokens tokens, feeding each back; on_piece receives the text as it becomes
  // complete UTF-8 (the end-of-generation token's own text is not emitted). Needs a prefill first.
  Result<GenerateResult> generate(int64_t max_tokens, Sampler& sampler,
                                  const std::function<void(std::string_view)>& on_piece);

  // Keeps the first n tokens of the sequence (the common prefix of a new prompt), dropping the
  // logits; the next prefill must add at least one token.
  void truncate(int64_t n);
  void reset() { truncate(0); }

  // Length of the common prefix of the cached tokens and `tokens`.
  int64_t common_prefix(std::span<const int32_t> tokens) const;

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t capacity() const { return cache_->capacity(); }
  const std::vector<float>& last_logits() const { return logits_; }
  bool has_logits() const { return has_logits_; }

 private:
  Session(const model::Model& model, const Tokenizer& tokenizer, ThreadPool& pool, std::unique_ptr<model::Memory> cache,
          model::StepLeader* steps)
      : model_(&model), tokenizer_(&tokenizer), pool_(&pool), cache_(std::move(cache)), steps_(steps) {}

  const model::Model* model_;
  const Tokenizer* tokenizer_;
  ThreadPool* pool_;
  std::unique_ptr<model::Memory> cache_;  // one sequence
  model::StepLeader* steps_ = nullptr;
  std::vector<int32_t> tokens_;  // what the cache holds, in order
  std::vector<float> logits_;    // [vocab] of the last token run
  bool has_logits_ = false;
};

}  // namespace lutq::gen
