#include "model/memory/latent_store.h"

#include <algorithm>

#include "model/memory/staged_memory.h"

namespace lutq::model {

LatentStore::LatentStore(int64_t slots, int64_t capacity, int64_t width, int bits, int64_t group)
    : capacity_(capacity), width_(width), bits_(bits), group_(group), codec_(bits == 32 ? 8 : bits, group),
      groups_(bits == 32 ? 0 : capacity / group),
      codes_(static_cast<size_t>(slots * groups_ * group_bytes())),
      window_(static_cast<size_t>(slots * (bits == 32 ? capacity : group) * width)),
      quantized_(static_cast<size_t>(bits == 32 ? 0 : slots), 0),
      sink_(static_cast<size_t>(bits == 32 ? 0 : slots * kSink * width)) {}

int64_t LatentStore::bytes_for(int64_t slots, int64_t capacity, int64_t width, int bits, int64_t group) {
  if (bits == 32) return slots * capacity * width * 4;
  const GroupCodec codec(bits, group);
  return slots * ((capacity / group) * width * codec.row_bytes(group) + group * width * 4 + 8 + kSink * width * 4);
}

int64_t LatentStore::bytes() const {
  return static_cast<int64_t>(codes_.size() + (window_.size() + sink_.size()) * sizeof(float) +
                              quantized_.size() * sizeof(int64_t));
}

int64_t LatentStore::bytes_per_position() const {
  return fp32() ? width_ * 4 : (group_bytes() + group_ - 1) / group_;
}

void LatentStore::put(int64_t slot, int64_t pos, const float* row) {
  if (fp32()) {
    std::copy_n(row, width_, window_.data() + (slot * capacity_ + pos) * width_);
    return;
  }
  const int64_t g = pos / group_;
  int64_t& done = quantized_[static_cast<size_t>(slot)];
  if (g < done) {
    decode_group(slot, g, 0, pos - g * group_, window(slot));
    done = g;
  }
  const int64_t i = pos % group_;
  std::copy_n(row, width_, window(slot) + i * width_);
  if (pos < kSink) std::copy_n(row, width_, sink_.data() + (slot * kSink + pos) * width_);
  if (i == group_ - 1 && g < groups_) {
    encode_group(slot, g);
    done = g + 1;
  }
}

void LatentStore::get(int64_t slot, int64_t first, int64_t count, float* out, ThreadPool& pool) const {
  if (fp32()) {
    std::copy_n(window_.data() + (slot * capacity_ + first) * width_, count * width_, out);
    return;
  }
  const int64_t last = first + count;  // exclusive
  const int64_t done = quantized_[static_cast<size_t>(slot)];
  const int64_t g0 = first / group_;
  const int64_t g1 = std::min(done, (last + group_ - 1) / group_);  // quantized groups [g0, g1)
  for_positions(pool, g1 - g0, group_ * width_ * 4, [&](int64_t a, int64_t b) {
    for (int64_t g = g0 + a; g < g0 + b; ++g) {
      const int64_t from = std::max(first, g * group_);
      const int64_t to = std::min(last, (g + 1) * group_);
      decode_group(slot, g, from - g * group_, to - g * group_, out + (from - first) * width_);
    }
  });
  const int64_t from = std::max(first, g1 * group_);
  if (last > from) std::copy_n(window(slot) + (from % group_) * width_, (last - from) * width_, out + (from - first) * width_);
}

void LatentStore::decode_group(int64_t slot, int64_t g, int64_t from, int64_t to, float* out) const {
  // A tile of channels at a time, so that the transposed writes go out as short contiguous runs.
  constexpr int64_t kTile = 16;
  std::vector<float> tile(static_cast<size_t>(kTile * group_));
  const uint8_t* in = codes(slot, g);
  for (int64_t c0 = 0; c0 < width_; c0 += kTile) {
    const int64_t tw = std::min(kTile, width_ - c0);
    for (int64_t c = 0; c < tw; ++c) {
      codec_.decode(in + (c0 + c) * codec_.row_bytes(group_), group_, tile.data() + c * group_);
    }
    for (int64_t i = from; i < to; ++i) {
      float* row = out + (i - from) * width_ + c0;
      for (int64_t c = 0; c < tw; ++c) row[c] = tile[static_cast<size_t>(c * group_ + i)];
    }
  }
  if (g != 0) return;
  for (int64_t i = from; i < std::min(to, kSink); ++i) {
    std::copy_n(sink_.data() + (slot * kSink + i) * width_, width_, out + (i - from) * width_);
  }
}

void LatentStore::encode_group(int64_t slot, int64_t g) {
  std::vector<float> column(static_cast<size_t>(group_));
  uint8_t* out = codes_.data() + (slot * groups_ + g) * group_bytes();
  const float* w = window(slot);
  for (int64_t c = 0; c < width_; ++c) {
    for (int64_t i = 0; i < group_; ++i) column[static_cast<size_t>(i)] = w[i * width_ + c];
    // Group 0: the sink positions (kept exact) take the value of the first position after them.
    const int64_t first_kept = std::min(kSink, group_ - 1);
    for (int64_t i = 0; g == 0 && i < first_kept; ++i) {
      column[static_cast<size_t>(i)] = column[static_cast<size_t>(first_kept)];
    }
    codec_.encode(column.data(), group_, out + c * codec_.row_bytes(group_));
  }
}

}  // namespace lutq::model
