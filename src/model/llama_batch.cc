// LlamaModel::forward_batch: one decode step for several independent sequences (the server's
// continuous batching). The token rows of all sequences go through every linear layer as one
// GEMM with m = number of sequences, so the weights are streamed once per step instead of once
// per sequence; RoPE, the KV-cache write and attention are per sequence, each at its own
// position in its own cache. Kept apart from llama.cc so forward() stays the single-sequence path.
#include <algorithm>
#include <unordered_set>

#include "model/llama.h"
#include "model/llama_block.h"
#include "model/ops.h"

namespace lutq::model {

Status LlamaModel::forward_batch(std::span<const BatchItem> items, float* logits, ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const auto m = static_cast<int64_t>(items.size());
  if (m == 0) return Status::invalid("forward_batch: no items");
  if (logits == nullptr) return Status::invalid("forward_batch: null logits buffer");
  std::unordered_set<const KvCache*> seen;
  for (int64_t t = 0; t < m; ++t) {
    const BatchItem& it = items[static_cast<size_t>(t)];
    const std::string where = "forward_batch: item " + std::to_string(t) + ": ";
    if (it.cache == nullptr) return Status::invalid(where + "null KV cache");
    if (!seen.insert(it.cache).second) return Status::invalid(where + "the same KV cache appears twice in one batch");
    if (it.cache->n_layer_ != c.n_layer || it.cache->kv_dim_ != c.kv_dim()) {
      return Status::invalid(where + "the KV cache was made for another model shape");
    }
    if (it.pos < 0 || it.pos > it.cache->size()) {
      return Status::invalid(where + "position " + std::to_string(it.pos) + " leaves a gap (the cache holds " +
                             std::to_string(it.cache->size()) + " positions)");
    }
    if (it.pos + 1 > it.cache->capacity()) {
      return Status::invalid(where + "KV cache full: position " + std::to_string(it.pos) + ", capacity is " +
                             std::to_string(it.cache->capacity()));
    }
    if (it.token < 0 || it.token >= c.n_vocab) {
      return Status::invalid(where + "token id " + std::to_string(it.token) + " is outside the vocabulary [0, " +
                             std::to_string(c.n_vocab) + ")");
    }
  }
  for (const BatchItem& it : items) it.cache->size_ = it.pos;  // the new row is invalid until success

  const int64_t e = c.n_embd;
  const int64_t qd = c.q_dim();
  const int64_t kvd = c.kv_dim();
  BlockBuffers b(c, m);
  std::vector<float> k_new(BlockBuffers::rows(m, kvd));
  std::vector<float> v_new(BlockBuffers::rows(m, kvd));
  std::vector<RopeTable> rope;
  rope.reserve(items.size());
  for (int64_t t = 0; t < m; ++t) {
    const BatchItem& it = items[static_cast<size_t>(t)];
    const float* row = token_embd_->data() + static_cast<int64_t>(it.token) * e;
    std::copy(row, row + e, b.x.data() + t * e);
    rope.push_back(make_rope_table(c.rope, it.pos, 1));
  }
  const AttentionShape shape{c.n_head, c.n_head_kv, c.head_dim};

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& layer = layers_[static_cast<size_t>(l)];
    const auto linear = [&](LinearRole role, const float* in, float* out) {
      return layer[role].forward(in, m, out, pool);
    };
    rms_norm_rows(b.x.data(), layer.attn_norm.data(), m, e, c.rms_eps, b.h.data());
    if (Status s = linear(LinearRole::kAttnQ, b.h.data(), b.q.data()); !s) return s;
    if (Status s = linear(LinearRole::kAttnK, b.h.data(), k_new.data()); !s) return s;
    if (Status s = linear(LinearRole::kAttnV, b.h.data(), v_new.data()); !s) return s;
    for (int64_t t = 0; t < m; ++t) {
      const BatchItem& it = items[static_cast<size_t>(t)];
      const RopeTable& r = rope[static_cast<size_t>(t)];
      apply_rope(b.q.data() + t * qd, c.n_head, c.head_dim, r.cos.data(), r.sin.data(), r.half_dim);
      apply_rope(k_new.data() + t * kvd, c.n_head_kv, c.head_dim, r.cos.data(), r.sin.data(), r.half_dim);
      std::copy_n(k_new.data() + t * kvd, kvd, it.cache->k(l) + it.pos * kvd);
      std::copy_n(v_new.data() + t * kvd, kvd, it.cache->v(l) + it.pos * kvd);
      // The same call forward() makes for one token, so a batch of one is bit-identical to it.
      attention(b.q.data() + t * qd, it.cache->k(l), it.cache->v(l), 1, it.pos, shape, b.att.data() + t * qd, pool,
                use_avx2_);
    }
    if (Status s = attention_and_ffn_residuals(c, layer, m, b, linear); !s) return s;
  }

  rms_norm_rows(b.x.data(), output_norm_.data(), m, e, c.rms_eps, b.h.data());
  if (Status s = output_.forward(b.h.data(), m, logits, pool); !s) return s;
  for (const BatchItem& it : items) it.cache->size_ = it.pos + 1;
  return Status::ok();
}

}  // namespace lutq::model
