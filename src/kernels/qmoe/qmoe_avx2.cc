// The AVX2 QMoE kernel (contract in qmoe_gemm.h). AVX2 has no opmasks: the 32-bit +1 and −1
// masks of a run are broadcast and shifted left per lane (vpsllvd) so that symbol j's bit lands
// in the sign bit of lane j % 8 of block j / 8, and vblendvps picks the activation or 0 by that
// sign. Four 8-float blocks cover the run's 32 symbols; the "+" and "−" sums of each block keep
// their own accumulators.
#include <immintrin.h>

#include <cstdint>

#include "kernels/qmoe/qmoe_internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace lutq::kernels::qmoe {
namespace {

float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

template <int M>
void rows_tile(const QmoeWeights& w, const float* xp, int64_t kp, float* y, int64_t r0, int64_t r1) {
  const format::QmoeMatrix& q = *w.m;
  const uint16_t* codes = q.codes.data();
  const uint64_t* masks = w.table->masks.data();
  const uint8_t* len = w.table->len.data();
  const int64_t n = q.n;
  __m256i shift[4];
  for (int b = 0; b < 4; ++b) {
    shift[b] = _mm256_setr_epi32(31 - 8 * b, 30 - 8 * b, 29 - 8 * b, 28 - 8 * b, 27 - 8 * b, 26 - 8 * b, 25 - 8 * b,
                                 24 - 8 * b);
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    __m256 pa[M][4], na[M][4];
    for (int t = 0; t < M; ++t) {
      for (int b = 0; b < 4; ++b) pa[t][b] = na[t][b] = zero;
    }
    int64_t c = 0;
    for (uint32_t i = q.row_offset[static_cast<size_t>(r)]; i < q.row_offset[static_cast<size_t>(r + 1)]; ++i) {
      const uint16_t e = codes[i];
      const uint64_t mk = masks[e];
      const __m256i vp = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(mk)));
      const __m256i vn = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(mk >> 32)));
      for (int b = 0; b < 4; ++b) {
        const __m256 sp = _mm256_castsi256_ps(_mm256_sllv_epi32(vp, shift[b]));
        const __m256 sn = _mm256_castsi256_ps(_mm256_sllv_epi32(vn, shift[b]));
        for (int t = 0; t < M; ++t) {
          const __m256 x = _mm256_loadu_ps(xp + t * kp + c + 8 * b);
          pa[t][b] = _mm256_add_ps(pa[t][b], _mm256_blendv_ps(zero, x, sp));
          na[t][b] = _mm256_add_ps(na[t][b], _mm256_blendv_ps(zero, x, sn));
        }
      }
      c += len[e];
    }
    for (int t = 0; t < M; ++t) {
      const __m256 p = _mm256_add_ps(_mm256_add_ps(pa[t][0], pa[t][1]), _mm256_add_ps(pa[t][2], pa[t][3]));
      const __m256 ng = _mm256_add_ps(_mm256_add_ps(na[t][0], na[t][1]), _mm256_add_ps(na[t][2], na[t][3]));
      y[t * n + r] = w.scale[static_cast<size_t>(r)] * hsum(_mm256_sub_ps(p, ng));
    }
  }
}

}  // namespace

void rows_avx2(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1) {
  switch (m) {
    case 1:
      return rows_tile<1>(w, xp, kp, y, r0, r1);
    case 2:
      return rows_tile<2>(w, xp, kp, y, r0, r1);
    default:
      // 3 and 4 activation rows: two passes of two keep the 16 accumulators in registers.
      rows_tile<2>(w, xp, kp, y, r0, r1);
      if (m == 3) return rows_tile<1>(w, xp + 2 * kp, kp, y + 2 * w.n(), r0, r1);
      return rows_tile<2>(w, xp + 2 * kp, kp, y + 2 * w.n(), r0, r1);
  }
}

}  // namespace lutq::kernels::qmoe

#pragma GCC pop_options
