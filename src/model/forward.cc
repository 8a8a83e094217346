// Model::forward: the one forward pass, for any batch of rows (model/batch.h).
#include <algorithm>
#include <map>

#include "model/model.h"
#include "model/ops.h"

namespace lutq::model {
namespace {

// The first and last position of each sequence in a batch.
struct SeqSpan {
  int64_t first = 0;
  int64_t last = 0;
};

}  // namespace

Status Model::check_batch(const Batch& batch, const Memory& memory) const {
  const ModelConfig& c = config_;
  if (batch.rows.empty()) return Status::invalid("forward: no tokens");
  if (memory.shape() != memory_shape(memory.capacity(), memory.sequences())) {
    return Status::invalid("forward: the KV cache was made for another model shape");
  }
  // An XQuant memory rebuilds K and V through the model's own k/v layers: no adapter rows on it.
  const Result<MemoryKind> kind = parse_memory_kind(memory.kind());
  const bool rebuilds = kind.is_ok() && rebuilds_from_layer_inputs(*kind);
  std::map<int32_t, int64_t> next;  // sequence -> position its next row must have
  for (size_t i = 0; i < batch.rows.size(); ++i) {
    const BatchRow& r = batch.rows[i];
    const std::string where = batch.rows.size() > 1 ? "forward: row " + std::to_string(i) + ": " : "forward: ";
    if (r.token < 0 || r.token >= c.n_vocab) {
      return Status::invalid("forward: token id " + std::to_string(r.token) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
    if (r.adapter < 0 || r.adapter > n_adapters_) {
      return Status::invalid(where + "adapter " + std::to_string(r.adapter) + " is not one of the model's " +
                             std::to_string(n_adapters_) + " (0: its own scales)");
    }
    if (r.adapter != 0 && rebuilds) {
      return Status::invalid(where + "an adapter's rows cannot use an XQuant memory: it rebuilds K and V through the "
                             "model's own k/v layers (use f32, f16, q8 or q4)");
    }
    if (r.seq < 0 || r.seq >= memory.sequences()) {
      return Status::invalid(where + "sequence " + std::to_string(r.seq) + " is outside the memory's " +
                             std::to_string(memory.sequences()));
    }
    const auto it = next.find(r.seq);
    if (it == next.end()) {
      if (r.pos < 0 || r.pos > memory.size(r.seq)) {
        return Status::invalid(where + "position " + std::to_string(r.pos) + " leaves a gap (the cache holds " +
                               std::to_string(memory.size(r.seq)) + " positions)");
      }
    } else if (r.pos != it->second) {
      return Status::invalid(where + "position " + std::to_string(r.pos) + " of sequence " + std::to_string(r.seq) +
                             " does not follow its previous row (" + std::to_string(it->second - 1) + ")");
    }
    if (r.pos >= memory.capacity()) {
      return Status::invalid("KV cache full: position " + std::to_string(r.pos) + " of sequence " +
                             std::to_string(r.seq) + " needs " + std::to_string(r.pos + 1) +
                             " positions, capacity is " + std::to_string(memory.capacity()));
    }
    next[r.seq] = r.pos + 1;
  }
  return Status::ok();
}

Status Model::forward(const Batch& batch, Memory& memory, float* logits, ThreadPool& pool,
                      LinearObserver* observer) const {
  if (logits == nullptr) return Status::invalid("forward: null logits buffer");
  if (Status s = check_batch(batch, memory); !s) return s;
  const ModelConfig& c = config_;
  const int64_t m = batch.size();
  const int64_t e = c.n_embd;
  std::map<int32_t, SeqSpan> spans;
  for (const BatchRow& r : batch.rows) {
    auto [it, fresh] = spans.try_emplace(r.seq, SeqSpan{r.pos, r.pos});
    if (!fresh) it->second.last = r.pos;
  }
  for (const auto& [seq, span] : spans) memory.set_size(seq, span.first);  // invalid until this call succeeds

  std::vector<float> x = embed(batch);
  if (Status s = forward_layers(batch, memory, x.data(), 0, c.n_layer, pool, observer); !s) return s;

  // The rows that ask for logits, normed into consecutive rows of h.
  std::vector<float> h(static_cast<size_t>(batch.logits_rows() * e));
  int64_t n_out = 0;
  for (int64_t t = 0; t < m; ++t) {
    if (!batch.rows[static_cast<size_t>(t)].logits) continue;
    rms_norm(x.data() + t * e, output_norm_.data(), e, c.rms_eps, h.data() + n_out * e);
    ++n_out;
  }
  if (n_out > 0) {
    const Status s = shard_ ? sharded_head(h.data(), n_out, logits, pool) : output_.forward(h.data(), n_out, logits, pool);
    if (!s) return s;
  }
  for (const auto& [seq, span] : spans) memory.set_size(seq, span.last + 1);
  return Status::ok();
}

Status Model::sharded_head(const float* h, int64_t rows, float* logits, ThreadPool& pool) const {
  const int64_t mine = shard_->vocab_end - shard_->vocab_begin;
  std::vector<float> local(static_cast<size_t>(rows * mine));
  if (Status s = output_.forward(h, rows, local.data(), pool); !s) return s;
  std::vector<int64_t> counts;
  for (int64_t n : shard_->vocab_counts) counts.push_back(rows * n);
  std::vector<float> all(static_cast<size_t>(rows * config_.n_vocab));
  if (Status s = comm_->all_gather(local.data(), all.data(), counts); !s) return s;
  // all: rank blocks [rows][n_r]; logits: [rows][n_vocab], rank r's columns from its first row.
  const float* block = all.data();
  int64_t first = 0;
  for (int64_t n : shard_->vocab_counts) {
    for (int64_t t = 0; t < rows; ++t) std::copy_n(block + t * n, n, logits + t * config_.n_vocab + first);
    block += rows * n;
    first += n;
  }
  return Status::ok();
}

std::vector<float> Model::embed(const Batch& batch) const {
  const int64_t e = config_.n_embd;
  std::vector<float> x(static_cast<size_t>(batch.size() * e));
  for (int64_t t = 0; t < batch.size(); ++t) {
    token_embd_.row(batch.rows[static_cast<size_t>(t)].token, x.data() + t * e);
  }
  return x;
}

Status Model::forward_layers(const Batch& batch, Memory& memory, float* x, int64_t first, int64_t last,
                             ThreadPool& pool, LinearObserver* observer) const {
  if (first < 0 || last > config_.n_layer || first > last) {
    return Status::invalid("forward_layers: layers [" + std::to_string(first) + ", " + std::to_string(last) +
                           ") outside [0, " + std::to_string(config_.n_layer) + ")");
  }
  std::vector<int64_t> positions(batch.rows.size());
  for (size_t t = 0; t < batch.rows.size(); ++t) positions[t] = batch.rows[t].pos;
  const RopeTable rope = make_rope_table(config_.rope, positions);
  Scratch scratch;
  ForwardContext ctx{config_, batch.rows, rope, memory, pool, ops_, observer, scratch, comm_};
  for (int64_t l = first; l < last; ++l) {
    for (const std::unique_ptr<Block>& block : layers_[static_cast<size_t>(l)]) {
      if (Status s = block->forward(l, x, ctx); !s) return s;
    }
  }
  return Status::ok();
}

Status Model::forward(std::span<const int32_t> tokens, int64_t start_pos, Memory& memory, float* logits,
                      ThreadPool& pool, LogitsMode mode, LinearObserver* observer, int32_t seq) const {
  return forward(Batch::sequence(tokens, start_pos, seq, mode), memory, logits, pool, observer);
}

}  // namespace lutq::model
