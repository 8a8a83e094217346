#include "kernels/coded_scales.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

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

format::ScaleCodes uniform_codes_beside(const format::BcqMatrix& w) {
  format::ScaleCodes c = w.codes;
  const size_t q = static_cast<size_t>(w.cfg.q);
  const size_t sets = c.alpha_code.size() / q;
  for (size_t s = 0; s < sets; ++s) {
    for (size_t i = 1; i < q; ++i) {
      if (c.alpha_code[s * q + i] != c.alpha_code[s * q]) return c;
    }
  }
  for (size_t s = 0; s < sets; ++s) c.alpha_code[s] = c.alpha_code[s * q];
  c.alpha_code.resize(sets);
  c.alpha_code.shrink_to_fit();
  return c;
}

std::vector<uint8_t> uniform_codes_back(const format::ScaleCodes& beside, int q, size_t sets) {
  const size_t qs = static_cast<size_t>(q);
  if (beside.alpha_code.size() == sets * qs) return beside.alpha_code;
  std::vector<uint8_t> out(sets * qs);
  for (size_t s = 0; s < sets; ++s) std::fill_n(out.begin() + static_cast<ptrdiff_t>(s * qs), qs, beside.alpha_code[s]);
  return out;
}

void read_unit_codes(const uint8_t* a, int64_t r, int64_t u, format::BcqMatrix& w) {
  const int q = w.cfg.q;
  const int64_t set = r * (w.k / w.cfg.g) + u;
  for (int i = 0; i < q; ++i) w.codes.alpha_code[static_cast<size_t>(set * q + i)] = a[code_at(i, r % kCodedTileRows)];
}

namespace {
constexpr int64_t up64(int64_t b) { return (b + 63) / 64 * 64; }
}  // namespace

IcScales ic_scales_at(const format::BcqMatrix& w, bool coded, int64_t at) {
  const int64_t blocks = w.n / w.cfg.g;
  const int64_t scales = blocks * w.cfg.q * w.k;
  IcScales s;
  s.alpha_at = up64(at);
  s.steps_at = s.alpha_at + up64(coded ? scales : 2 * scales);
  s.offset_at = s.steps_at + (coded ? up64(4 * w.cfg.q * w.k) : 0);
  s.end = s.offset_at + (w.cfg.has_offset ? 2 * blocks * w.k : 0);
  return s;
}

namespace {

// Calls fn(canonical index, layout index) for every per-IC scale: canonical (set·q + i) with set
// b·k + c, layout [b][q][k].
template <typename Fn>
void for_each_ic_scale(const format::BcqMatrix& w, Fn&& fn) {
  const int q = w.cfg.q;
  const int64_t blocks = w.n / w.cfg.g;
  for (int64_t b = 0; b < blocks; ++b) {
    for (int i = 0; i < q; ++i) {
      for (int64_t c = 0; c < w.k; ++c) fn(static_cast<size_t>((b * w.k + c) * q + i), (b * q + i) * w.k + c);
    }
  }
}

}  // namespace

void write_ic_scales(const format::BcqMatrix& w, bool coded, const IcScales& s, uint8_t* d) {
  if (coded) {
    for_each_ic_scale(w, [&](size_t canon, int64_t at) { d[s.alpha_at + at] = w.codes.alpha_code[canon]; });
    auto* steps = reinterpret_cast<float*>(d + s.steps_at);
    const int q = w.cfg.q;
    for (int i = 0; i < q; ++i) {
      for (int64_t c = 0; c < w.k; ++c) {
        steps[i * w.k + c] = format::alpha_step(w.codes.alpha_super[static_cast<size_t>(c * q + i)], w.codes.bits);
      }
    }
  } else {
    auto* a = reinterpret_cast<uint16_t*>(d + s.alpha_at);
    for_each_ic_scale(w, [&](size_t canon, int64_t at) { a[at] = w.alpha[canon]; });
  }
  if (w.cfg.has_offset) std::memcpy(d + s.offset_at, w.offset.data(), w.offset.size() * sizeof(uint16_t));
}

void read_ic_scales(const uint8_t* d, bool coded, const IcScales& s, format::BcqMatrix& w) {
  if (coded) {
    for_each_ic_scale(w, [&](size_t canon, int64_t at) { w.codes.alpha_code[canon] = d[s.alpha_at + at]; });
  } else {
    const auto* a = reinterpret_cast<const uint16_t*>(d + s.alpha_at);
    for_each_ic_scale(w, [&](size_t canon, int64_t at) { w.alpha[canon] = a[at]; });
  }
  if (w.cfg.has_offset) std::memcpy(w.offset.data(), d + s.offset_at, w.offset.size() * sizeof(uint16_t));
}

}  // namespace lutq::kernels
