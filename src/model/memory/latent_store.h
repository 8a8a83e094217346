// LatentStore: rows of `width` values per (slot, position), a slot being one (sequence, layer),
// quantized KIVI-style: each channel on its own over groups of `group` consecutive positions
// (GroupCodec(bits, group): one fp16 scale/min pair per channel and group), the positions of the
// newest, incomplete group kept in an fp32 window and quantized when the group completes. With
// bits = 32 the rows are kept in fp32 as given (tests: the rebuild path without quantization).
//
// The first kSink positions (the attention sink: the first token's normed input has a few
// channels hundreds of times the typical size) are kept exact in fp32 and left out of group 0's
// ranges, which they would otherwise set for every channel (docs/memory.md).
//
// Error: a quantized value is within half its (channel, group) step of the stored one; window
// and sink values are exact. put() at a position inside an already quantized group (the sequence was
// truncated) first brings that group back into the window, decoded.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/memory/group_codec.h"

namespace lutq::model {

class LatentStore {
 public:
  static constexpr int64_t kSink = 4;

  LatentStore(int64_t slots, int64_t capacity, int64_t width, int bits, int64_t group);

  // Bytes a store of this size holds (codes, windows, counters), and the amortized bytes of one
  // position of one slot in a quantized group, rounded up.
  static int64_t bytes_for(int64_t slots, int64_t capacity, int64_t width, int bits, int64_t group);
  int64_t bytes() const;
  int64_t bytes_per_position() const;

  void put(int64_t slot, int64_t pos, const float* row);
  // Rows first..first+count−1 of slot into out [count][width] (all written earlier).
  void get(int64_t slot, int64_t first, int64_t count, float* out, ThreadPool& pool) const;

 private:
  bool fp32() const { return bits_ == 32; }
  int64_t group_bytes() const { return width_ * codec_.row_bytes(group_); }
  const uint8_t* codes(int64_t slot, int64_t g) const {
    return codes_.data() + (slot * groups_ + g) * group_bytes();
  }
  float* window(int64_t slot) { return window_.data() + slot * group_ * width_; }
  const float* window(int64_t slot) const { return window_.data() + slot * group_ * width_; }
  // Decodes group g of slot: rows [from, to) of it into out [to − from][width].
  void decode_group(int64_t slot, int64_t g, int64_t from, int64_t to, float* out) const;
  void encode_group(int64_t slot, int64_t g);

  int64_t capacity_, width_;
  int bits_;
  int64_t group_;
  GroupCodec codec_;
  int64_t groups_;                 // complete groups that fit the capacity
  std::vector<uint8_t> codes_;     // [slot][groups][width channels][row_bytes(group)]
  std::vector<float> window_;      // [slot][group][width]; fp32 mode: [slot][capacity][width]
  std::vector<int64_t> quantized_; // per slot: groups held as codes
  std::vector<float> sink_;        // [slot][kSink][width], quantized mode only
};

}  // namespace lutq::model
