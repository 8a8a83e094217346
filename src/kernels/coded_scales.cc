#include "kernels/coded_scales.h"

#include "format/scale_codes.h"

namespace lutq::kernels {

void write_tile_steps(const format::BcqMatrix& w, int64_t tile, float* steps) {
  const int q = w.cfg.q;
  for (int i = 0; i < q; ++i) {
    for (int64_t rt = 0; rt < kCodedTileRows; ++rt) {
      const int64_t r = tile * kCodedTileRows + rt;
      steps[i * kCodedTileRows + rt] =
          r < w.n ? format::alpha_step(w.codes.alpha_super[static_cast<size_t>(r * q + i)], w.codes.bits) : 0.0f;
    }
  }
}

void write_unit_codes(const format::BcqMatrix& w, int64_t r, int64_t u, uint8_t* a) {
  const int q = w.cfg.q;
  const int64_t set = r * (w.k / w.cfg.g) + u;
  for (int i = 0; i < q; ++i) a[code_at(i, r % kCodedTileRows)] = w.codes.alpha_code[static_cast<size_t>(set * q + i)];
}

bool all_supers_short(const format::BcqMatrix& w) {
  for (uint16_t s : w.codes.alpha_super) {
    if (!format::is_short_super(s, w.codes.bits)) return false;
  }
  return true;
}

format::ScaleCodes codes_beside_layout(const format::BcqMatrix& w) {
  format::ScaleCodes c = w.codes;
  c.alpha_code.clear();
  c.alpha_code.shrink_to_fit();
  return c;
}

void read_unit_codes(const uint8_t* a, int64_t r, int64_t u, format::BcqMatrix& w) {
  const int q = w.cfg.q;
  const int64_t set = r * (w.k / w.cfg.g) + u;
  for (int i = 0; i < q; ++i) w.codes.alpha_code[static_cast<size_t>(set * q + i)] = a[code_at(i, r % kCodedTileRows)];
}

}  // namespace lutq::kernels
