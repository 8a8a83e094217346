// The AVX2 kernel of the byte-code path (bcq_bytes.h). vpmaddubsw would saturate (u8 codes up to
// 255 times s8 activations, pairs up to 64,770), so codes are widened to i16 (vpmovzxbw, 16
// codes = 4 rows x 4 columns of a quad) and multiplied with the activations widened to i16 by
// vpmaddwd: exact, each i32 lane then holds one row's sum over 2 columns. Per (16-row tile,
// group, activation row) 4 accumulators (rows 0-3, 4-7, 8-11, 12-15); at the group's end
// vphaddd + vpermd fold the column pairs into one int32 per row. A tile's group (16 x g bytes)
// stays in L1 for the next activation rows.
//
// Float order: the scalar spec's, so the outputs equal bcq_bytes_gemm_ref bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include "kernels/bytes/bcq_bytes.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace lutq::kernels {
namespace {

// {x0, x1, x2, x3} (s8 at x) as i16, repeated 4 times.
inline __m256i acts_i16(const int8_t* x) {
  int32_t four;
  std::memcpy(&four, x, 4);
  return _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(four)));
}

// Pair sums [r0a r0b r1a r1b | r2a r2b r3a r3b] (lo) and the same for rows 4-7 (hi) -> rows 0-7.
inline __m256i fold_rows(__m256i lo, __m256i hi) {
  return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}

// Row t's integer sums of one (tile, group): out[0] rows 0-7, out[1] rows 8-15.
void group_sums(const uint8_t* codes, const int8_t* xq, int64_t quads, __m256i out[2]) {
  __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  for (int64_t d = 0; d < quads; ++d) {
    const __m256i xv = acts_i16(xq + d * 4);
    for (int p = 0; p < 4; ++p) {
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + d * 64 + p * 16));
      acc[p] = _mm256_add_epi32(acc[p], _mm256_madd_epi16(_mm256_cvtepu8_epi16(c), xv));
    }
  }
  out[0] = fold_rows(acc[0], acc[1]);
  out[1] = fold_rows(acc[2], acc[3]);
}

void tile_rows(const BcqBytesPacked& w, const QuantizedActs& xa, int64_t tile, float* y) {
  const int64_t quads = w.g / 4;
  const int64_t r0 = tile * kBytesTileRows, rows = std::min<int64_t>(kBytesTileRows, w.n - r0);
  for (int64_t t = 0; t < xa.m; ++t) {
    __m256 facc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t j = 0; j < w.groups; ++j) {
      __m256i isum[2];
      group_sums(w.codes.data() + (tile * (w.k / 4) + j * quads) * 64, xa.xq.data() + t * xa.stride + j * w.g, quads,
                 isum);
      const size_t cell = static_cast<size_t>(t * xa.groups + j);
      const __m256 sx = _mm256_set1_ps(xa.sx[cell]);
      const __m256 s = _mm256_set1_ps(static_cast<float>(xa.corr[cell] / -128));
      const float* sc = w.scales.data() + (tile * w.groups + j) * 2 * kBytesTileRows;
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(sc + 8 * h), _mm256_cvtepi32_ps(isum[h]));
        v = _mm256_fmadd_ps(_mm256_loadu_ps(sc + kBytesTileRows + 8 * h), s, v);
        facc[h] = _mm256_fmadd_ps(v, sx, facc[h]);
      }
    }
    alignas(32) float out[kBytesTileRows];
    _mm256_store_ps(out, facc[0]);
    _mm256_store_ps(out + 8, facc[1]);
    std::copy(out, out + rows, y + t * w.n + r0);
  }
}

}  // namespace

void bcq_bytes_gemm_avx2(const BcqBytesPacked& w, const QuantizedActs& xa, float* y, ThreadPool& pool) {
  pool.parallel_for(w.tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t tile = t0; tile < t1; ++tile) tile_rows(w, xa, tile, y);
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
