#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"
#include "quant/group_fit.h"
#include "quant/scale_fit.h"

namespace lutq::quant {
namespace {

using format::BcqMatrix;

constexpr float kFp16Max = 65504.0f;

// Rejects the first weight (in row-major order) that is not finite or lies beyond the fp16 range.
Status check_weights(const float* w, int64_t n, int64_t k) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    for (int64_t c = 0; c < k; ++c) {
      const float x = row[c];
      if (std::isfinite(x) && std::fabs(x) <= kFp16Max) continue;
      const char* what = std::isnan(x) ? "NaN" : std::isinf(x) ? "infinite" : "beyond the fp16 range (|w| > 65504)";
      char buf[160];
      std::snprintf(buf, sizeof buf, "weight at row %lld, column %lld is %s (value %g)", static_cast<long long>(r),
                    static_cast<long long>(c), what, static_cast<double>(x));
      return Status::invalid(buf);
    }
  }
  return Status::ok();
}

// Scratch of one thread: the fitter and one group's values, codes and scales.
struct Worker {
  detail::GroupFitter fitter;
  std::vector<float> values;
  std::vector<uint8_t> codes;
  float alpha[format::kMaxBits] = {};
  float offset = 0.0f;
  detail::ValueGrid grid;  // the fitted grid, for the codes of a clipped fit
};

// Fits group v[len] clamped to its range shrunk by `clip` toward its centre, then gives every
// original weight the code of its nearest value on the fitted grid.
void fit_clipped(const float* v, int64_t len, const QuantOptions& opt, bool with_offset, const double* d,
                 Worker& wk) {
  const auto [lo, hi] = std::minmax_element(v, v + len);
  const double centre = 0.5 * (static_cast<double>(*lo) + static_cast<double>(*hi));
  const double half = opt.clip * 0.5 * (static_cast<double>(*hi) - static_cast<double>(*lo));
  wk.values.resize(static_cast<size_t>(len));
  for (int64_t e = 0; e < len; ++e) {
    wk.values[static_cast<size_t>(e)] = static_cast<float>(std::clamp(static_cast<double>(v[e]), centre - half, centre + half));
  }
  const int q = opt.cfg.q;
  wk.fitter.fit(wk.values.data(), len, q, opt.method, with_offset, opt.iterations, wk.alpha, &wk.offset,
                wk.codes.data(), d);
  double alpha[format::kMaxBits];
  for (int i = 0; i < q; ++i) alpha[i] = wk.alpha[i];
  wk.grid.build(alpha, q, wk.offset);
  wk.grid.assign(v, len, [&](int64_t e, uint8_t code, double) { wk.codes[static_cast<size_t>(e)] = code; });
}

void store_scales(BcqMatrix& m, int64_t set, const Worker& wk) {
  const int q = m.cfg.q;
  for (int i = 0; i < q; ++i) m.alpha[static_cast<size_t>(set * q + i)] = fp32_to_fp16(wk.alpha[i]);
  if (m.cfg.has_offset) m.offset[static_cast<size_t>(set)] = fp32_to_fp16(wk.offset);
}

// Writes the planes of codes[len] into plane bytes: byte b of plane i gets bit j from element
// 8b + j. dst(i, b) returns the byte to write; every byte is written whole (no other group
// shares it), padding bits past len stay 0.
template <typename Dst>
void write_planes(const uint8_t* codes, int64_t len, int q, Dst dst) {
  for (int64_t b = 0; b * 8 < len; ++b) {
    const int64_t end = std::min<int64_t>(8, len - b * 8);
    for (int i = 0; i < q; ++i) {
      unsigned byte = 0;
      for (int64_t j = 0; j < end; ++j) byte |= ((codes[b * 8 + j] >> i) & 1u) << j;
      dst(i, b) = static_cast<uint8_t>(byte);
    }
  }
}

// Per-OC: rows [begin, end), each split into k/g groups along k. A group starts on a byte
// boundary (g is a multiple of 8, or g = k and the group starts at column 0).
void quantize_rows(const float* w, BcqMatrix& m, const QuantOptions& opt, std::span<const double> importance,
                   int64_t begin, int64_t end) {
  Worker wk;
  const int64_t g = m.cfg.g;
  const int64_t groups = m.k / g;
  const int64_t row_bytes = m.row_bytes();
  wk.codes.resize(static_cast<size_t>(g));
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* v = w + r * m.k + gi * g;
      const double* d = importance.empty() ? nullptr : importance.data() + gi * g;
      if (opt.clip < 1.0) {
        fit_clipped(v, g, opt, m.cfg.has_offset, d, wk);
      } else {
        wk.fitter.fit(v, g, m.cfg.q, opt.method, m.cfg.has_offset, opt.iterations, wk.alpha, &wk.offset,
                      wk.codes.data(), d);
      }
      store_scales(m, r * groups + gi, wk);
      write_planes(wk.codes.data(), g, m.cfg.q, [&](int i, int64_t b) -> uint8_t& {
        return m.bits[static_cast<size_t>((i * m.n + r) * row_bytes + gi * g / 8 + b)];
      });
    }
  }
}

// Per-IC: work units [begin, end) of (row group, 8-column block), so no two units share a byte
// of the bit-planes. A group lies in one input channel, so an importance weighting is constant
// over it and changes nothing.
void quantize_column_blocks(const float* w, BcqMatrix& m, const QuantOptions& opt, int64_t begin, int64_t end) {
  Worker wk;
  const int64_t g = m.cfg.g;
  const int q = m.cfg.q;
  const int64_t row_bytes = m.row_bytes();
  wk.values.resize(static_cast<size_t>(g));
  wk.codes.resize(static_cast<size_t>(8 * g));  // codes of the block's columns, column-major
  std::vector<uint8_t> transposed(8);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t gr = u / row_bytes;
    const int64_t block = u % row_bytes;
    const int64_t c0 = block * 8;
    const int64_t cols = std::min<int64_t>(8, m.k - c0);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t c = c0 + j;
      for (int64_t e = 0; e < g; ++e) wk.values[static_cast<size_t>(e)] = w[(gr * g + e) * m.k + c];
      wk.fitter.fit(wk.values.data(), g, q, opt.method, m.cfg.has_offset, opt.iterations, wk.alpha, &wk.offset,
                    wk.codes.data() + j * g);
      store_scales(m, gr * m.k + c, wk);
    }
    for (int64_t e = 0; e < g; ++e) {
      for (int64_t j = 0; j < cols; ++j) transposed[static_cast<size_t>(j)] = wk.codes[static_cast<size_t>(j * g + e)];
      const int64_t r = gr * g + e;
      write_planes(transposed.data(), cols, q, [&](int i, int64_t) -> uint8_t& {
        return m.bits[static_cast<size_t>((i * m.n + r) * row_bytes + block)];
      });
    }
  }
}

}  // namespace

const char* method_name(Method method) {
  switch (method) {
    case Method::kRtn:
      return "rtn";
    case Method::kGreedy:
      return "greedy";
    case Method::kAlternating:
      return "alternating";
  }
  return "unknown";
}

Result<Method> parse_method(std::string_view name) {
  for (Method m : {Method::kRtn, Method::kGreedy, Method::kAlternating}) {
    if (name == method_name(m)) return m;
  }
  return Status::invalid("unknown quantization method '" + std::string(name) +
                         "': expected rtn, greedy or alternating");
}

Result<format::BcqMatrix> quantize(const float* w, int64_t n, int64_t k, const QuantOptions& opt,
                                   ThreadPool* pool, std::span<const double> importance) {
  format::BcqConfig cfg = opt.cfg;
  if (opt.method == Method::kRtn) cfg.has_offset = true;  // uniform codes always carry their centre
  if (Status s = format::validate_config(cfg, n, k); !s) return s;
  if (w == nullptr) return Status::invalid("quantize: weight pointer is null");
  if (opt.iterations < 0) {
    return Status::invalid("alternating iterations=" + std::to_string(opt.iterations) + " must be >= 0");
  }
  if (!(opt.clip > 0.0 && opt.clip <= 1.0)) {
    return Status::invalid("quantize: clip ratio " + std::to_string(opt.clip) + " must be in (0, 1]");
  }
  if (opt.clip < 1.0 && cfg.orientation != format::Orientation::kPerOC) {
    return Status::invalid("quantize: clipping applies to per-OC groups only");
  }
  if (opt.scale_bits != 0) {
    if (Status s = format::validate_scale_bits(opt.scale_bits); !s) return s;
  }
  if (Status s = check_weights(w, n, k); !s) return s;
  if (!importance.empty() && static_cast<int64_t>(importance.size()) != k) {
    return Status::invalid("quantize: importance has " + std::to_string(importance.size()) + " values, k is " +
                           std::to_string(k));
  }
  for (size_t c = 0; c < importance.size(); ++c) {
    if (!std::isfinite(importance[c]) || importance[c] < 0.0) {
      return Status::invalid("quantize: importance of column " + std::to_string(c) + " is " +
                             std::to_string(importance[c]) + " (must be finite and >= 0)");
    }
  }
  Result<BcqMatrix> made = format::make_empty(n, k, cfg);
  if (!made) return made.status();
  BcqMatrix m = std::move(made).value();

  const bool per_oc = cfg.orientation == format::Orientation::kPerOC;
  const int64_t units = per_oc ? n : (n / cfg.g) * m.row_bytes();
  auto body = [&](int64_t begin, int64_t end) {
    if (per_oc) {
      quantize_rows(w, m, opt, importance, begin, end);
    } else {
      quantize_column_blocks(w, m, opt, begin, end);
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(units, 1, body);
  } else {
    body(0, units);
  }
  if (opt.scale_bits > 0) {
    if (Status s = compress_scales(w, per_oc ? importance : std::span<const double>{}, opt.scale_bits, m, pool); !s) return s;
  }
  return m;
}

void fit_group(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
               float* alpha, float* offset, uint8_t* signs, const double* weight) {
  LUTQ_CHECK(v != nullptr && len >= 1 && q >= 1 && q <= format::kMaxBits && iterations >= 0);
  for (int64_t j = 0; j < len; ++j) LUTQ_CHECK(std::isfinite(v[j]));
  detail::GroupFitter fitter;
  std::vector<uint8_t> codes(static_cast<size_t>(len));
  fitter.fit(v, len, q, method, with_offset, iterations, alpha, offset, codes.data(), weight);
  for (int i = 0; i < q; ++i) {
    for (int64_t j = 0; j < len; ++j) {
      signs[i * len + j] = static_cast<uint8_t>((codes[static_cast<size_t>(j)] >> i) & 1u);
    }
  }
}

}  // namespace lutq::quant
