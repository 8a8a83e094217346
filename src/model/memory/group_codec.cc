#include "model/memory/group_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace lutq::model {
namespace {

// fp16 of f rounded toward −inf (down) or +inf (up); f finite and within the fp16 range.
uint16_t fp16_toward(float f, bool up) {
  uint16_t h = fp32_to_fp16(f);
  const float back = fp16_to_fp32(h);
  if (up ? back >= f : back <= f) return h;
  // One ulp outward: magnitude bits step by one, the sign decides the direction.
  const bool negative = (h & 0x8000u) != 0;
  if ((h & 0x7fffu) == 0) return up ? uint16_t{0x0001} : uint16_t{0x8001};
  return static_cast<uint16_t>(up != negative ? h + 1 : h - 1);
}

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// x[i] = lo + code_i·step for the codes of `bytes` bytes at 4 bits (low nibble first) or 8.
void decode_bytes(const uint8_t* codes, int64_t bytes, int bits, float lo, float step, float* x) {
  if (bits == 8) {
    for (int64_t i = 0; i < bytes; ++i) x[i] = lo + static_cast<float>(codes[i]) * step;
    return;
  }
  for (int64_t i = 0; i < bytes; ++i) {
    x[2 * i] = lo + static_cast<float>(codes[i] & 15u) * step;
    x[2 * i + 1] = lo + static_cast<float>(codes[i] >> 4) * step;
  }
}

}  // namespace

int64_t fitting_group(int64_t width, int64_t preferred) {
  for (int64_t g = preferred; g >= 8; g /= 2) {
    if (width % g == 0) return g;
  }
  return width;
}

void GroupCodec::encode(const float* x, int64_t width, uint8_t* out) const {
  const int levels = (1 << bits_) - 1;
  const int64_t code_bytes = group_ * bits_ / 8;
  for (int64_t g0 = 0; g0 < width; g0 += group_) {
    const float* xg = x + g0;
    const auto [lo_it, hi_it] = std::minmax_element(xg, xg + group_);
    const uint16_t lo_h = fp16_toward(*lo_it, false);
    const float lo = fp16_to_fp32(lo_h);
    const float span = *hi_it - lo;
    const uint16_t step_h = span > 0.0f ? fp16_toward(span / static_cast<float>(levels), true) : uint16_t{0};
    const float step = fp16_to_fp32(step_h);
    put_u16(out, step_h);
    put_u16(out + 2, lo_h);
    uint8_t* codes = out + 4;
    std::memset(codes, 0, static_cast<size_t>(code_bytes));
    for (int64_t i = 0; i < group_; ++i) {
      const int code = step > 0.0f ? std::clamp(static_cast<int>(std::lround((xg[i] - lo) / step)), 0, levels) : 0;
      const int64_t bit = i * bits_;
      const uint32_t shifted = static_cast<uint32_t>(code) << (bit % 8);
      codes[bit / 8] = static_cast<uint8_t>(codes[bit / 8] | (shifted & 0xffu));
      if ((bit % 8) + bits_ > 8) codes[bit / 8 + 1] = static_cast<uint8_t>(codes[bit / 8 + 1] | (shifted >> 8));
    }
    out += 4 + code_bytes;
  }
}

void GroupCodec::decode(const uint8_t* in, int64_t width, float* x) const {
  const uint32_t mask = (1u << bits_) - 1u;
  const int64_t code_bytes = group_ * bits_ / 8;
  for (int64_t g0 = 0; g0 < width; g0 += group_) {
    const float step = fp16_to_fp32(get_u16(in));
    const float lo = fp16_to_fp32(get_u16(in + 2));
    const uint8_t* codes = in + 4;
    if (bits_ == 4 || bits_ == 8) {  // whole bytes or nibbles: the same values, in a loop that vectorizes
      decode_bytes(codes, code_bytes, bits_, lo, step, x + g0);
      in += 4 + code_bytes;
      continue;
    }
    for (int64_t i = 0; i < group_; ++i) {
      const int64_t bit = i * bits_;
      uint32_t word = codes[bit / 8];
      if ((bit % 8) + bits_ > 8) word |= static_cast<uint32_t>(codes[bit / 8 + 1]) << 8;
      x[g0 + i] = lo + static_cast<float>((word >> (bit % 8)) & mask) * step;
    }
    in += 4 + code_bytes;
  }
}

void GroupCodec::steps(const uint8_t* in, int64_t width, float* step) const {
  for (int64_t g = 0; g < width / group_; ++g) step[g] = fp16_to_fp32(get_u16(in + g * (4 + group_ * bits_ / 8)));
}

}  // namespace lutq::model
