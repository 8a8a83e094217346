// IEEE 754 binary16 <-> binary32 conversion in portable C++ (round to nearest even).
// SIMD kernels use F16C instead; both agree bit for bit (tested).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace lutq {

inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (absx < 0x38800000u) {  // result is subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 + (112 - e) ... maps to subnormal position
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = absx - 0x38000000u;  // rebias exponent (127-15)<<23
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

// The fp16 nearest to a double (ties to even), rounded once (no intermediate fp32 rounding);
// beyond the fp16 range: ±infinity, NaN stays NaN.
inline uint16_t fp16_from_double(double x) {
  if (!std::isfinite(x)) return fp32_to_fp16(static_cast<float>(x));
  const auto u = std::bit_cast<uint64_t>(x);
  const auto sign = static_cast<uint16_t>((u >> 48) & 0x8000u);
  const uint64_t a = u & 0x7fffffffffffffffull;
  const int e = static_cast<int>(a >> 52) - 1023;  // |x| in [2^e, 2^(e+1)) (double subnormals: e = -1023)
  if (e < -26) return sign;                         // below a quarter of the smallest subnormal: ±0
  if (e > 15) return static_cast<uint16_t>(sign | 0x7c00u);
  const uint64_t mant = (a & 0xfffffffffffffull) | (1ull << 52);  // |x| = mant·2^(e−52)
  const int shift = 52 + ((e < -14 ? -14 : e) - 10) - e;          // to units of the fp16 quantum at |x|
  const uint64_t q = mant >> shift;
  const uint64_t rem = mant & ((1ull << shift) - 1);
  const uint64_t half = 1ull << (shift - 1);
  const uint64_t r = q + ((rem > half || (rem == half && (q & 1u) != 0)) ? 1u : 0u);  // ties to even
  // Normal: r in [2^10, 2^11], 2^11 carrying into the exponent; subnormal: r is the pattern.
  uint64_t bits = e >= -14 ? (static_cast<uint64_t>(e + 15) << 10) + r - 1024 : r;
  if (bits > 0x7c00u) bits = 0x7c00u;
  return static_cast<uint16_t>(sign | bits);
}

// Rounds a float to the nearest fp16-representable value.
inline float round_to_fp16(float f) { return fp16_to_fp32(fp32_to_fp16(f)); }

}  // namespace lutq
