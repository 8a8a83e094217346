#include "format/bcq_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/fp16.h"

namespace lutq::format {

const char* orientation_name(Orientation o) { return o == Orientation::kPerOC ? "per-OC" : "per-IC"; }

int64_t BcqMatrix::num_groups() const {
  return cfg.orientation == Orientation::kPerOC ? k / cfg.g : n / cfg.g;
}

int64_t BcqMatrix::num_scale_sets() const {
  return cfg.orientation == Orientation::kPerOC ? n * (k / cfg.g) : (n / cfg.g) * k;
}

double BcqMatrix::bits_per_weight() const {
  if (n == 0 || k == 0) return 0.0;
  return 8.0 * static_cast<double>(stored_bytes()) / (static_cast<double>(n) * static_cast<double>(k));
}

int64_t BcqMatrix::storage_bytes() const {
  return static_cast<int64_t>(bits.size() + 2 * alpha.size() + 2 * offset.size());
}

int64_t BcqMatrix::stored_bytes() const {
  // Uniform scales are stored once per set (and line): 1/q of the α and super scale buffers.
  const size_t planes = has_uniform_scales(*this) ? static_cast<size_t>(cfg.q) : 1;
  if (codes.bits <= 0) return static_cast<int64_t>(bits.size() + 2 * (alpha.size() / planes) + 2 * offset.size());
  const auto packed = [&](size_t count) { return static_cast<int64_t>((count * static_cast<size_t>(codes.bits) + 7) / 8); };
  return static_cast<int64_t>(bits.size()) + packed(codes.alpha_code.size() / planes) + packed(codes.offset_code.size()) +
         static_cast<int64_t>(2 * (codes.alpha_super.size() / planes + codes.offset_range.size()));
}

namespace {

// Whether v[j*q + i] = v[j*q]·2^i for every j and i (fp16 values, finite, exact).
bool powers_of_two(const std::vector<uint16_t>& v, int q) {
  const auto uq = static_cast<size_t>(q);
  for (size_t j = 0; j + uq <= v.size(); j += uq) {
    const float a0 = fp16_to_fp32(v[j]);
    if (!std::isfinite(a0)) return false;
    for (int i = 1; i < q; ++i) {
      const uint16_t h = v[j + static_cast<size_t>(i)];
      if (fp16_to_fp32(h) != std::ldexp(a0, i) || (h & 0x8000u) != (v[j] & 0x8000u)) return false;
    }
  }
  return true;
}

// v[j*q + i] = v[j*q]·2^i in place; false where a value would not be a finite fp16.
bool expand_powers(std::vector<uint16_t>& v, int q) {
  const auto uq = static_cast<size_t>(q);
  for (size_t j = 0; j + uq <= v.size(); j += uq) {
    const float a0 = fp16_to_fp32(v[j]);
    for (int i = 1; i < q; ++i) {
      const float a = std::ldexp(a0, i);
      if (!std::isfinite(a) || std::fabs(a) > 65504.0f) return false;
      v[j + static_cast<size_t>(i)] = fp32_to_fp16(a);
    }
  }
  return true;
}

}  // namespace

bool has_uniform_scales(const BcqMatrix& w) {
  const int q = w.cfg.q;
  if (q < 2 || w.alpha.size() != static_cast<size_t>(w.num_scale_sets() * q)) return false;
  if (w.codes.bits <= 0) return powers_of_two(w.alpha, q);
  const auto uq = static_cast<size_t>(q);
  const std::vector<uint8_t>& c = w.codes.alpha_code;
  if (c.size() != w.alpha.size() || w.codes.alpha_super.size() % uq != 0) return false;
  for (size_t j = 0; j < c.size(); j += uq) {
    for (size_t i = 1; i < uq; ++i) {
      if (c[j + i] != c[j]) return false;
    }
  }
  return powers_of_two(w.codes.alpha_super, q);
}

Status expand_uniform_alpha(std::vector<uint16_t>& alpha, int q) {
  std::vector<uint16_t> full(alpha.size() * static_cast<size_t>(q), 0);
  for (size_t j = 0; j < alpha.size(); ++j) full[j * static_cast<size_t>(q)] = alpha[j];
  if (!expand_powers(full, q)) {
    return Status(StatusCode::kCorrupt, "uniform scales: a scale times 2^(q-1) is not a finite fp16");
  }
  alpha = std::move(full);
  return Status::ok();
}

Status expand_uniform_codes(ScaleCodes& codes, int q) {
  const auto uq = static_cast<size_t>(q);
  std::vector<uint8_t> code(codes.alpha_code.size() * uq, 0);
  for (size_t j = 0; j < codes.alpha_code.size(); ++j) std::fill_n(code.begin() + static_cast<std::ptrdiff_t>(j * uq), uq, codes.alpha_code[j]);
  std::vector<uint16_t> super(codes.alpha_super.size() * uq, 0);
  for (size_t j = 0; j < codes.alpha_super.size(); ++j) super[j * uq] = codes.alpha_super[j];
  if (!expand_powers(super, q)) {
    return Status(StatusCode::kCorrupt, "uniform scales: a super scale times 2^(q-1) is not a finite fp16");
  }
  codes.alpha_code = std::move(code);
  codes.alpha_super = std::move(super);
  return Status::ok();
}

Status validate_config(const BcqConfig& cfg, int64_t n, int64_t k) {
  char buf[256];
  if (n <= 0 || k <= 0) {
    std::snprintf(buf, sizeof buf, "matrix shape %lldx%lld: both dimensions must be positive",
                  static_cast<long long>(n), static_cast<long long>(k));
    return Status::invalid(buf);
  }
  // 2^31 elements per dimension is far beyond any model and keeps index arithmetic in range.
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  if (n > kMaxDim || k > kMaxDim || n * k > (int64_t{1} << 40)) {
    std::snprintf(buf, sizeof buf, "matrix shape %lldx%lld is too large", static_cast<long long>(n),
                  static_cast<long long>(k));
    return Status::invalid(buf);
  }
  if (cfg.q < 1 || cfg.q > kMaxBits) {
    std::snprintf(buf, sizeof buf, "bits q=%d out of range: BCQ takes 1..%d bit-planes", cfg.q, kMaxBits);
    return Status::invalid(buf);
  }
  const bool per_oc = cfg.orientation == Orientation::kPerOC;
  const int64_t extent = per_oc ? k : n;
  const char* dim = per_oc ? "k" : "n";
  const bool standard = cfg.g == 32 || cfg.g == 64 || cfg.g == 128 || cfg.g == 256;
  if (!standard && cfg.g != extent) {
    std::snprintf(buf, sizeof buf,
                  "group size g=%lld: must be 32, 64, 128, 256 or the full %s=%lld (%s groups)",
                  static_cast<long long>(cfg.g), dim, static_cast<long long>(extent),
                  orientation_name(cfg.orientation));
    return Status::invalid(buf);
  }
  if (extent % cfg.g != 0) {
    std::snprintf(buf, sizeof buf, "%s=%lld is not a multiple of the group size g=%lld (%s groups)", dim,
                  static_cast<long long>(extent), static_cast<long long>(cfg.g),
                  orientation_name(cfg.orientation));
    return Status::invalid(buf);
  }
  return Status::ok();
}

Status validate(const BcqMatrix& w) {
  if (Status s = validate_config(w.cfg, w.n, w.k); !s) return s;
  const auto q = static_cast<size_t>(w.cfg.q);
  const auto sets = static_cast<size_t>(w.num_scale_sets());
  if (w.bits.size() != q * static_cast<size_t>(w.n * w.row_bytes())) {
    return Status(StatusCode::kCorrupt, "BCQ matrix: bit-plane buffer has the wrong size");
  }
  if (w.alpha.size() != sets * q) return Status(StatusCode::kCorrupt, "BCQ matrix: scale buffer has the wrong size");
  if (w.offset.size() != (w.cfg.has_offset ? sets : 0)) {
    return Status(StatusCode::kCorrupt, "BCQ matrix: offset buffer has the wrong size");
  }
  if (w.k % 8 != 0) {
    const auto mask = static_cast<uint8_t>(0xffu << (w.k % 8));
    for (size_t row = 0; row < q * static_cast<size_t>(w.n); ++row) {
      if (w.bits[(row + 1) * static_cast<size_t>(w.row_bytes()) - 1] & mask) {
        return Status(StatusCode::kCorrupt, "BCQ matrix: padding bits past k are not zero");
      }
    }
  }
  return Status::ok();
}

Result<BcqMatrix> make_empty(int64_t n, int64_t k, const BcqConfig& cfg) {
  if (Status s = validate_config(cfg, n, k); !s) return s;
  BcqMatrix w;
  w.n = n;
  w.k = k;
  w.cfg = cfg;
  w.bits.assign(static_cast<size_t>(cfg.q * n * w.row_bytes()), 0);
  w.alpha.assign(static_cast<size_t>(w.num_scale_sets() * cfg.q), 0);
  if (cfg.has_offset) w.offset.assign(static_cast<size_t>(w.num_scale_sets()), 0);
  return w;
}

void dequantize_row(const BcqMatrix& w, int64_t r, double* out) {
  const int q = w.cfg.q;
  for (int64_t c = 0; c < w.k; ++c) {
    const int64_t set = w.scale_set(r, c);
    double v = w.cfg.has_offset ? fp16_to_fp32(w.offset[static_cast<size_t>(set)]) : 0.0;
    for (int i = 0; i < q; ++i) {
      const double a = fp16_to_fp32(w.alpha[static_cast<size_t>(set * q + i)]);
      v += w.bit(i, r, c) ? a : -a;
    }
    out[c] = v;
  }
}

std::vector<float> dequantize(const BcqMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.n * w.k));
  std::vector<double> row(static_cast<size_t>(w.k));
  for (int64_t r = 0; r < w.n; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t c = 0; c < w.k; ++c) out[static_cast<size_t>(r * w.k + c)] = static_cast<float>(row[static_cast<size_t>(c)]);
  }
  return out;
}

std::string describe(const BcqMatrix& w) {
  char buf[160];
  char scales[32] = "";
  if (w.codes.bits > 0) std::snprintf(scales, sizeof scales, " scales %d-bit", w.codes.bits);
  std::snprintf(buf, sizeof buf, "%lldx%lld q=%d g=%lld %s%s%s%s (%.3f bpw)", static_cast<long long>(w.n),
                static_cast<long long>(w.k), w.cfg.q, static_cast<long long>(w.cfg.g),
                orientation_name(w.cfg.orientation), w.cfg.has_offset ? " offset" : "", scales,
                has_uniform_scales(w) ? " uniform" : "", w.bits_per_weight());
  return buf;
}

}  // namespace lutq::format
