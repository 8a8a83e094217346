// HessianAccumulator: each tile of rows goes through OpenBLAS's fp32 SYRK (the lower triangle of
// XᵀX for the tile, in fp32), and the tile's result is added into double H.
#include "quant/hessian.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <cblas.h>

#include "core/thread_pool.h"

namespace lutq::quant {
Result<HessianAccumulator> HessianAccumulator::create(int64_t k) {
  if (k < 1) return Status::invalid("hessian: k must be at least 1 (got " + std::to_string(k) + ")");
  if (k > (int64_t{1} << 16)) return Status::invalid("hessian: k=" + std::to_string(k) + " is too large (k² doubles)");
  HessianAccumulator acc;
  acc.k_ = k;
  acc.h_.assign(static_cast<size_t>(k * k), 0.0);
  acc.xt_.assign(static_cast<size_t>(k * k), 0.0f);
  return acc;
}

Result<HessianAccumulator> HessianAccumulator::restore(int64_t k, int64_t rows, std::vector<double> h) {
  Result<HessianAccumulator> acc = create(k);
  if (!acc) return acc.status();
  if (rows < 0) return Status::invalid("hessian: negative row count " + std::to_string(rows));
  if (static_cast<int64_t>(h.size()) != k * k) {
    return Status::invalid("hessian: " + std::to_string(h.size()) + " sums for k=" + std::to_string(k) + " (expected k²)");
  }
  for (int64_t i = 0; i < k; ++i) {
    const double d = h[static_cast<size_t>(i * k + i)];
    if (!std::isfinite(d) || d < 0.0) return Status::invalid("hessian: diagonal " + std::to_string(i) + " is negative or not finite");
    for (int64_t j = 0; j < i; ++j) {
      const double a = h[static_cast<size_t>(i * k + j)];
      if (!std::isfinite(a) || a != h[static_cast<size_t>(j * k + i)]) {
        return Status::invalid("hessian: entry (" + std::to_string(i) + ", " + std::to_string(j) +
                               ") is not finite or not symmetric");
      }
    }
  }
  acc->rows_ = rows;
  acc->h_ = std::move(h);
  return acc;
}

Status HessianAccumulator::add(const float* x, int64_t m, ThreadPool* pool) {
  if (m < 0) return Status::invalid("hessian: negative row count " + std::to_string(m));
  if (m == 0) return Status::ok();
  if (x == nullptr) return Status::invalid("hessian: null activation pointer");
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t c = 0; c < k_; ++c) {
      if (std::isfinite(x[t * k_ + c])) continue;
      char buf[128];
      std::snprintf(buf, sizeof buf, "hessian: activation at row %lld, column %lld is not finite",
                    static_cast<long long>(t), static_cast<long long>(c));
      return Status::invalid(buf);
    }
  }
  for (int64_t t0 = 0; t0 < m; t0 += kTileRows) add_tile(x + t0 * k_, std::min(kTileRows, m - t0), pool);
  // Mirror the accumulated lower triangle (diagonal blocks computed both ways agree bitwise).
  for (int64_t i = 0; i < k_; ++i) {
    for (int64_t j = 0; j < i; ++j) h_[static_cast<size_t>(j * k_ + i)] = h_[static_cast<size_t>(i * k_ + j)];
  }
  rows_ += m;
  return Status::ok();
}

void HessianAccumulator::add_tile(const float* x, int64_t m, ThreadPool* /*pool*/) {
  // OpenBLAS threads the SYRK itself; the tile's fp32 result does not depend on the pool.
  const auto kk = static_cast<blasint>(k_);
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, kk, static_cast<blasint>(m), 1.0f, x, kk, 0.0f, xt_.data(), kk);
  for (int64_t i = 0; i < k_; ++i) {
    const float* src = xt_.data() + i * k_;
    double* dst = h_.data() + i * k_;
    for (int64_t j = 0; j <= i; ++j) dst[j] += static_cast<double>(src[j]);
  }
}

std::vector<double> HessianAccumulator::mean() const {
  std::vector<double> out(h_.size(), 0.0);
  if (rows_ == 0) return out;
  const double inv = 1.0 / static_cast<double>(rows_);
  for (size_t i = 0; i < h_.size(); ++i) out[i] = h_[i] * inv;
  return out;
}

}  // namespace lutq::quant
