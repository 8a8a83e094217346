// The accuracy spec: dequantize every weight and accumulate in double.
#include <vector>

#include "core/fp16.h"
#include "kernels/kernel.h"

namespace lutq::kernels {
namespace {

bool ref_available(const CpuFeatures&) { return true; }

Status ref_check(const format::BcqMatrix& w, Precision) { return format::validate(w); }

PackedMatrix ref_repack(const format::BcqMatrix& w, Precision p) {
  PackedMatrix out;
  out.isa = Isa::kRef;
  out.precision = p;
  out.source = w;
  return out;
}

format::BcqMatrix ref_unpack(const PackedMatrix& w) { return w.source; }

void ref_gemm(const PackedMatrix& pw, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const format::BcqMatrix& w = pw.source;
  const int q = w.cfg.q;
  pool.parallel_for(w.n, 1, [&](int64_t r0, int64_t r1) {
    std::vector<double> row(static_cast<size_t>(w.k));
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < w.k; ++c) {
        const int64_t set = w.scale_set(r, c);
        double v = w.cfg.has_offset ? fp16_to_fp32(w.offset[static_cast<size_t>(set)]) : 0.0;
        for (int i = 0; i < q; ++i) {
          const double a = fp16_to_fp32(w.alpha[static_cast<size_t>(set * q + i)]);
          v += w.bit(i, r, c) ? a : -a;
        }
        row[static_cast<size_t>(c)] = v;
      }
      for (int64_t mm = 0; mm < m; ++mm) {
        double acc = 0.0;
        const float* xr = x + mm * w.k;
        for (int64_t c = 0; c < w.k; ++c) acc += row[static_cast<size_t>(c)] * static_cast<double>(xr[c]);
        y[mm * w.n + r] = static_cast<float>(acc);
      }
    }
  });
}

}  // namespace

const Backend& ref_backend() {
  static const Backend kBackend{Isa::kRef, ref_available, ref_check, ref_repack, ref_unpack, ref_gemm, nullptr};
  return kBackend;
}

}  // namespace lutq::kernels
