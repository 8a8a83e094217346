#include "apps/bench_weights.h"

#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/fp16.h"

namespace lutq::apps {

Result<format::BcqMatrix> random_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, uint64_t seed) {
  Result<format::BcqMatrix> made = format::make_empty(n, k, cfg);
  if (!made) return made.status();
  format::BcqMatrix w = std::move(made).value();
  XorShift64 rng(seed);
  std::vector<uint8_t>& bits = w.bits;
  size_t i = 0;
  for (; i + 8 <= bits.size(); i += 8) {
    const uint64_t r = rng.next();
    std::memcpy(bits.data() + i, &r, 8);
  }
  for (; i < bits.size(); ++i) bits[i] = static_cast<uint8_t>(rng.next());
  if (k % 8 != 0) {  // clear the padding bits of each row's last byte
    const auto mask = static_cast<uint8_t>((1u << (k % 8)) - 1u);
    const int64_t rb = w.row_bytes();
    for (int64_t row = 0; row < cfg.q * n; ++row) bits[static_cast<size_t>(row * rb + rb - 1)] &= mask;
  }
  if (cfg.has_offset && cfg.orientation == format::Orientation::kPerOC) {
    // A uniform grid as RTN stores it: α_i = α_0·2^i exactly (the byte-code path takes it for q >= 5).
    for (size_t s = 0; s < w.offset.size(); ++s) {
      const float a0 = fp16_to_fp32(fp32_to_fp16((1.0f + 3.0f * (0.5f + 0.5f * rng.next_float())) * 0x1p-8f));
      uint16_t* alpha = w.alpha.data() + s * static_cast<size_t>(cfg.q);
      for (int b = 0; b < cfg.q; ++b) alpha[b] = fp32_to_fp16(std::ldexp(a0, b));
    }
  } else {
    for (uint16_t& a : w.alpha) a = fp32_to_fp16((1.0f + 3.0f * (0.5f + 0.5f * rng.next_float())) * 0x1p-8f);
  }
  for (uint16_t& z : w.offset) z = fp32_to_fp16(rng.next_float() * 0x1p-6f);
  return w;
}

void fill_random(float* out, size_t count, uint64_t seed) {
  XorShift64 rng(seed);
  for (size_t i = 0; i < count; ++i) out[i] = rng.next_float();
}

}  // namespace lutq::apps
