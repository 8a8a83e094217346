#include "kernels/lut_tables.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

int64_t lut_block_for(int64_t k, const format::BcqConfig& cfg) {
  if (k % 32 != 0) return 0;
  if (cfg.orientation == format::Orientation::kPerOC && cfg.g < k) return cfg.g;
  for (int64_t kb : {256, 128, 64, 32}) {
    if (k % kb == 0) return kb;
  }
  return 0;
}

int64_t lut_block(const format::BcqMatrix& w) { return lut_block_for(w.k, w.cfg); }

bool lut_uniform(const format::BcqMatrix& w) {
  const int q = w.cfg.q;
  if (w.cfg.orientation != format::Orientation::kPerOC || q < 2 || q > 4) return false;
  const size_t sets = w.alpha.size() / static_cast<size_t>(q);
  for (size_t s = 0; s < sets; ++s) {
    const uint16_t* a = w.alpha.data() + s * static_cast<size_t>(q);
    const float a0 = fp16_to_fp32(a[0]);
    if (!std::isfinite(a0)) return false;
    for (int i = 1; i < q; ++i) {
      if (a[i] != fp32_to_fp16(std::ldexp(a0, i))) return false;
    }
  }
  return sets > 0;
}

void build_tables_f32(const float* x, int64_t k, float* tables) {
  for (int64_t c = 0; c < k / kMu; ++c) {
    const float* xc = x + c * kMu;
    float* t = tables + c * kTableSize;
    for (int p = 0; p < kTableSize; ++p) {
      float v = (p & 1) ? xc[0] : -xc[0];
      v = v + ((p & 2) ? xc[1] : -xc[1]);
      v = v + ((p & 4) ? xc[2] : -xc[2]);
      v = v + ((p & 8) ? xc[3] : -xc[3]);
      t[p] = v;
    }
  }
}

void quantize_tables_i8(const float* tables, int64_t k, int64_t kb, int8_t* tq, float* scales) {
  const int64_t chunks_per_block = kb / kMu;
  for (int64_t b = 0; b < k / kb; ++b) {
    const float* t = tables + b * chunks_per_block * kTableSize;
    int8_t* out = tq + b * chunks_per_block * kTableSize;
    float amax = 0.0f;
    for (int64_t e = 0; e < chunks_per_block * kTableSize; ++e) amax = std::max(amax, std::fabs(t[e]));
    scales[b] = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t e = 0; e < chunks_per_block * kTableSize; ++e) {
      const float r = std::nearbyint(t[e] * inv);
      out[e] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
  }
}

}  // namespace lutq::kernels
