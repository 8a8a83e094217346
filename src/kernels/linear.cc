#include "kernels/linear.h"

#include <algorithm>

namespace lutq::kernels {

Result<BcqLinear> BcqLinear::create(const format::BcqMatrix& w, Isa isa, Precision precision) {
  const Backend& be = backend(isa);
  if (Status s = be.check(w, precision); !s) {
    return Status(s.code(), std::string(isa_name(isa)) + " backend: " + s.message());
  }
  PackedMatrix packed = be.repack(w, precision);
  if (be.place != nullptr) {
    if (Status s = be.place(packed); !s) return Status(s.code(), std::string(isa_name(isa)) + " backend: " + s.message());
  }
  return BcqLinear(std::move(packed));
}

Status BcqLinear::forward(const float* x, int64_t m, float* y, ThreadPool& pool) const {
  if (m < 1) return Status::invalid("forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("forward: null activation or output pointer");
  const Backend& be = backend(packed_.isa);
  for (int64_t m0 = 0; m0 < m; m0 += kMaxM) {
    const int64_t mt = std::min(kMaxM, m - m0);
    if (be.gemm_status != nullptr) {
      if (Status s = be.gemm_status(packed_, x + m0 * k(), mt, y + m0 * n()); !s) return s;
    } else {
      be.gemm(packed_, x + m0 * k(), mt, y + m0 * n(), pool);
    }
  }
  return Status::ok();
}

int64_t BcqLinear::weight_bytes() const {
  if (packed_.data.size() > 0) return static_cast<int64_t>(packed_.data.size());
  return packed_.source.storage_bytes();
}

}  // namespace lutq::kernels
