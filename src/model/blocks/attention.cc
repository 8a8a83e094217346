#include "model/blocks/attention.h"

#include <optional>
#include <span>
#include <utility>

namespace lutq::model {
namespace {

// What the k/v path needs of the model's configuration, kept by the block so that it can rebuild
// keys for a memory outside a forward pass (KvProjector).
struct KeyShape {
  RopeConfig rope;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  float rms_eps = 0.0f;
  bool qk_norm_full = false;  // k norm over all kv_dim values of a row (olmoe), else per head
};

class AttentionBlock final : public Block, public KvProjector {
 public:
  AttentionBlock(std::vector<float> norm, Linear q, Linear k, Linear v, Linear o, std::vector<float> q_norm,
                 std::vector<float> k_norm, KeyShape key)
      : norm_(std::move(norm)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)),
        q_norm_(std::move(q_norm)), k_norm_(std::move(k_norm)), key_(std::move(key)) {}

  Status project(const float* x, int64_t m, float* k, float* v, ThreadPool& pool) const override {
    const Linear* lins[] = {&k_, &v_};
    float* outs[] = {k, v};
    return Linear::forward_shared(lins, x, m, outs, pool);
  }
  Status project_keys(const float* x, int64_t m, float* k, ThreadPool& pool) const override {
    return k_.forward(x, m, k, pool);
  }
  Status project_values(const float* x, int64_t m, float* v, ThreadPool& pool) const override {
    return v_.forward(x, m, v, pool);
  }
  std::span<const float> k_bias() const override { return k_.bias(); }
  std::span<const float> v_bias() const override { return v_.bias(); }
  RopeTable rope_table(int64_t first, int64_t count) const override {
    return make_rope_table(key_.rope, first, count);
  }
  void position_keys(float* k, int64_t m, const RopeTable& rope, int64_t first_row) const override {
    const int64_t kvd = key_.n_head_kv * key_.head_dim;
    if (!k_norm_.empty()) {
      const int64_t width = key_.qk_norm_full ? kvd : key_.head_dim;
      rms_norm_rows(k, k_norm_.data(), m * kvd / width, width, key_.rms_eps, k);
    }
    for (int64_t t = 0; t < m; ++t) {
      const float* cs = rope.cos.data() + (first_row + t) * rope.half_dim;
      const float* sn = rope.sin.data() + (first_row + t) * rope.half_dim;
      apply_rope(k + t * kvd, key_.n_head_kv, key_.head_dim, cs, sn, rope.half_dim, key_.rope.mode);
    }
  }

  Status forward(int64_t layer, float* x, ForwardContext& ctx) const override {
    const ModelConfig& c = ctx.config;
    const int64_t m = ctx.m();
    const int64_t e = c.n_embd;
    Scratch& s = ctx.scratch;
    float* h = Scratch::rows(s.h, m, e);
    float* q = Scratch::rows(s.q, m, c.q_dim());
    float* k = Scratch::rows(s.k, m, c.kv_dim());
    float* v = Scratch::rows(s.v, m, c.kv_dim());
    float* att = Scratch::rows(s.att, m, c.q_dim());
    rms_norm_rows(x, norm_.data(), m, e, c.rms_eps, h);
    const LinearRole roles[] = {LinearRole::kAttnQ, LinearRole::kAttnK, LinearRole::kAttnV};
    const Linear* lins[] = {&q_, &k_, &v_};
    float* outs[] = {q, k, v};
    if (Status st = ctx.linears(layer, roles, lins, h, outs); !st) return st;
    position_queries_and_keys(c, ctx.rope, m, q, k);
    const AttentionRows rows{ctx.rows, q, k, v, h, this};
    if (Status st = ctx.memory.attend(layer, rows, att, ctx.ops, ctx.pool); !st) return st;
    if (Status st = ctx.linear(layer, LinearRole::kAttnOutput, o_, att, h); !st) return st;
    if (Status st = ctx.all_reduce(h, e); !st) return st;
    add_inplace(x, h, m * e);
    return Status::ok();
  }

  Linear* find(LinearRole role) override {
    switch (role) {
      case LinearRole::kAttnQ: return &q_;
      case LinearRole::kAttnK: return &k_;
      case LinearRole::kAttnV: return &v_;
      case LinearRole::kAttnOutput: return &o_;
      default: return nullptr;
    }
  }

 private:
  // Per-head q/k norms (when present), then RoPE at each row's position.
  void position_queries_and_keys(const ModelConfig& c, const RopeTable& rope, int64_t m, float* q, float* k) const {
    const int64_t qd = c.q_dim();
    const int64_t kvd = c.kv_dim();
    const int64_t hd = c.head_dim;
    if (!q_norm_.empty() && c.qk_norm_full) {  // one norm over each row's whole q / k (olmoe)
      rms_norm_rows(q, q_norm_.data(), m, qd, c.rms_eps, q);
      rms_norm_rows(k, k_norm_.data(), m, kvd, c.rms_eps, k);
    } else if (!q_norm_.empty()) {
      rms_norm_rows(q, q_norm_.data(), m * c.n_head, hd, c.rms_eps, q);
      rms_norm_rows(k, k_norm_.data(), m * c.n_head_kv, hd, c.rms_eps, k);
    }
    for (int64_t t = 0; t < m; ++t) {
      const float* cs = rope.cos.data() + t * rope.half_dim;
      const float* sn = rope.sin.data() + t * rope.half_dim;
      apply_rope(q + t * qd, c.n_head, hd, cs, sn, rope.half_dim, c.rope.mode);
      apply_rope(k + t * kvd, c.n_head_kv, hd, cs, sn, rope.half_dim, c.rope.mode);
    }
  }

  std::vector<float> norm_;
  Linear q_, k_, v_, o_;
  std::vector<float> q_norm_, k_norm_;  // [head_dim] each, or empty
  KeyShape key_;
};

std::string tensor(int64_t l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

}  // namespace

std::vector<TensorExpectation> attention_tensors(const ModelConfig& c, int64_t l) {
  const int64_t e = c.n_embd;
  std::vector<TensorExpectation> t = {
      {tensor(l, "attn_norm.weight"), {e}},
      {tensor(l, "attn_q.weight"), {e, c.q_dim()}},
      {tensor(l, "attn_k.weight"), {e, c.kv_dim()}},
      {tensor(l, "attn_v.weight"), {e, c.kv_dim()}},
      {tensor(l, "attn_output.weight"), {c.q_dim(), e}},
  };
  if (c.qkv_bias) {
    t.push_back({tensor(l, "attn_q.bias"), {c.q_dim()}});
    t.push_back({tensor(l, "attn_k.bias"), {c.kv_dim()}});
    t.push_back({tensor(l, "attn_v.bias"), {c.kv_dim()}});
  }
  if (c.qk_norm) {
    t.push_back({tensor(l, "attn_q_norm.weight"), {c.qk_norm_full ? c.q_dim() : c.head_dim}});
    t.push_back({tensor(l, "attn_k_norm.weight"), {c.qk_norm_full ? c.kv_dim() : c.head_dim}});
  }
  return t;
}

Result<std::unique_ptr<Block>> build_attention(LayerBuilder& b, int64_t l) {
  const ModelConfig& c = b.config();
  Result<std::vector<float>> norm = b.vector(tensor(l, "attn_norm.weight"));
  if (!norm) return norm.status();
  std::vector<Linear> lin;
  for (LinearRole role : {LinearRole::kAttnQ, LinearRole::kAttnK, LinearRole::kAttnV, LinearRole::kAttnOutput}) {
    const bool bias = c.qkv_bias && role != LinearRole::kAttnOutput;
    Result<Linear> r = b.linear(l, role, bias);
    if (!r) return r.status();
    lin.push_back(std::move(*r));
  }
  std::vector<float> q_norm, k_norm;
  if (c.qk_norm) {
    Result<std::vector<float>> qn = b.vector(tensor(l, "attn_q_norm.weight"));
    if (!qn) return qn.status();
    Result<std::vector<float>> kn = b.vector(tensor(l, "attn_k_norm.weight"));
    if (!kn) return kn.status();
    q_norm = std::move(*qn);
    k_norm = std::move(*kn);
  }
  return std::unique_ptr<Block>(std::make_unique<AttentionBlock>(std::move(*norm), std::move(lin[0]), std::move(lin[1]),
                                                                 std::move(lin[2]), std::move(lin[3]),
                                                                 std::move(q_norm), std::move(k_norm),
                                                                 KeyShape{c.rope, c.n_head_kv, c.head_dim, c.rms_eps, c.qk_norm_full}));
}

}  // namespace lutq::model
