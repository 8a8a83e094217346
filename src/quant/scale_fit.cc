#include "quant/scale_fit.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"

namespace lutq::quant {
namespace detail {

double CodeSearch::eval(const float* v, const double* d, int64_t len, int q, int bits, bool with_offset,
                        const LineScales& line, const uint8_t* alpha_code, uint8_t offset_code, uint8_t* elem) {
  double alpha[format::kMaxBits] = {};
  for (int i = 0; i < q; ++i) alpha[i] = fp16_to_fp32(format::decode_alpha(line.super[i], alpha_code[i], bits));
  const double z = with_offset ? fp16_to_fp32(format::decode_offset(line.zmin, line.zmax, offset_code, bits)) : 0.0;
  grid_.build(alpha, q, z);
  double err = 0.0;
  grid_.assign(v, len, [&](int64_t j, uint8_t code, double e) {
    err += (d == nullptr ? 1.0 : d[j]) * e * e;
    if (elem != nullptr) elem[j] = code;
  });
  return err;
}

double CodeSearch::run(const float* v, const double* d, int64_t len, int q, int bits, bool with_offset,
                       const LineScales& line, uint8_t* alpha_code, uint8_t* offset_code, uint8_t* elem, int passes,
                       bool tied) {
  uint8_t zc = with_offset ? *offset_code : 0;
  double best = eval(v, d, len, q, bits, with_offset, line, alpha_code, zc, nullptr);
  const int top = format::max_code(bits);
  const int scales = tied ? 1 : q;  // tied: plane 0's code stands for all
  const int params = scales + (with_offset ? 1 : 0);
  const auto set_code = [&](int p, uint8_t value) {
    if (p >= scales) {
      zc = value;
    } else if (tied) {
      std::fill(alpha_code, alpha_code + q, value);
    } else {
      alpha_code[p] = value;
    }
  };
  for (int pass = 0; pass < passes; ++pass) {
    bool improved = false;
    for (int p = 0; p < params; ++p) {
      for (const int delta : {-1, +1}) {
        const uint8_t keep = p < scales ? alpha_code[p] : zc;
        const int trial = keep + delta;
        if (trial < 0 || trial > top) continue;
        set_code(p, static_cast<uint8_t>(trial));
        const double e = eval(v, d, len, q, bits, with_offset, line, alpha_code, zc, nullptr);
        if (e < best) {
          best = e;
          improved = true;
        } else {
          set_code(p, keep);
        }
      }
    }
    if (!improved) break;
  }
  if (with_offset) *offset_code = zc;
  return eval(v, d, len, q, bits, with_offset, line, alpha_code, zc, elem);
}

namespace {

// The line scales of scale set `set` of m.
LineScales line_for_set(const format::BcqMatrix& m, int64_t set) {
  const auto line = static_cast<size_t>(format::line_of_set(m, set));
  LineScales ls;
  ls.super = m.codes.alpha_super.data() + line * static_cast<size_t>(m.cfg.q);
  if (m.cfg.has_offset) {
    ls.zmin = m.codes.offset_range[line * 2];
    ls.zmax = m.codes.offset_range[line * 2 + 1];
  }
  return ls;
}

}  // namespace

void search_set(format::BcqMatrix& m, int64_t set, const float* v, const double* d, int64_t len,
               detail::CodeSearch& search, uint8_t* elem, bool tied) {
  const int q = m.cfg.q;
  format::ScaleCodes& codes = m.codes;
  const LineScales ls = line_for_set(m, set);
  uint8_t* ac = codes.alpha_code.data() + set * q;
  uint8_t* zc = m.cfg.has_offset ? codes.offset_code.data() + set : nullptr;
  search.run(v, d, len, q, codes.bits, m.cfg.has_offset, ls, ac, zc, elem, CodeSearch::kMaxPasses, tied);
  for (int i = 0; i < q; ++i) m.alpha[static_cast<size_t>(set * q + i)] = format::decode_alpha(ls.super[i], ac[i], codes.bits);
  if (zc != nullptr) m.offset[static_cast<size_t>(set)] = format::decode_offset(ls.zmin, ls.zmax, *zc, codes.bits);
}

void code_fitted_set(format::BcqMatrix& m, int64_t set, const float* v, const double* d, int64_t len,
                     CodeSearch& search, uint8_t* elem, float* alpha, float* offset) {
  const int q = m.cfg.q;
  const int bits = m.codes.bits;
  const bool off = m.cfg.has_offset;
  const LineScales ls = line_for_set(m, set);
  uint8_t* ac = m.codes.alpha_code.data() + set * q;
  uint8_t* zc = off ? m.codes.offset_code.data() + set : nullptr;
  uint8_t prior[format::kMaxBits + 1] = {};  // the α codes m holds, then the offset code
  std::copy(ac, ac + q, prior);
  if (off) prior[q] = *zc;
  std::stable_sort(alpha, alpha + q, [](float x, float y) { return std::fabs(x) > std::fabs(y); });
  bool clamped = false;
  for (int i = 0; i < q; ++i) {
    const double super = fp16_to_fp32(ls.super[i]);
    ac[i] = static_cast<uint8_t>(format::nearest_code(std::fabs(alpha[i]), 0.0, super, bits));
    clamped = clamped || std::fabs(alpha[i]) > super;
  }
  if (off) {
    const double zmin = fp16_to_fp32(ls.zmin);
    const double zmax = fp16_to_fp32(ls.zmax);
    *zc = static_cast<uint8_t>(format::nearest_code(*offset, zmin, zmax, bits));
    clamped = clamped || *offset < zmin || *offset > zmax;
  }
  const double err = search.run(v, d, len, q, bits, off, ls, ac, zc, elem);
  if (clamped && search.run(v, d, len, q, bits, off, ls, prior, prior + q, elem) < err) {
    std::copy(prior, prior + q, ac);
    if (off) *zc = prior[q];
  }
  for (int i = 0; i < q; ++i) {
    m.alpha[static_cast<size_t>(set * q + i)] = format::decode_alpha(ls.super[i], ac[i], bits);
    alpha[i] = fp16_to_fp32(m.alpha[static_cast<size_t>(set * q + i)]);
  }
  if (off) {
    m.offset[static_cast<size_t>(set)] = format::decode_offset(ls.zmin, ls.zmax, *zc, bits);
    *offset = fp16_to_fp32(m.offset[static_cast<size_t>(set)]);
  }
}

}  // namespace detail

namespace {

// Sets the q plane bits of element (r, c) from its grid code.
void put_code(format::BcqMatrix& m, int64_t r, int64_t c, uint8_t code) {
  const int64_t rb = m.row_bytes();
  for (int i = 0; i < m.cfg.q; ++i) {
    uint8_t& byte = m.bits[static_cast<size_t>((i * m.n + r) * rb + c / 8)];
    const auto mask = static_cast<uint8_t>(1u << (c % 8));
    byte = ((code >> i) & 1u) ? static_cast<uint8_t>(byte | mask) : static_cast<uint8_t>(byte & ~mask);
  }
}

}  // namespace

Status compress_scales(const float* w, std::span<const double> importance, int bits, format::BcqMatrix& m,
                       ThreadPool* pool) {
  // Uniform fp16 scales (RTN) encode to equal codes under power-of-two super scales; the search
  // keeps them equal, so the file can store them once (format::has_uniform_scales).
  const bool uniform = format::has_uniform_scales(m);
  Result<format::BcqMatrix> enc = format::encode_scales(m, bits);
  if (!enc) return enc.status();
  m = std::move(enc).value();
  const bool tied = uniform && format::has_uniform_scales(m);
  const int64_t g = m.cfg.g;
  const bool per_oc = m.cfg.orientation == format::Orientation::kPerOC;
  const int64_t units = per_oc ? m.n : m.n / g;  // rows, or row groups: no two units share a byte
  auto body = [&](int64_t begin, int64_t end) {
    detail::CodeSearch search;
    std::vector<float> values(static_cast<size_t>(g));
    std::vector<uint8_t> elem(static_cast<size_t>(g));
    for (int64_t u = begin; u < end; ++u) {
      if (per_oc) {
        const int64_t groups = m.k / g;
        for (int64_t gi = 0; gi < groups; ++gi) {
          const double* d = importance.empty() ? nullptr : importance.data() + gi * g;
          detail::search_set(m, u * groups + gi, w + u * m.k + gi * g, d, g, search, elem.data(), tied);
          for (int64_t e = 0; e < g; ++e) put_code(m, u, gi * g + e, elem[static_cast<size_t>(e)]);
        }
      } else {
        for (int64_t c = 0; c < m.k; ++c) {
          for (int64_t e = 0; e < g; ++e) values[static_cast<size_t>(e)] = w[(u * g + e) * m.k + c];
          detail::search_set(m, u * m.k + c, values.data(), nullptr, g, search, elem.data(), tied);
          for (int64_t e = 0; e < g; ++e) put_code(m, u * g + e, c, elem[static_cast<size_t>(e)]);
        }
      }
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(units, 1, body);
  } else {
    body(0, units);
  }
  return Status::ok();
}

Result<format::ScaleCodes> fit_line_scales(const format::BcqMatrix& m, int bits) {
  format::BcqMatrix sorted = m;
  const auto q = static_cast<size_t>(m.cfg.q);
  for (size_t set = 0; set < sorted.alpha.size() / q; ++set) {
    uint16_t* a = sorted.alpha.data() + set * q;  // fp16: the magnitude orders as its low 15 bits
    std::stable_sort(a, a + q, [](uint16_t x, uint16_t y) { return (x & 0x7fffu) > (y & 0x7fffu); });
  }
  Result<format::BcqMatrix> coded = format::encode_scales(sorted, bits);
  if (!coded) return coded.status();
  return std::move(coded->codes);
}

Result<format::ScaleCodes> line_scales(const float* w, int64_t n, int64_t k, const QuantOptions& opt,
                                       std::span<const double> importance, int bits, ThreadPool* pool) {
  Result<format::BcqMatrix> plain = quantize(w, n, k, opt, pool, importance);
  if (!plain) return plain.status();
  return fit_line_scales(*plain, bits);
}

}  // namespace lutq::quant
