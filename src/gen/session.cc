#include "gen/session.h"

#include <algorithm>

namespace lutq::gen {

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kEog: return "eog";
    case StopReason::kLength: return "length";
    case StopReason::kContextFull: return "context full";
  }
  return "?";
}

namespace {

// Length of the UTF-8 sequence a lead byte starts; 1 for continuation or invalid bytes.
size_t utf8_length(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF7) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC0) return 2;
  return 1;
}

}  // namespace

std::string Utf8Buffer::push(std::string_view piece) {
  pending_.append(piece);
  // Find the start of the last (possibly incomplete) character: scan back over at most 3
  // continuation bytes.
  size_t end = pending_.size();
  size_t i = end;
  int back = 0;
  while (i > 0 && back < 4) {
    --i;
    ++back;
    const auto c = static_cast<unsigned char>(pending_[i]);
    if ((c & 0xC0) != 0x80) {
      if (i + utf8_length(c) > end) end = i;  // incomplete: hold it back
      break;
    }
  }
  std::string out = pending_.substr(0, end);
  pending_.erase(0, end);
  return out;
}

std::string Utf8Buffer::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

Result<Session> Session::create(const model::Model& model, const Tokenizer& tokenizer, ThreadPool& pool,
                                int64_t capacity, const model::MemorySpec& kv_cache, model::StepLeader* steps) {
  if (tokenizer.vocab_size() > model.config().n_vocab) {
    return Status::invalid("tokenizer vocabulary (" + std::to_string(tokenizer.vocab_size()) +
                           ") is larger than the model's (" + std::to_string(model.config().n_vocab) + ")");
  }
  Result<std::unique_ptr<model::Memory>> cache = steps != nullptr
                                                      ? steps->make_memory(capacity, 1, kv_cache.kind, kv_cache.options)
                                                      : model.make_memory(capacity, 1, kv_cache.kind, kv_cache.options);
  if (!cache) return cache.status();
  return Session(model, tokenizer, pool, std::move(*cache), steps);
}

Status Session::prefill(std::span<const int32_t> tokens, int64_t chunk) {
  if (tokens.empty()) return Status::invalid("prefill: no tokens");
  if (chunk < 1) chunk = 1;
  const auto total = static_cast<int64_t>(tokens_.size() + tokens.size());
  if (total > cache_->capacity()) {
    return Status::invalid("prompt of " + std::to_string(total) + " tokens does not fit the context of " +
                           std::to_string(cache_->capacity()));
  }
  logits_.resize(static_cast<size_t>(model_->config().n_vocab));
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(chunk)) {
    const size_t n = std::min(tokens.size() - i, static_cast<size_t>(chunk));
    const auto part = tokens.subspan(i, n);
    const auto start = static_cast<int64_t>(tokens_.size());
    const Status st = steps_ != nullptr
                          ? steps_->forward(part, start, *cache_, logits_.data(), *pool_, model::LogitsMode::kLast, 0)
                          : model_->forward(part, start, *cache_, logits_.data(), *pool_, model::LogitsMode::kLast);
    if (!st) {
      has_logits_ = false;
      return st;
    }
    tokens_.insert(tokens_.end(), part.begin(), part.end());
  }
  has_logits_ = true;
  return Status::ok();
}

Result<GenerateResult> Session::generate(int64_t max_tokens, Sampler& sampler,
                                         const std::function<void(std::string_view)>& on_piece) {
  if (!has_logits_) return Status::invalid("generate: nothing prefilled");
  GenerateResult result;
  Utf8Buffer utf8;
  auto emit = [&](const std::string& s) {
    if (!s.empty() && on_piece) on_piece(s);
  };
  while (true) {
    if (result.tokens >= max_tokens) {
      result.reason = StopReason::kLength;
      break;
    }
    int32_t id = sampler.sample(logits_);
    // Tensor parallelism in lockstep (no step leader): rank 0's token decides, so every rank takes
    // the same next step. Under a step leader only rank 0 runs the session.
    if (Communicator* comm = model_->communicator(); steps_ == nullptr && comm != nullptr && comm->size() > 1) {
      if (Status st = comm->broadcast(&id, sizeof id, 0); !st) return st;
    }
    ++result.tokens;
    if (tokenizer_->is_eog(id)) {
      result.reason = StopReason::kEog;
      // Keep the terminator in the cache so a chat continues after it; it fits or we stop anyway.
      if (static_cast<int64_t>(tokens_.size()) < cache_->capacity()) {
        const int32_t one[1] = {id};
        if (Status st = prefill(one); !st) return st;
      }
      break;
    }
    emit(utf8.push(tokenizer_->token_to_piece(id)));
    if (result.tokens >= max_tokens) {
      result.reason = StopReason::kLength;
      // Keep the sampled token in the cache (a later turn's prompt contains it).
      if (static_cast<int64_t>(tokens_.size()) < cache_->capacity()) {
        const int32_t one[1] = {id};
        if (Status st = prefill(one); !st) return st;
      }
      break;
    }
    if (static_cast<int64_t>(tokens_.size()) >= cache_->capacity()) {
      result.reason = StopReason::kContextFull;
      break;
    }
    const int32_t one[1] = {id};
    if (Status st = prefill(one); !st) return st;
  }
  emit(utf8.flush());
  return result;
}

void Session::truncate(int64_t n) {
  n = std::clamp<int64_t>(n, 0, static_cast<int64_t>(tokens_.size()));
  tokens_.resize(static_cast<size_t>(n));
  if (steps_ != nullptr) {
    steps_->truncate(*cache_, 0, n);
  } else {
    cache_->truncate(0, n);
  }
  has_logits_ = false;
}

int64_t Session::common_prefix(std::span<const int32_t> tokens) const {
  const size_t n = std::min(tokens.size(), tokens_.size());
  size_t i = 0;
  while (i < n && tokens[i] == tokens_[i]) ++i;
  return static_cast<int64_t>(i);
}

}  // namespace lutq::gen
