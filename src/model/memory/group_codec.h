// GroupCodec: asymmetric b-bit quantization of a row of values in groups of `group`
// consecutive values, one fp16 (scale, min) pair per group, codes bit-packed. Used by the q4
// (KIVI) and XQuant kinds.
//
// Encoding a group x[0..g): lo = fp16 at or below min x, step = fp16 at or above
// (max x − lo) / (2^b − 1) (both rounded outward, so every value lies in [lo, lo + (2^b−1)·step]),
// code = round((x − lo) / step). Decoding: x̂ = lo + code·step. Hence the error bound the tests
// and docs/memory.md use: |x − x̂| <= step / 2 (up to fp32 rounding of the arithmetic).
#pragma once

#include <cstdint>

namespace lutq::model {

class GroupCodec {
 public:
  // bits in 1..8; group >= 1 with group·bits a multiple of 8 (whole bytes per group).
  GroupCodec(int bits, int64_t group) : bits_(bits), group_(group) {}

  int bits() const { return bits_; }
  int64_t group() const { return group_; }
  // Bytes of one encoded row of `width` values (width a multiple of group).
  int64_t row_bytes(int64_t width) const { return width / group_ * (4 + group_ * bits_ / 8); }

  void encode(const float* x, int64_t width, uint8_t* out) const;
  void decode(const uint8_t* in, int64_t width, float* x) const;
  // The quantization step of each group of an encoded row: step[width / group].
  void steps(const uint8_t* in, int64_t width, float* step) const;

 private:
  int bits_;
  int64_t group_;
};

// The largest group size <= preferred (halving from it, at least 8) that divides width, else width.
int64_t fitting_group(int64_t width, int64_t preferred);

}  // namespace lutq::model
