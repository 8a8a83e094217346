// Q4Memory, KIVI-style (Liu et al. 2024): 4-bit keys quantized per channel over groups of
// kGroup consecutive tokens (keys have outlier channels, so a channel shares one scale), 4-bit
// values per token in groups of up to 32 channels; the tokens of the newest, incomplete group
// (the 0..kGroup−1 most recent) stay in fp32 in a window and are quantized when their group
// completes. R = G = 32 (KIVI's defaults are G = 32, R = 128; R = G keeps the window one group).
//
// Per (sequence, layer): key groups [capacity / G][kv_dim] GroupCodec(4, G) rows (one per channel),
// values [capacity][kv_dim] GroupCodec(4, 32) rows, window k, v [G][kv_dim] fp32, and the count of
// quantized groups. Truncating into a quantized group brings that group back into the window
// (decoded), so re-writing positions works at any cut. Error: half a step of the value's group
// (group_codec.h); positions in the window are exact.
#include <algorithm>
#include <vector>

#include "model/memory/group_codec.h"
#include "model/memory/kinds.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

constexpr int64_t kGroup = 32;

struct Q4Layout {
  explicit Q4Layout(const MemoryShape& s)
      : kv_dim(s.n_head_kv * s.head_dim), key_codec(4, kGroup), value_codec(4, fitting_group(kv_dim, 32)),
        groups(s.capacity / kGroup), key_group_bytes(kv_dim * key_codec.row_bytes(kGroup)),
        value_row_bytes(value_codec.row_bytes(kv_dim)),
        slot_bytes(groups * key_group_bytes + s.capacity * value_row_bytes) {}
  int64_t kv_dim;
  GroupCodec key_codec, value_codec;
  int64_t groups;           // complete groups that fit the capacity
  int64_t key_group_bytes;  // one group's keys
  int64_t value_row_bytes;  // one position's values
  int64_t slot_bytes;       // codes of one (sequence, layer)
};

class Q4Memory final : public StagedMemory {
 public:
  explicit Q4Memory(const MemoryShape& s)
      : StagedMemory(s), lay_(s), codes_(static_cast<size_t>(slots() * lay_.slot_bytes)),
        window_k_(static_cast<size_t>(slots() * kGroup * kv_dim())), window_v_(window_k_.size()),
        quantized_(static_cast<size_t>(slots()), 0) {}

  std::string_view kind() const override { return "q4"; }
  int64_t bytes() const override {
    return static_cast<int64_t>(codes_.size() + (window_k_.size() + window_v_.size()) * sizeof(float) +
                                quantized_.size() * sizeof(int64_t));
  }
  // The amortized cost of a position in a quantized group (the fixed window is left out), rounded up.
  int64_t bytes_per_token() const override {
    return shape().n_layer * (lay_.value_row_bytes + (lay_.kv_dim * lay_.key_codec.row_bytes(kGroup) + kGroup - 1) / kGroup);
  }

 protected:
  Status store(int64_t layer, const AttentionRows& in, OpIsa, ThreadPool&) override {
    const int64_t d = kv_dim();
    for (size_t t = 0; t < in.rows.size(); ++t) {
      const int64_t slot = slot_of(in.rows[t].seq, layer);
      const int64_t pos = in.rows[t].pos;
      const int64_t g = pos / kGroup;
      int64_t& done = quantized_[static_cast<size_t>(slot)];
      if (g < done) {  // re-writing inside a quantized group: bring it back into the window
        decode_group(slot, g, pos - g * kGroup, window(window_k_, slot), window(window_v_, slot));
        done = g;
      }
      const int64_t i = pos % kGroup;
      std::copy_n(in.k + static_cast<int64_t>(t) * d, d, window(window_k_, slot) + i * d);
      std::copy_n(in.v + static_cast<int64_t>(t) * d, d, window(window_v_, slot) + i * d);
      if (i == kGroup - 1 && g < lay_.groups) {
        encode_group(slot, g);
        done = g + 1;
      }
    }
    return Status::ok();
  }

  Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows&, float* k, float* v,
              OpIsa, ThreadPool& pool) override {
    const int64_t slot = slot_of(seq, layer);
    const int64_t done = quantized_[static_cast<size_t>(slot)];
    const int64_t d = kv_dim();
    const int64_t groups = std::min(done, (n + kGroup - 1) / kGroup);
    for_positions(pool, groups, 2 * kGroup * d, [&](int64_t first, int64_t last) {
      for (int64_t g = first; g < last; ++g) decode_group(slot, g, std::min(kGroup, n - g * kGroup), k + g * kGroup * d,
                                                          v + g * kGroup * d);
    });
    const int64_t from = groups * kGroup;
    if (n > from) {
      std::copy_n(window(window_k_, slot) + (from % kGroup) * d, (n - from) * d, k + from * d);
      std::copy_n(window(window_v_, slot) + (from % kGroup) * d, (n - from) * d, v + from * d);
    }
    return Status::ok();
  }

 private:
  int64_t slots() const { return shape().sequences * shape().n_layer; }
  int64_t slot_of(int32_t seq, int64_t layer) const { return seq * shape().n_layer + layer; }
  float* window(std::vector<float>& w, int64_t slot) { return w.data() + slot * kGroup * kv_dim(); }
  uint8_t* key_group(int64_t slot, int64_t g) { return codes_.data() + slot * lay_.slot_bytes + g * lay_.key_group_bytes; }
  uint8_t* value_row(int64_t slot, int64_t pos) {
    return codes_.data() + slot * lay_.slot_bytes + lay_.groups * lay_.key_group_bytes + pos * lay_.value_row_bytes;
  }

  // Quantizes the window (group g complete) into group g's codes.
  void encode_group(int64_t slot, int64_t g) {
    const int64_t d = kv_dim();
    const float* wk = window(window_k_, slot);
    const float* wv = window(window_v_, slot);
    float column[kGroup];
    for (int64_t c = 0; c < d; ++c) {
      for (int64_t i = 0; i < kGroup; ++i) column[i] = wk[i * d + c];
      lay_.key_codec.encode(column, kGroup, key_group(slot, g) + c * lay_.key_codec.row_bytes(kGroup));
    }
    for (int64_t i = 0; i < kGroup; ++i) lay_.value_codec.encode(wv + i * d, d, value_row(slot, g * kGroup + i));
  }

  // Decodes the first `count` positions of quantized group g into k, v [count][kv_dim].
  void decode_group(int64_t slot, int64_t g, int64_t count, float* k, float* v) {
    const int64_t d = kv_dim();
    float column[kGroup];
    for (int64_t c = 0; c < d; ++c) {
      lay_.key_codec.decode(key_group(slot, g) + c * lay_.key_codec.row_bytes(kGroup), kGroup, column);
      for (int64_t i = 0; i < count; ++i) k[i * d + c] = column[i];
    }
    for (int64_t i = 0; i < count; ++i) lay_.value_codec.decode(value_row(slot, g * kGroup + i), d, v + i * d);
  }

  Q4Layout lay_;
  std::vector<uint8_t> codes_;
  std::vector<float> window_k_, window_v_;
  std::vector<int64_t> quantized_;  // per (sequence, layer): groups held as codes
};

}  // namespace

int64_t q4_memory_bytes(const MemoryShape& s, const MemoryOptions&) {
  const Q4Layout lay(s);
  const int64_t slots = s.sequences * s.n_layer;
  return slots * (lay.slot_bytes + 2 * kGroup * lay.kv_dim * static_cast<int64_t>(sizeof(float)) +
                  static_cast<int64_t>(sizeof(int64_t)));
}

std::unique_ptr<Memory> make_q4_memory(const MemoryShape& s, const MemoryOptions&) {
  return std::make_unique<Q4Memory>(s);
}

}  // namespace lutq::model
