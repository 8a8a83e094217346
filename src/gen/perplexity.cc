#include "gen/perplexity.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace lutq::gen {

namespace {

constexpr char kMagic[8] = {'L', 'U', 'T', 'Q', 'L', 'P', 'F', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

Status io_error(const std::string& path, const std::string& what) {
  return Status(StatusCode::kIoError, path + ": " + what + (errno != 0 ? std::string(": ") + std::strerror(errno) : ""));
}

}  // namespace

double PerplexityAccumulator::perplexity() const { return std::exp(mean_nll()); }

double PerplexityAccumulator::error() const {
  if (count_ < 2) return 0.0;
  const double n = static_cast<double>(count_);
  const double mean = sum_ / n;
  const double var = sum2_ / n - mean * mean;
  if (var <= 0.0) return 0.0;
  return perplexity() * std::sqrt(var / (n - 1.0));
}

Result<ChunkPlan> plan_chunks(int64_t n_tokens, int64_t ctx, int64_t max_chunks) {
  if (ctx < 4) return Status::invalid("--ctx: must be at least 4 (got " + std::to_string(ctx) + ")");
  if (n_tokens < ctx) {
    return Status::invalid("the text has " + std::to_string(n_tokens) + " tokens, fewer than one chunk of --ctx " +
                           std::to_string(ctx));
  }
  ChunkPlan plan;
  plan.ctx = ctx;
  plan.n_chunks = n_tokens / ctx;
  if (max_chunks > 0) plan.n_chunks = std::min(plan.n_chunks, max_chunks);
  plan.first_scored = ctx / 2;
  return plan;
}

std::vector<int32_t> chunk_tokens(std::span<const int32_t> all, const ChunkPlan& plan, int64_t c, int32_t bos) {
  const auto begin = all.begin() + c * plan.ctx;
  std::vector<int32_t> out(begin, begin + plan.ctx);
  if (bos >= 0) out[0] = bos;
  return out;
}

void score_chunk(std::span<const float> logits, std::span<const int32_t> tokens, int64_t n_vocab,
                 const ChunkPlan& plan, PerplexityAccumulator& acc, std::vector<float>* log_probs_out) {
  std::vector<float> row(static_cast<size_t>(n_vocab));
  for (int64_t j = plan.first_scored; j < plan.ctx - 1; ++j) {
    log_softmax(logits.subspan(static_cast<size_t>(j * n_vocab), static_cast<size_t>(n_vocab)), row);
    acc.add(-static_cast<double>(row[static_cast<size_t>(tokens[static_cast<size_t>(j + 1)])]));
    if (log_probs_out != nullptr) log_probs_out->insert(log_probs_out->end(), row.begin(), row.end());
  }
}

void KlStats::add(std::span<const float> base_log_probs, std::span<const float> log_probs) {
  const double kl = kl_divergence(base_log_probs, log_probs);
  sum_kl += kl;
  max_kl = std::max(max_kl, kl);
  const auto top = [](std::span<const float> v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
  if (top(base_log_probs) == top(log_probs)) ++top1_same;
  ++count;
}

Result<LogProbWriter> LogProbWriter::open(const std::string& path, const LogProbHeader& header) {
  LogProbWriter w;
  errno = 0;
  w.file_.reset(std::fopen(path.c_str(), "wb"));
  if (!w.file_) return io_error(path, "cannot create");
  w.path_ = path;
  w.header_ = header;
  uint8_t h[kHeaderBytes] = {};
  std::memcpy(h, kMagic, 8);
  put_u32(h + 8, kVersion);
  put_u32(h + 12, header.n_vocab);
  put_u32(h + 16, header.ctx);
  put_u32(h + 20, header.scored_per_chunk);
  put_u32(h + 24, header.n_chunks);
  if (std::fwrite(h, 1, kHeaderBytes, w.file_.get()) != kHeaderBytes) return io_error(path, "write failed");
  return w;
}

Status LogProbWriter::write(std::span<const float> rows, std::span<const int32_t> next_tokens) {
  const size_t nv = header_.n_vocab;
  half_.resize(nv);
  for (size_t r = 0; r < next_tokens.size(); ++r) {
    uint8_t t[4];
    put_u32(t, static_cast<uint32_t>(next_tokens[r]));
    for (size_t i = 0; i < nv; ++i) half_[i] = fp32_to_fp16(std::max(rows[r * nv + i], -65000.0f));
    if (std::fwrite(t, 1, 4, file_.get()) != 4 || std::fwrite(half_.data(), 2, nv, file_.get()) != nv) {
      return io_error(path_, "write failed");
    }
  }
  return Status::ok();
}

Status LogProbWriter::finish(uint32_t n_chunks) {
  uint8_t n[4];
  put_u32(n, n_chunks);
  if (std::fseek(file_.get(), 24, SEEK_SET) != 0 || std::fwrite(n, 1, 4, file_.get()) != 4) {
    return io_error(path_, "write failed");
  }
  std::FILE* f = file_.release();
  if (std::fclose(f) != 0) return io_error(path_, "close failed");
  return Status::ok();
}

Result<LogProbReader> LogProbReader::open(const std::string& path) {
  LogProbReader r;
  errno = 0;
  r.file_.reset(std::fopen(path.c_str(), "rb"));
  if (!r.file_) return io_error(path, "cannot open");
  r.path_ = path;
  uint8_t h[kHeaderBytes];
  if (std::fread(h, 1, kHeaderBytes, r.file_.get()) != kHeaderBytes || std::memcmp(h, kMagic, 8) != 0) {
    return Status(StatusCode::kCorrupt, path + ": not a lutq log-prob file (bad magic)");
  }
  if (get_u32(h + 8) != kVersion) {
    return Status(StatusCode::kUnsupported, path + ": unsupported log-prob file version " + std::to_string(get_u32(h + 8)));
  }
  r.header_.n_vocab = get_u32(h + 12);
  r.header_.ctx = get_u32(h + 16);
  r.header_.scored_per_chunk = get_u32(h + 20);
  r.header_.n_chunks = get_u32(h + 24);
  if (r.header_.n_vocab == 0) return Status(StatusCode::kCorrupt, path + ": n_vocab is 0");
  return r;
}

Status LogProbReader::read(int32_t* next_token, std::span<float> log_probs) {
  const size_t nv = header_.n_vocab;
  half_.resize(nv);
  uint8_t t[4];
  if (std::fread(t, 1, 4, file_.get()) != 4 || std::fread(half_.data(), 2, nv, file_.get()) != nv) {
    return Status(StatusCode::kCorrupt, path_ + ": truncated");
  }
  *next_token = static_cast<int32_t>(get_u32(t));
  if (log_probs.size() < nv) return Status::invalid(path_ + ": n_vocab " + std::to_string(nv) + " is larger than the model's");
  // fp16 rounding leaves the row slightly off a distribution: renormalize (log-sum-exp to 0).
  std::vector<float> raw(nv);
  for (size_t i = 0; i < nv; ++i) raw[i] = fp16_to_fp32(half_[i]);
  log_softmax(raw, log_probs.first(nv));
  return Status::ok();
}

}  // namespace lutq::gen
