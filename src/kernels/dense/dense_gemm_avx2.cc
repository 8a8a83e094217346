// The AVX2+FMA dense GEMM (contract in dense_gemm.h). GEMV (m = 1): 4 weight rows at a time with
// 2 accumulators each along k. m > 1: the activations are packed into k blocks (aligned, padded
// rows), and register tiles of 4 weight rows × up to 3 activation rows (12 accumulators, 16 ymm
// registers live) run over each block; ragged row tiles use 2 or 1 weight rows × up to 4
// activation rows. Every output is the same lane-wise chain whatever the tile, so results do not
// depend on the thread count.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/aligned_buffer.h"
#include "kernels/dense/dense_gemm.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace lutq::kernels {
namespace {

constexpr int64_t kRowTile = 4;  // weight rows per tile; threads get whole tiles
constexpr int64_t kBlockK = 256;  // k block when m > 1: a tile's weights take 4 KiB of L1
constexpr int64_t kBlockM = 32;  // activation rows per k block (packed, ~34 KiB: L1 and L2)
// Row stride of the packed activation blocks: one cache line more than a block, so the rows of a
// block fall into different L1 sets (x rows k floats apart alias when k is a power of two).
constexpr int64_t kPackStride = kBlockK + 16;

float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// GEMV: y[i] = Σ_{c<k} w[i*k + c] · x[c] for i < R, with U independent accumulators per row.
template <int R, int U>
void gemv_rows(const float* w, const float* x, int64_t k, float* y) {
  __m256 acc[U][R];
  for (int u = 0; u < U; ++u) {
    for (int i = 0; i < R; ++i) acc[u][i] = _mm256_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 8 * U <= k; c += 8 * U) {
    for (int u = 0; u < U; ++u) {
      const __m256 xv = _mm256_loadu_ps(x + c + 8 * u);
      for (int i = 0; i < R; ++i) acc[u][i] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * k + c + 8 * u), xv, acc[u][i]);
    }
  }
  for (; c + 8 <= k; c += 8) {
    const __m256 xv = _mm256_loadu_ps(x + c);
    for (int i = 0; i < R; ++i) acc[0][i] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * k + c), xv, acc[0][i]);
  }
  for (int i = 0; i < R; ++i) {
    __m256 v = acc[0][i];
    for (int u = 1; u < U; ++u) v = _mm256_add_ps(v, acc[u][i]);
    float s = hsum(v);
    for (int64_t t = c; t < k; ++t) s += w[i * k + t] * x[t];
    y[i] = s;
  }
}

// part[i*kBlockM + j] += Σ_{c<len} w[i*ldw + c] · x[j*kPackStride + c] lane-wise, for i < R,
// j < M; len % 8 == 0.
template <int R, int M>
void micro(const float* w, int64_t ldw, const float* x, int64_t len, __m256* part) {
  __m256 acc[R][M];
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < M; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t c = 0; c < len; c += 8) {
    __m256 xv[M];
    for (int j = 0; j < M; ++j) xv[j] = _mm256_loadu_ps(x + j * kPackStride + c);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = _mm256_loadu_ps(w + i * ldw + c);
      for (int j = 0; j < M; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < M; ++j) part[i * kBlockM + j] = _mm256_add_ps(part[i * kBlockM + j], acc[i][j]);
  }
}

// R weight rows against mt (1..4) activation rows.
template <int R>
void micro_m(int64_t mt, const float* w, int64_t ldw, const float* x, int64_t len, __m256* part) {
  switch (mt) {
    case 1: micro<R, 1>(w, ldw, x, len, part); break;
    case 2: micro<R, 2>(w, ldw, x, len, part); break;
    case 3: micro<R, 3>(w, ldw, x, len, part); break;
    default: micro<R, 4>(w, ldw, x, len, part); break;
  }
}

// x[m, k8] (k8 = k rounded down to a multiple of 8) as blocks of kBlockK columns, each block
// holding the m rows kPackStride floats apart: xp[(kb/kBlockK)*m*kPackStride + j*kPackStride + c].
// 64-byte aligned, so no load of a block crosses a cache line.
AlignedBuffer pack_activations(const float* x, int64_t m, int64_t k) {
  const int64_t k8 = k / 8 * 8;
  const int64_t blocks = (k8 + kBlockK - 1) / kBlockK;
  AlignedBuffer buf(static_cast<size_t>(std::max<int64_t>(blocks, 1) * m * kPackStride) * sizeof(float));
  float* xp = buf.as<float>();
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t len = std::min(kBlockK, k8 - b * kBlockK);
    for (int64_t j = 0; j < m; ++j) {
      std::memcpy(xp + (b * m + j) * kPackStride, x + j * k + b * kBlockK, static_cast<size_t>(len) * sizeof(float));
    }
  }
  return buf;
}

// Output rows [r0, r1) for all m activation rows (xp: pack_activations(x), used when m > 1).
void gemm_rows(const DenseWeights& w, const float* x, const float* xp, int64_t m, float* y, int64_t r0, int64_t r1) {
  const int64_t k = w.k;
  const int64_t n = w.n;
  if (m == 1) {  // GEMV: whole rows, 4 weight streams, 8 accumulators
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) gemv_rows<4, 2>(w.data + r * k, x, k, y + r);
    for (; r < r1; ++r) gemv_rows<1, 4>(w.data + r * k, x, k, y + r);
    return;
  }
  // A weight tile (4 rows × k) is read from memory once and stays in L2 while every block of
  // activation rows passes over it; each k block of a row tile and an activation block sits in L1.
  // Lane-wise partial sums live in `part` (one ymm per output of the block) until the end of k.
  const int64_t k8 = k / 8 * 8;
  __m256 part[kRowTile * kBlockM];
  for (int64_t r = r0; r < r1; r += kRowTile) {
    const int64_t rows = std::min(kRowTile, r1 - r);
    const float* wr = w.data + r * k;
    for (int64_t mb = 0; mb < m; mb += kBlockM) {
      const int64_t mrows = std::min(kBlockM, m - mb);
      for (__m256& p : part) p = _mm256_setzero_ps();
      for (int64_t kb = 0; kb < k8; kb += kBlockK) {
        const int64_t len = std::min(kBlockK, k8 - kb);
        const float* xb = xp + ((kb / kBlockK) * m + mb) * kPackStride;
        if (rows == kRowTile) {  // 4 weight rows × 3 activation rows: 12 accumulators
          for (int64_t j = 0; j < mrows; j += 3) {
            const int64_t mt = std::min<int64_t>(3, mrows - j);
            micro_m<4>(mt, wr + kb, k, xb + j * kPackStride, len, part + j);
          }
          continue;
        }
        for (int64_t j = 0; j < mrows; j += 4) {
          const int64_t mt = std::min<int64_t>(4, mrows - j);
          const float* xs = xb + j * kPackStride;
          int64_t i = 0;
          for (; i + 2 <= rows; i += 2) micro_m<2>(mt, wr + i * k + kb, k, xs, len, part + i * kBlockM + j);
          if (i < rows) micro_m<1>(mt, wr + i * k + kb, k, xs, len, part + i * kBlockM + j);
        }
      }
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < mrows; ++j) {
          float s = hsum(part[i * kBlockM + j]);
          const float* wi = wr + i * k;
          const float* xj = x + (mb + j) * k;
          for (int64_t t = k8; t < k; ++t) s += wi[t] * xj[t];
          y[(mb + j) * n + r + i] = s;
        }
      }
    }
  }
}

}  // namespace

void dense_gemm_avx2(const DenseWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const AlignedBuffer xp = m > 1 ? pack_activations(x, m, w.k) : AlignedBuffer();
  const float* xpp = xp.as<float>();
  pool.parallel_for(w.n, kRowTile, [&](int64_t r0, int64_t r1) { gemm_rows(w, x, xpp, m, y, r0, r1); });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
