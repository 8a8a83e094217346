#include "format/bcq_matrix.h"

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
  if (codes.bits <= 0) return storage_bytes();
  const auto packed = [&](size_t count) { return static_cast<int64_t>((count * static_cast<size_t>(codes.bits) + 7) / 8); };
  return static_cast<int64_t>(bits.size()) + packed(codes.alpha_code.size()) + packed(codes.offset_code.size()) +
         static_cast<int64_t>(2 * (codes.alpha_super.size() + codes.offset_range.size()));
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
  std::snprintf(buf, sizeof buf, "%lldx%lld q=%d g=%lld %s%s%s (%.3f bpw)", static_cast<long long>(w.n),
                static_cast<long long>(w.k), w.cfg.q, static_cast<long long>(w.cfg.g),
                orientation_name(w.cfg.orientation), w.cfg.has_offset ? " offset" : "", scales, w.bits_per_weight());
  return buf;
}

}  // namespace lutq::format
