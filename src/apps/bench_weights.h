// Random weights and activations for the kernel benchmark. Kernel speed does not depend on the
// values, so the fills are fast (xorshift) rather than realistic.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "format/bcq_matrix.h"

namespace lutq::apps {

class XorShift64 {
 public:
  explicit XorShift64(uint64_t seed) : state_(seed != 0 ? seed : 0x9e3779b97f4a7c15ull) {}
  uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  // Uniform in [-1, 1).
  float next_float() { return static_cast<float>(static_cast<int64_t>(next() >> 40) - (int64_t{1} << 23)) * 0x1p-23f; }

 private:
  uint64_t state_;
};

// A BCQ matrix with random bit-planes, fp16 scales in [2^-8, 2^-6) and (where cfg.has_offset)
// fp16 offsets in [-2^-6, 2^-6). With an offset and per-OC groups it is a uniform grid as RTN
// stores it (α_0 in [2^-8, 2^-6), α_i = α_0·2^i exactly), the weights of `--kind uniform`.
// Padding bits past k stay 0.
Result<format::BcqMatrix> random_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, uint64_t seed);

// count floats uniform in [-1, 1).
void fill_random(float* out, size_t count, uint64_t seed);

}  // namespace lutq::apps
