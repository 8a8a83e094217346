// F32Memory: keys and values in fp32, [sequence][layer][position][n_head_kv·head_dim].
#include "model/memory/f32_memory.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

class F32Memory final : public Memory {
 public:
  explicit F32Memory(const MemoryShape& s)
      : Memory(s),
        kv_dim_(s.n_head_kv * s.head_dim),
        k_(static_cast<size_t>(s.sequences * s.n_layer * s.capacity * kv_dim_)),
        v_(k_.size()) {}

  std::string_view kind() const override { return "f32"; }
  int64_t bytes() const override { return static_cast<int64_t>((k_.size() + v_.size()) * sizeof(float)); }
  int64_t bytes_per_token() const override {
    return 2 * shape().n_layer * kv_dim_ * static_cast<int64_t>(sizeof(float));
  }

  Status attend(int64_t layer, const AttentionRows& in, float* out, OpIsa ops, ThreadPool& pool) override {
    const auto m = static_cast<int64_t>(in.rows.size());
    for (int64_t t = 0; t < m; ++t) {
      const BatchRow& r = in.rows[static_cast<size_t>(t)];
      std::copy_n(in.k + t * kv_dim_, kv_dim_, k_row(r.seq, layer, r.pos));
      std::copy_n(in.v + t * kv_dim_, kv_dim_, v_row(r.seq, layer, r.pos));
    }
    const MemoryShape& s = shape();
    const int64_t hd = s.head_dim;
    const int64_t q_stride = s.n_head * hd;
    const int64_t n_rep = s.n_head / s.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int64_t items = m * s.n_head;
    int64_t keys = 0;
    for (const BatchRow& r : in.rows) keys = std::max(keys, r.pos + 1);
    const auto body = [&](int index, int count) {
      if (index >= items) return;
      std::vector<float> scores(static_cast<size_t>(keys));
      // Strided (not contiguous) items: later rows see more keys, so this balances causal work.
      for (int64_t item = index; item < items; item += count) {
        const int64_t t = item / s.n_head;
        const int64_t h = item % s.n_head;
        const BatchRow& r = in.rows[static_cast<size_t>(t)];
        const int64_t kv_off = (h / n_rep) * hd;
        attend_head(in.q + t * q_stride + h * hd, k_row(r.seq, layer, 0) + kv_off, v_row(r.seq, layer, 0) + kv_off,
                    r.pos + 1, kv_dim_, hd, scale, scores.data(), out + t * q_stride + h * hd, ops.avx2);
      }
    };
    if (pool.size() == 1 || items * keys * hd * 4 < kMinParallelFlops) {
      body(0, 1);
    } else {
      pool.run(body);
    }
    return Status::ok();
  }

 private:
  size_t offset(int32_t seq, int64_t layer, int64_t pos) const {
    const MemoryShape& s = shape();
    return static_cast<size_t>(((seq * s.n_layer + layer) * s.capacity + pos) * kv_dim_);
  }
  float* k_row(int32_t seq, int64_t layer, int64_t pos) { return k_.data() + offset(seq, layer, pos); }
  float* v_row(int32_t seq, int64_t layer, int64_t pos) { return v_.data() + offset(seq, layer, pos); }

  int64_t kv_dim_;
  std::vector<float> k_;
  std::vector<float> v_;
};

}  // namespace

int64_t f32_memory_bytes(const MemoryShape& s) {
  return 2 * s.sequences * s.n_layer * s.capacity * s.n_head_kv * s.head_dim * static_cast<int64_t>(sizeof(float));
}

std::unique_ptr<Memory> make_f32_memory(const MemoryShape& shape) { return std::make_unique<F32Memory>(shape); }

}  // namespace lutq::model
