// The AVX-512 QMoE kernel (contract in qmoe_gemm.h). Per codeword: one 2-byte code load, one
// 8-byte table load (the +1 and −1 masks of the run), one length load; the four 16-bit halves of
// the masks are opmasks, and per activation row two 16-float loads at the run start feed four
// masked adds into the row's "+" and "−" accumulators (low/high half kept apart). With one or two
// activation rows, consecutive codewords alternate between two accumulator sets so the adds of
// one codeword do not wait for the previous one's.
// GCC 12's AVX-512 intrinsics trip -Wuninitialized in the system header (docs/kernels.md).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "kernels/qmoe/qmoe_internal.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")

namespace lutq::kernels::qmoe {
namespace {

template <int M>
struct Acc {
  __m512 p0[M], p1[M], n0[M], n1[M];
  void zero() {
    for (int t = 0; t < M; ++t) p0[t] = p1[t] = n0[t] = n1[t] = _mm512_setzero_ps();
  }
  void add(uint64_t mk, const float* x, int64_t kp) {
    const auto a0 = static_cast<__mmask16>(mk);
    const auto a1 = static_cast<__mmask16>(mk >> 16);
    const auto b0 = static_cast<__mmask16>(mk >> 32);
    const auto b1 = static_cast<__mmask16>(mk >> 48);
    for (int t = 0; t < M; ++t) {
      const __m512 x0 = _mm512_loadu_ps(x + t * kp);
      const __m512 x1 = _mm512_loadu_ps(x + t * kp + 16);
      p0[t] = _mm512_mask_add_ps(p0[t], a0, p0[t], x0);
      p1[t] = _mm512_mask_add_ps(p1[t], a1, p1[t], x1);
      n0[t] = _mm512_mask_add_ps(n0[t], b0, n0[t], x0);
      n1[t] = _mm512_mask_add_ps(n1[t], b1, n1[t], x1);
    }
  }
  __m512 diff(int t) const { return _mm512_sub_ps(_mm512_add_ps(p0[t], p1[t]), _mm512_add_ps(n0[t], n1[t])); }
};

template <int M, int S>
void rows_tile(const QmoeWeights& w, const float* xp, int64_t kp, float* y, int64_t r0, int64_t r1) {
  const format::QmoeMatrix& q = *w.m;
  const uint16_t* codes = q.codes.data();
  const uint64_t* masks = w.table->masks.data();
  const uint8_t* len = w.table->len.data();
  const int64_t n = q.n;
  for (int64_t r = r0; r < r1; ++r) {
    Acc<M> acc[S];
    for (int s = 0; s < S; ++s) acc[s].zero();
    uint32_t i = q.row_offset[static_cast<size_t>(r)];
    const uint32_t end = q.row_offset[static_cast<size_t>(r + 1)];
    int64_t c = 0;
    for (; i + S <= end; i += S) {
      for (int s = 0; s < S; ++s) {
        const uint16_t e = codes[i + static_cast<uint32_t>(s)];
        acc[s].add(masks[e], xp + c, kp);
        c += len[e];
      }
    }
    for (; i < end; ++i) {
      const uint16_t e = codes[i];
      acc[0].add(masks[e], xp + c, kp);
      c += len[e];
    }
    for (int t = 0; t < M; ++t) {
      __m512 d = acc[0].diff(t);
      for (int s = 1; s < S; ++s) d = _mm512_add_ps(d, acc[s].diff(t));
      y[t * n + r] = w.scale[static_cast<size_t>(r)] * _mm512_reduce_add_ps(d);
    }
  }
}

}  // namespace

void rows_avx512(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1) {
  switch (m) {
    case 1:
      return rows_tile<1, 4>(w, xp, kp, y, r0, r1);
    case 2:
      return rows_tile<2, 2>(w, xp, kp, y, r0, r1);
    case 3:
      return rows_tile<3, 1>(w, xp, kp, y, r0, r1);
    default:
      return rows_tile<4, 1>(w, xp, kp, y, r0, r1);
  }
}

}  // namespace lutq::kernels::qmoe

#pragma GCC pop_options
