// Perplexity evaluation pieces (llama.cpp's protocol), kept apart from the command so they can
// be tested: log-softmax, the NLL accumulator with llama.cpp's standard error, the chunk plan,
// and the log-prob file (--save-logits / --kl-base) with KL divergence against it.
//
// Protocol: the text is tokenized once; it is split into non-overlapping chunks of ctx tokens
// (the first token of each chunk replaced by BOS when the vocabulary adds BOS); each chunk runs
// from an empty cache; positions ctx/2 .. ctx-2 are scored, each predicting the next token.
//
// Log-prob file format (little-endian), written by LogProbWriter:
//   header, 32 bytes: magic "LUTQLPF1" (8 bytes), uint32 version = 1, uint32 n_vocab,
//                     uint32 ctx, uint32 scored positions per chunk, uint32 n_chunks, uint32 0
//   then for each chunk, for each scored position in order:
//     int32 the next token (the one being predicted), n_vocab × fp16 log-probabilities
//     (natural log; the reader renormalizes each row after the fp16 rounding).
// n_chunks in the header is patched when the writer finishes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/log_probs.h"  // log_softmax, kl_divergence
#include "core/status.h"

namespace lutq::gen {

// Negative log-likelihood sums; perplexity = exp(mean NLL), error as llama.cpp reports it:
// ppl · sqrt(var(nll) / (n − 1)).
class PerplexityAccumulator {
 public:
  void add(double nll) {
    sum_ += nll;
    sum2_ += nll * nll;
    ++count_;
  }
  int64_t count() const { return count_; }
  double mean_nll() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0; }
  double perplexity() const;
  double error() const;  // 0 with fewer than 2 samples

 private:
  double sum_ = 0.0;
  double sum2_ = 0.0;
  int64_t count_ = 0;
};

struct ChunkPlan {
  int64_t ctx = 0;
  int64_t n_chunks = 0;
  int64_t first_scored = 0;  // ctx / 2
  int64_t scored_per_chunk() const { return ctx - 1 - first_scored; }
};

// Chunks of ctx tokens from n_tokens, at most max_chunks (<= 0: all). Errors: ctx < 4, fewer
// than ctx tokens.
Result<ChunkPlan> plan_chunks(int64_t n_tokens, int64_t ctx, int64_t max_chunks);

// The tokens of chunk c (bos >= 0 replaces the first one).
std::vector<int32_t> chunk_tokens(std::span<const int32_t> all, const ChunkPlan& plan, int64_t c, int32_t bos);

// Scores one evaluated chunk: logits [ctx][n_vocab] for its tokens. Adds each scored position's
// NLL to acc and, when log_probs_out is non-null, appends the scored rows' log-probs
// ([scored][n_vocab]) to it.
void score_chunk(std::span<const float> logits, std::span<const int32_t> tokens, int64_t n_vocab,
                 const ChunkPlan& plan, PerplexityAccumulator& acc, std::vector<float>* log_probs_out);

struct KlStats {
  double sum_kl = 0.0;
  double max_kl = 0.0;
  int64_t top1_same = 0;
  int64_t count = 0;
  void add(std::span<const float> base_log_probs, std::span<const float> log_probs);
  double mean_kl() const { return count > 0 ? sum_kl / static_cast<double>(count) : 0.0; }
  double top1_agreement() const { return count > 0 ? static_cast<double>(top1_same) / static_cast<double>(count) : 0.0; }
};

struct LogProbHeader {
  uint32_t n_vocab = 0;
  uint32_t ctx = 0;
  uint32_t scored_per_chunk = 0;
  uint32_t n_chunks = 0;
};

// Closes the log-prob file of a writer or reader.
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

class LogProbWriter {
 public:
  static Result<LogProbWriter> open(const std::string& path, const LogProbHeader& header);
  // rows: [n][n_vocab] log-probs, next_tokens: [n].
  Status write(std::span<const float> rows, std::span<const int32_t> next_tokens);
  // Patches n_chunks into the header and closes.
  Status finish(uint32_t n_chunks);

 private:
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::string path_;
  LogProbHeader header_;
  std::vector<uint16_t> half_;
};

class LogProbReader {
 public:
  static Result<LogProbReader> open(const std::string& path);
  const LogProbHeader& header() const { return header_; }
  // Reads the next position: its next token and its log-probs (n_vocab floats, renormalized
  // after the fp16 rounding).
  Status read(int32_t* next_token, std::span<float> log_probs);

 private:
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::string path_;
  LogProbHeader header_;
  std::vector<uint16_t> half_;
};

}  // namespace lutq::gen
