// The accuracy spec: dequantize every weight and accumulate in double.
#include <vector>

#include "kernels/kernel.h"

namespace lutq::kernels {
namespace {

bool ref_available(const CpuFeatures&) { return true; }

// Takes every valid matrix (Backend::check's precondition).
Status ref_check(const format::BcqMatrix&, Precision) { return Status::ok(); }

PackedMatrix ref_repack(const format::BcqMatrix& w, Precision p) { return canonical_packed(w, Isa::kRef, p); }

void ref_gemm(const PackedMatrix& pw, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const format::BcqMatrix& w = pw.source;
  pool.parallel_for(w.n, 1, [&](int64_t r0, int64_t r1) {
    std::vector<double> row(static_cast<size_t>(w.k));
    for (int64_t r = r0; r < r1; ++r) {
      format::dequantize_row(w, r, row.data());
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
  static const Backend kBackend{Isa::kRef, ref_available, ref_check, ref_repack, canonical_unpack, ref_gemm, nullptr};
  return kBackend;
}

}  // namespace lutq::kernels
