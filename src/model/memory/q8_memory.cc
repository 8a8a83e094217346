// Q8Memory: keys and values as int8 per token and kv head, symmetric (absmax / 127), one fp32
// scale per (position, kv head). Per value: |k − k̂| <= scale / 2 = absmax / 254 of its head.
#include <algorithm>
#include <cmath>
#include <vector>

#include "model/memory/kinds.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

class Q8Memory final : public StagedMemory {
 public:
  explicit Q8Memory(const MemoryShape& s)
      : StagedMemory(s),
        k_(static_cast<size_t>(positions() * kv_dim())), v_(k_.size()),
        k_scale_(static_cast<size_t>(positions() * s.n_head_kv)), v_scale_(k_scale_.size()) {}

  std::string_view kind() const override { return "q8"; }
  int64_t bytes() const override {
    return static_cast<int64_t>(k_.size() + v_.size() + (k_scale_.size() + v_scale_.size()) * sizeof(float));
  }
  int64_t bytes_per_token() const override {
    return 2 * shape().n_layer * (kv_dim() + shape().n_head_kv * static_cast<int64_t>(sizeof(float)));
  }

 protected:
  Status store(int64_t layer, const AttentionRows& in, OpIsa, ThreadPool&) override {
    for (size_t t = 0; t < in.rows.size(); ++t) {
      const int64_t at = index(in.rows[t].seq, layer, in.rows[t].pos);
      encode(in.k + static_cast<int64_t>(t) * kv_dim(), at, k_, k_scale_);
      encode(in.v + static_cast<int64_t>(t) * kv_dim(), at, v_, v_scale_);
    }
    return Status::ok();
  }

  Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows&, float* k, float* v,
              OpIsa, ThreadPool& pool) override {
    const int64_t base = index(seq, layer, 0);
    for_positions(pool, n, 2 * kv_dim(), [&](int64_t first, int64_t last) {
      for (int64_t p = first; p < last; ++p) {
        decode(base + p, k_, k_scale_, k + p * kv_dim());
        decode(base + p, v_, v_scale_, v + p * kv_dim());
      }
    });
    return Status::ok();
  }

 private:
  int64_t positions() const { return shape().sequences * shape().n_layer * shape().capacity; }
  int64_t index(int32_t seq, int64_t layer, int64_t pos) const {
    return (seq * shape().n_layer + layer) * shape().capacity + pos;
  }

  void encode(const float* x, int64_t at, std::vector<int8_t>& codes, std::vector<float>& scales) const {
    const int64_t hd = shape().head_dim;
    for (int64_t h = 0; h < shape().n_head_kv; ++h) {
      const float* xh = x + h * hd;
      float absmax = 0.0f;
      for (int64_t i = 0; i < hd; ++i) absmax = std::max(absmax, std::abs(xh[i]));
      const float scale = absmax / 127.0f;
      scales[static_cast<size_t>(at * shape().n_head_kv + h)] = scale;
      int8_t* out = codes.data() + at * kv_dim() + h * hd;
      for (int64_t i = 0; i < hd; ++i) {
        out[i] = scale > 0.0f ? static_cast<int8_t>(std::clamp(std::lround(xh[i] / scale), -127L, 127L)) : int8_t{0};
      }
    }
  }

  void decode(int64_t at, const std::vector<int8_t>& codes, const std::vector<float>& scales, float* x) const {
    const int64_t hd = shape().head_dim;
    for (int64_t h = 0; h < shape().n_head_kv; ++h) {
      const float scale = scales[static_cast<size_t>(at * shape().n_head_kv + h)];
      const int8_t* in = codes.data() + at * kv_dim() + h * hd;
      for (int64_t i = 0; i < hd; ++i) x[h * hd + i] = static_cast<float>(in[i]) * scale;
    }
  }

  std::vector<int8_t> k_, v_;
  std::vector<float> k_scale_, v_scale_;
};

}  // namespace

int64_t q8_memory_bytes(const MemoryShape& s, const MemoryOptions&) {
  return 2 * s.sequences * s.n_layer * s.capacity * (s.n_head_kv * s.head_dim + s.n_head_kv * 4);
}

std::unique_ptr<Memory> make_q8_memory(const MemoryShape& s, const MemoryOptions&) {
  return std::make_unique<Q8Memory>(s);
}

}  // namespace lutq::model
