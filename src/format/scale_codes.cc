#include "format/scale_codes.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/fp16.h"

namespace lutq::format {
namespace {

bool is_finite_fp16(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

// Flips plane i's bits over the group of scale set `set` (α·B = (−α)·(−B)).
void flip_group(BcqMatrix& w, int64_t set, int plane) {
  const int64_t g = w.cfg.g;
  const int64_t rb = w.row_bytes();
  const auto flip = [&](int64_t r, int64_t c) {
    w.bits[static_cast<size_t>((plane * w.n + r) * rb + c / 8)] ^= static_cast<uint8_t>(1u << (c % 8));
  };
  if (w.cfg.orientation == Orientation::kPerOC) {
    const int64_t groups = w.k / g;
    const int64_t r = set / groups;
    const int64_t c0 = (set % groups) * g;
    for (int64_t c = c0; c < c0 + g; ++c) flip(r, c);
  } else {
    const int64_t r0 = (set / w.k) * g;
    const int64_t c = set % w.k;
    for (int64_t r = r0; r < r0 + g; ++r) flip(r, c);
  }
}

Status corrupt(const std::string& why) { return Status(StatusCode::kCorrupt, "compressed scales: " + why); }

}  // namespace

Status validate_scale_bits(int bits) {
  if (bits < kMinScaleBits || bits > kMaxScaleBits) {
    return Status::invalid("scale bits " + std::to_string(bits) + " out of range: compressed scales take " +
                           std::to_string(kMinScaleBits) + ".." + std::to_string(kMaxScaleBits) + " bits");
  }
  return Status::ok();
}

int64_t num_lines(const BcqMatrix& w) { return w.cfg.orientation == Orientation::kPerOC ? w.n : w.k; }

int64_t line_of_set(const BcqMatrix& w, int64_t set) {
  return w.cfg.orientation == Orientation::kPerOC ? set / (w.k / w.cfg.g) : set % w.k;
}

uint16_t decode_alpha(uint16_t super, int code, int bits) {
  // The fp16 nearest to S·code/(2^B − 1), computed in fp32: the exact quotient lies at least
  // 2^−20 (relative) from every fp16 midpoint and the two fp32 roundings move it by less than
  // 2^−22, so this is the once-rounded value (docs/format.md; every (S, B, code) is tested against
  // the double-precision definition).
  return fp32_to_fp16(static_cast<float>(code) * alpha_step(super, bits));
}

float alpha_step(uint16_t super, int bits) {
  // A division, not a multiply by 1/(2^b − 1): exact where the quotient is (short super scales).
  return fp16_to_fp32(super) / static_cast<float>(max_code(bits));
}

namespace {

// Bits of m in a short step m·2^e (m < 2^(11 − b)).
int short_bits(int bits) { return 11 - bits; }

}  // namespace

uint16_t short_super(double at_least, int bits) {
  if (!(at_least > 0.0)) return 0;
  const int p = short_bits(bits);
  const double mc = max_code(bits);
  const double step = std::min(at_least, 65504.0) / mc;
  int e = std::max(-24, std::ilogb(step) - (p - 1));
  double m = std::ceil(std::ldexp(step, -e));
  if (m >= std::ldexp(1.0, p)) m = std::ceil(std::ldexp(step, -++e));
  while (std::ldexp(m, e) * mc > 65504.0) --m;  // the top of the fp16 range: the largest below it
  return fp16_from_double(std::ldexp(m, e) * mc);  // exact: at most 11 significant bits
}

bool is_short_super(uint16_t super, int bits) {
  const double s = fp16_to_fp32(super);
  if (!(s >= 0.0) || !std::isfinite(s)) return false;
  if (s == 0.0) return true;
  const double step = s / max_code(bits);
  const int e = std::max(-24, std::ilogb(step) - (short_bits(bits) - 1));
  const double m = std::ldexp(step, -e);
  return m == std::floor(m) && m < std::ldexp(1.0, short_bits(bits));
}

uint16_t decode_offset(uint16_t zmin, uint16_t zmax, int code, int bits) {
  const double lo = fp16_to_fp32(zmin);
  const double hi = fp16_to_fp32(zmax);
  return fp16_from_double(lo + (hi - lo) * code / max_code(bits));
}

int nearest_code(double value, double lo, double hi, int bits) {
  if (!(hi > lo)) return 0;
  const double c = std::nearbyint((value - lo) * max_code(bits) / (hi - lo));
  return static_cast<int>(std::clamp(c, 0.0, static_cast<double>(max_code(bits))));
}

Result<BcqMatrix> encode_scales(const BcqMatrix& w, int bits) {
  if (Status s = validate_scale_bits(bits); !s) return s;
  if (Status s = validate(w); !s) return s;
  BcqMatrix out = w;
  const int q = w.cfg.q;
  const int64_t sets = w.num_scale_sets();
  const int64_t lines = num_lines(w);
  ScaleCodes& codes = out.codes;
  codes = ScaleCodes{};
  codes.bits = bits;
  codes.alpha_super.assign(static_cast<size_t>(lines * q), 0);
  for (int64_t set = 0; set < sets; ++set) {
    for (int i = 0; i < q; ++i) {
      uint16_t& a = out.alpha[static_cast<size_t>(set * q + i)];
      if (a & 0x8000u) {
        flip_group(out, set, i);
        a = static_cast<uint16_t>(a & 0x7fffu);
      }
      uint16_t& s = codes.alpha_super[static_cast<size_t>(line_of_set(w, set) * q + i)];
      if (fp16_to_fp32(a) > fp16_to_fp32(s)) s = a;
    }
  }
  for (uint16_t& s : codes.alpha_super) s = short_super(fp16_to_fp32(s), bits);
  if (w.cfg.has_offset) {
    codes.offset_range.assign(static_cast<size_t>(lines * 2), 0);
    std::vector<bool> seen(static_cast<size_t>(lines), false);
    for (int64_t set = 0; set < sets; ++set) {
      const auto line = static_cast<size_t>(line_of_set(w, set));
      const uint16_t z = out.offset[static_cast<size_t>(set)];
      uint16_t& lo = codes.offset_range[line * 2];
      uint16_t& hi = codes.offset_range[line * 2 + 1];
      if (!seen[line] || fp16_to_fp32(z) < fp16_to_fp32(lo)) lo = z;
      if (!seen[line] || fp16_to_fp32(z) > fp16_to_fp32(hi)) hi = z;
      seen[line] = true;
    }
  }
  codes.alpha_code.resize(static_cast<size_t>(sets * q));
  for (int64_t set = 0; set < sets; ++set) {
    const auto line = static_cast<size_t>(line_of_set(w, set));
    for (int i = 0; i < q; ++i) {
      const auto idx = static_cast<size_t>(set * q + i);
      const double s = fp16_to_fp32(codes.alpha_super[line * static_cast<size_t>(q) + static_cast<size_t>(i)]);
      codes.alpha_code[idx] = static_cast<uint8_t>(nearest_code(fp16_to_fp32(out.alpha[idx]), 0.0, s, bits));
    }
    if (w.cfg.has_offset) {
      const double lo = fp16_to_fp32(codes.offset_range[line * 2]);
      const double hi = fp16_to_fp32(codes.offset_range[line * 2 + 1]);
      codes.offset_code.push_back(static_cast<uint8_t>(nearest_code(fp16_to_fp32(out.offset[static_cast<size_t>(set)]), lo, hi, bits)));
    }
  }
  if (Status s = decode_scales(out); !s) return s;
  return out;
}

Status validate_codes(const BcqMatrix& w) {
  const ScaleCodes& c = w.codes;
  if (c.bits == 0) {
    if (c.alpha_code.empty() && c.alpha_super.empty() && c.offset_code.empty() && c.offset_range.empty()) return Status::ok();
    return corrupt("codes without a bit count");
  }
  if (Status s = validate_scale_bits(c.bits); !s) return corrupt(s.message());
  const auto q = static_cast<size_t>(w.cfg.q);
  const auto sets = static_cast<size_t>(w.num_scale_sets());
  const auto lines = static_cast<size_t>(num_lines(w));
  if (c.alpha_code.size() != sets * q) return corrupt("scale codes buffer has the wrong size");
  if (c.alpha_super.size() != lines * q) return corrupt("super scale buffer has the wrong size");
  if (c.offset_code.size() != (w.cfg.has_offset ? sets : 0)) return corrupt("offset codes buffer has the wrong size");
  if (c.offset_range.size() != (w.cfg.has_offset ? lines * 2 : 0)) return corrupt("offset range buffer has the wrong size");
  const int top = max_code(c.bits);
  for (size_t i = 0; i < c.alpha_code.size(); ++i) {
    if (c.alpha_code[i] > top) return corrupt("scale code " + std::to_string(i) + " exceeds " + std::to_string(top));
  }
  for (size_t i = 0; i < c.offset_code.size(); ++i) {
    if (c.offset_code[i] > top) return corrupt("offset code " + std::to_string(i) + " exceeds " + std::to_string(top));
  }
  for (size_t i = 0; i < c.alpha_super.size(); ++i) {
    if (!is_finite_fp16(c.alpha_super[i]) || (c.alpha_super[i] & 0x8000u) != 0) {
      return corrupt("super scale " + std::to_string(i) + " is negative or not finite");
    }
  }
  for (size_t l = 0; l < lines && w.cfg.has_offset; ++l) {
    const uint16_t lo = c.offset_range[2 * l];
    const uint16_t hi = c.offset_range[2 * l + 1];
    if (!is_finite_fp16(lo) || !is_finite_fp16(hi) || fp16_to_fp32(lo) > fp16_to_fp32(hi)) {
      return corrupt("offset range of line " + std::to_string(l) + " is not finite or has min > max");
    }
  }
  return Status::ok();
}

namespace {

// Calls alpha_fn(index, α) for every decoded α and offset_fn(set, z) for every decoded offset
// (when the matrix has offsets), line by line with each line's steps computed once. Codes must
// be valid (validate_codes).
template <typename AlphaFn, typename OffsetFn>
void decode_each(const BcqMatrix& w, AlphaFn&& alpha_fn, OffsetFn&& offset_fn) {
  const ScaleCodes& c = w.codes;
  const auto q = static_cast<size_t>(w.cfg.q);
  std::vector<float> step(c.alpha_super.size());
  for (size_t j = 0; j < step.size(); ++j) step[j] = alpha_step(c.alpha_super[j], c.bits);
  // Sets in order: per-OC row by row (the line is the row), per-IC row block by row block (the
  // line is the column).
  const bool per_oc = w.cfg.orientation == Orientation::kPerOC;
  const int64_t outer = per_oc ? w.n : w.n / w.cfg.g;
  const int64_t inner = per_oc ? w.k / w.cfg.g : w.k;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const auto set = static_cast<size_t>(o * inner + in);
      const auto line = static_cast<size_t>(per_oc ? o : in);
      for (size_t i = 0; i < q; ++i) {
        const size_t idx = set * q + i;
        alpha_fn(idx, fp32_to_fp16(static_cast<float>(c.alpha_code[idx]) * step[line * q + i]));
      }
      if (w.cfg.has_offset) {
        offset_fn(set, decode_offset(c.offset_range[line * 2], c.offset_range[line * 2 + 1], c.offset_code[set], c.bits));
      }
    }
  }
}

}  // namespace

Status decode_scales(BcqMatrix& w) {
  if (Status s = validate_codes(w); !s) return s;
  if (w.codes.bits == 0) return Status::ok();
  const int64_t sets = w.num_scale_sets();
  w.alpha.resize(static_cast<size_t>(sets * w.cfg.q));
  w.offset.resize(w.cfg.has_offset ? static_cast<size_t>(sets) : 0);
  // decode_alpha's rule, with the step of each line and plane computed once.
  decode_each(w, [&](size_t idx, uint16_t a) { w.alpha[idx] = a; }, [&](size_t set, uint16_t z) { w.offset[set] = z; });
  return Status::ok();
}

bool scales_match_codes(const BcqMatrix& w) {
  if (w.codes.bits == 0) return true;
  if (!validate_codes(w)) return false;
  const int64_t sets = w.num_scale_sets();
  if (w.alpha.size() != static_cast<size_t>(sets * w.cfg.q) ||
      w.offset.size() != (w.cfg.has_offset ? static_cast<size_t>(sets) : 0)) {
    return false;
  }
  bool same = true;
  decode_each(w, [&](size_t idx, uint16_t a) { same = same && w.alpha[idx] == a; },
              [&](size_t set, uint16_t z) { same = same && w.offset[set] == z; });
  return same;
}

Status validate_with_codes(const BcqMatrix& w) {
  if (Status s = validate(w); !s) return s;
  if (w.codes.bits == 0) return Status::ok();
  if (Status s = validate_codes(w); !s) return s;
  if (!scales_match_codes(w)) {
    return Status::invalid("compressed scales: alpha/offset are not the decoding of their " + std::to_string(w.codes.bits) +
                           "-bit codes");
  }
  return Status::ok();
}

int64_t packed_size(int64_t count, int bits) { return (count * bits + 7) / 8; }

std::vector<uint8_t> pack_codes(std::span<const uint8_t> codes, int bits) {
  std::vector<uint8_t> out(static_cast<size_t>(packed_size(static_cast<int64_t>(codes.size()), bits)), 0);
  for (size_t j = 0; j < codes.size(); ++j) {
    for (int t = 0; t < bits; ++t) {
      const size_t pos = j * static_cast<size_t>(bits) + static_cast<size_t>(t);
      out[pos / 8] |= static_cast<uint8_t>(((codes[j] >> t) & 1u) << (pos % 8));
    }
  }
  return out;
}

Status unpack_codes(std::span<const uint8_t> bytes, int64_t count, int bits, std::vector<uint8_t>& out) {
  if (Status s = validate_scale_bits(bits); !s) return s;
  if (count < 0 || static_cast<int64_t>(bytes.size()) != packed_size(count, bits)) {
    return corrupt(std::to_string(bytes.size()) + " bytes of packed codes, " + std::to_string(packed_size(count, bits)) +
                   " expected for " + std::to_string(count) + " codes of " + std::to_string(bits) + " bits");
  }
  out.assign(static_cast<size_t>(count), 0);
  if (bits == 8) {
    std::copy(bytes.begin(), bytes.end(), out.begin());
    return Status::ok();
  }
  for (size_t j = 0; j < out.size(); ++j) {
    unsigned v = 0;
    for (int t = 0; t < bits; ++t) {
      const size_t pos = j * static_cast<size_t>(bits) + static_cast<size_t>(t);
      v |= ((bytes[pos / 8] >> (pos % 8)) & 1u) << t;
    }
    out[j] = static_cast<uint8_t>(v);
  }
  const size_t used = static_cast<size_t>(count) * static_cast<size_t>(bits);
  if (used % 8 != 0 && (bytes.back() >> (used % 8)) != 0) return corrupt("padding bits past the last code are not zero");
  return Status::ok();
}

}  // namespace lutq::format
