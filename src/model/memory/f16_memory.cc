// F16Memory: keys and values rounded to IEEE fp16, [sequence][layer][position][kv_dim] each.
// Error: |k − k̂| <= 2^-11 |k| per value (round to nearest; fp16 normal range).
#include <vector>

#include "core/fp16.h"
#include "model/memory/kinds.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

class F16Memory final : public StagedMemory {
 public:
  explicit F16Memory(const MemoryShape& s)
      : StagedMemory(s), k_(static_cast<size_t>(s.sequences * s.n_layer * s.capacity * kv_dim())), v_(k_.size()) {}

  std::string_view kind() const override { return "f16"; }
  int64_t bytes() const override { return static_cast<int64_t>((k_.size() + v_.size()) * sizeof(uint16_t)); }
  int64_t bytes_per_token() const override { return 2 * shape().n_layer * kv_dim() * 2; }

 protected:
  Status store(int64_t layer, const AttentionRows& in, OpIsa, ThreadPool&) override {
    const int64_t d = kv_dim();
    for (size_t t = 0; t < in.rows.size(); ++t) {
      const size_t at = offset(in.rows[t].seq, layer, in.rows[t].pos);
      for (int64_t i = 0; i < d; ++i) {
        k_[at + static_cast<size_t>(i)] = fp32_to_fp16(in.k[static_cast<int64_t>(t) * d + i]);
        v_[at + static_cast<size_t>(i)] = fp32_to_fp16(in.v[static_cast<int64_t>(t) * d + i]);
      }
    }
    return Status::ok();
  }

  Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows&, float* k, float* v,
              OpIsa ops, ThreadPool& pool) override {
    const int64_t d = kv_dim();
    const size_t base = offset(seq, layer, 0);
    for_positions(pool, n, 2 * d, [&](int64_t first, int64_t last) {
      if (ops.avx2) {
        fp16_to_fp32_avx2(k_.data() + base + static_cast<size_t>(first * d), k + first * d, (last - first) * d);
        fp16_to_fp32_avx2(v_.data() + base + static_cast<size_t>(first * d), v + first * d, (last - first) * d);
        return;
      }
      for (int64_t i = first * d; i < last * d; ++i) {
        k[i] = fp16_to_fp32(k_[base + static_cast<size_t>(i)]);
        v[i] = fp16_to_fp32(v_[base + static_cast<size_t>(i)]);
      }
    });
    return Status::ok();
  }

 private:
  size_t offset(int32_t seq, int64_t layer, int64_t pos) const {
    const MemoryShape& s = shape();
    return static_cast<size_t>(((seq * s.n_layer + layer) * s.capacity + pos) * kv_dim());
  }

  std::vector<uint16_t> k_, v_;
};

}  // namespace

int64_t f16_memory_bytes(const MemoryShape& s, const MemoryOptions&) {
  return 2 * s.sequences * s.n_layer * s.capacity * s.n_head_kv * s.head_dim * 2;
}

std::unique_ptr<Memory> make_f16_memory(const MemoryShape& s, const MemoryOptions&) {
  return std::make_unique<F16Memory>(s);
}

}  // namespace lutq::model
