// HessianAccumulator: tiles of rows are transposed into fp32, their lower-triangle products
// computed in 4×4 register blocks with 8-lane fp32 accumulators, and added into double H.
#include "quant/hessian.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/thread_pool.h"

namespace lutq::quant {
namespace {

constexpr int64_t kLanes = 8;
constexpr int64_t kBlock = 4;

// h[i*ldh + j] += Σ_t xa[i*ts + t]·xb[j*ts + t] for i < RA, j < RB, t < mt (mt % 8 == 0). The
// fixed-size lane loops are what the compiler turns into vector accumulators.
template <int RA, int RB>
[[gnu::always_inline]] inline void block_products(const float* xa, const float* xb, int64_t ts, int64_t mt,
                                                  double* h, int64_t ldh) {
  float acc[RA][RB][kLanes] = {};
  for (int64_t t = 0; t < mt; t += kLanes) {
    for (int i = 0; i < RA; ++i) {
      for (int j = 0; j < RB; ++j) {
        for (int64_t l = 0; l < kLanes; ++l) acc[i][j][l] += xa[i * ts + t + l] * xb[j * ts + t + l];
      }
    }
  }
  for (int i = 0; i < RA; ++i) {
    for (int j = 0; j < RB; ++j) {
      double s = 0.0;
      for (int64_t l = 0; l < kLanes; ++l) s += static_cast<double>(acc[i][j][l]);
      h[i * ldh + j] += s;
    }
  }
}

// The same for a ragged edge block (ra, rb < 4): scalar, it is a vanishing share of the work.
void edge_products(const float* xa, const float* xb, int64_t ts, int64_t mt, int64_t ra, int64_t rb, double* h,
                   int64_t ldh) {
  for (int64_t i = 0; i < ra; ++i) {
    for (int64_t j = 0; j < rb; ++j) {
      float acc[kLanes] = {};
      for (int64_t t = 0; t < mt; t += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) acc[l] += xa[i * ts + t + l] * xb[j * ts + t + l];
      }
      double s = 0.0;
      for (int64_t l = 0; l < kLanes; ++l) s += static_cast<double>(acc[l]);
      h[i * ldh + j] += s;
    }
  }
}

// Block rows ab = first, first + stride, ...: every block (ab, bb) with bb <= ab.
[[gnu::target_clones("avx2", "default")]] void lower_blocks(const float* xt, int64_t ts, int64_t mt, int64_t k,
                                                             double* h, int64_t first, int64_t stride) {
  const int64_t nb = (k + kBlock - 1) / kBlock;
  for (int64_t ab = first; ab < nb; ab += stride) {
    const int64_t a = ab * kBlock;
    const int64_t ra = std::min(kBlock, k - a);
    for (int64_t bb = 0; bb <= ab; ++bb) {
      const int64_t b = bb * kBlock;
      const int64_t rb = std::min(kBlock, k - b);
      double* hb = h + a * k + b;
      if (ra == kBlock && rb == kBlock) {
        block_products<4, 4>(xt + a * ts, xt + b * ts, ts, mt, hb, k);
      } else {
        edge_products(xt + a * ts, xt + b * ts, ts, mt, ra, rb, hb, k);
      }
    }
  }
}

}  // namespace

Result<HessianAccumulator> HessianAccumulator::create(int64_t k) {
  if (k < 1) return Status::invalid("hessian: k must be at least 1 (got " + std::to_string(k) + ")");
  if (k > (int64_t{1} << 16)) return Status::invalid("hessian: k=" + std::to_string(k) + " is too large (k² doubles)");
  HessianAccumulator acc;
  acc.k_ = k;
  acc.h_.assign(static_cast<size_t>(k * k), 0.0);
  acc.xt_.assign(static_cast<size_t>(k * kTileRows), 0.0f);
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

void HessianAccumulator::add_tile(const float* x, int64_t m, ThreadPool* pool) {
  const int64_t ts = kTileRows;
  const int64_t mt = (m + kLanes - 1) / kLanes * kLanes;
  for (int64_t c = 0; c < k_; ++c) {
    float* dst = xt_.data() + c * ts;
    for (int64_t t = 0; t < m; ++t) dst[t] = x[t * k_ + c];
    for (int64_t t = m; t < mt; ++t) dst[t] = 0.0f;  // zero padding adds nothing
  }
  if (pool == nullptr || pool->size() == 1) {
    lower_blocks(xt_.data(), ts, mt, k_, h_.data(), 0, 1);
    return;
  }
  pool->run([&](int index, int count) { lower_blocks(xt_.data(), ts, mt, k_, h_.data(), index, count); });
}

std::vector<double> HessianAccumulator::mean() const {
  std::vector<double> out(h_.size(), 0.0);
  if (rows_ == 0) return out;
  const double inv = 1.0 / static_cast<double>(rows_);
  for (size_t i = 0; i < h_.size(); ++i) out[i] = h_[i] * inv;
  return out;
}

}  // namespace lutq::quant
