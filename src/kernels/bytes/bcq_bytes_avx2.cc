// The AVX2 kernel of the byte-code path (bcq_bytes.h). vpmaddubsw would saturate (u8 codes up to
// 255 times s8 activations, pairs up to 64,770), so codes are widened to i16 (vpmovzxbw, 16
// codes = 4 rows x 4 columns of a quad) and multiplied with the activations widened to i16 by
// vpmaddwd: exact, each i32 lane then holds one row's sum over 2 columns. Per (16-row tile,
// group, activation row) 4 accumulators (rows 0-3, 4-7, 8-11, 12-15); at the group's end
// vphaddd + vpermd fold the column pairs into one int32 per row. A tile's group (16 x g bytes)
// stays in L1 for the next activation rows.
//
// q <= 4 (a uniform grid's copy for the int8 path's prefill; bcq_uniform_grid) takes
// vpmaddubsw instead (tile_small below).
//
// Float order: the scalar spec's, so the outputs equal bcq_bytes_gemm_ref bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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

// Codes of at most 4 bits (q <= 4, the int8 path's prefill copy on avx2), stored as nibbles (a
// quad's rows 0-7 in the low nibbles of 32 bytes, rows 8-15 in the high ones: one mask and one
// shift split them): vpmaddubsw takes the
// u8 codes and the s8 activations directly, a pair at most 2·15·127 = 3,810, so the int16 pair
// sums add up over `flush` quads without overflow (8 at q = 4: 30,480 < 2^15) before one
// vpmaddwd by 1 folds them into int32 per row. Per quad and activation row: 2 vpmaddubsw and 2
// vpaddw per 64 weights (vpmaddwd: 2 per 32), and no group-end folding (lanes are rows).
constexpr int kSmallRows = 3;  // activation rows per pass (15 of 16 ymm registers)

inline int flush_quads(int q) { return 32767 / (2 * ((1 << q) - 1) * 127); }

template <int T>
void small_group_sums(const uint8_t* codes, const int8_t* x, int64_t x_stride, int64_t quads, int flush,
                      __m256i out[kSmallRows][2]) {
  const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
  __m256i a32[T][2];
  for (int t = 0; t < T; ++t) a32[t][0] = a32[t][1] = _mm256_setzero_si256();
  for (int64_t d0 = 0; d0 < quads; d0 += flush) {
    const int64_t d1 = std::min<int64_t>(quads, d0 + flush);
    __m256i a16[T][2];
    for (int t = 0; t < T; ++t) a16[t][0] = a16[t][1] = _mm256_setzero_si256();
    for (int64_t d = d0; d < d1; ++d) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(codes + d * 32));
      const __m256i c0 = _mm256_and_si256(v, low), c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, x + t * x_stride + d * 4, 4);
        const __m256i xv = _mm256_set1_epi32(four);
        a16[t][0] = _mm256_add_epi16(a16[t][0], _mm256_maddubs_epi16(c0, xv));
        a16[t][1] = _mm256_add_epi16(a16[t][1], _mm256_maddubs_epi16(c1, xv));
      }
    }
    for (int t = 0; t < T; ++t) {
      a32[t][0] = _mm256_add_epi32(a32[t][0], _mm256_madd_epi16(a16[t][0], ones));
      a32[t][1] = _mm256_add_epi32(a32[t][1], _mm256_madd_epi16(a16[t][1], ones));
    }
  }
  for (int t = 0; t < T; ++t) {
    out[t][0] = a32[t][0];
    out[t][1] = a32[t][1];
  }
}

// All activation rows of one tile, q <= 4: per group the tile's 16 x g codes stay in L1 while
// the rows pass over them kSmallRows at a time; facc [m][16] carries the spec's per-row chain.
void tile_small(const BcqBytesPacked& w, const QuantizedActs& xa, int64_t tile, float* facc, float* y) {
  const int64_t quads = w.g / 4, m = xa.m;
  const int flush = flush_quads(w.q);
  std::fill(facc, facc + m * kBytesTileRows, 0.0f);
  for (int64_t j = 0; j < w.groups; ++j) {
    const uint8_t* codes = w.codes.data() + (tile * (w.k / 4) + j * quads) * 32;
    const float* sc = w.scales.data() + (tile * w.groups + j) * 2 * kBytesTileRows;
    for (int64_t t0 = 0; t0 < m; t0 += kSmallRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kSmallRows, m - t0));
      const int8_t* x = xa.xq.data() + t0 * xa.stride + j * w.g;
      __m256i isum[kSmallRows][2];
      switch (rows) {
        case 1: small_group_sums<1>(codes, x, xa.stride, quads, flush, isum); break;
        case 2: small_group_sums<2>(codes, x, xa.stride, quads, flush, isum); break;
        default: small_group_sums<3>(codes, x, xa.stride, quads, flush, isum); break;
      }
      for (int t = 0; t < rows; ++t) {
        const size_t cell = static_cast<size_t>((t0 + t) * xa.groups + j);
        const __m256 sx = _mm256_set1_ps(xa.sx[cell]);
        const __m256 s = _mm256_set1_ps(static_cast<float>(xa.corr[cell] / -128));
        float* f = facc + (t0 + t) * kBytesTileRows;
        for (int h = 0; h < 2; ++h) {
          __m256 v = _mm256_mul_ps(_mm256_loadu_ps(sc + 8 * h), _mm256_cvtepi32_ps(isum[t][h]));
          v = _mm256_fmadd_ps(_mm256_loadu_ps(sc + kBytesTileRows + 8 * h), s, v);
          _mm256_storeu_ps(f + 8 * h, _mm256_fmadd_ps(v, sx, _mm256_loadu_ps(f + 8 * h)));
        }
      }
    }
  }
  const int64_t r0 = tile * kBytesTileRows, rows = std::min<int64_t>(kBytesTileRows, w.n - r0);
  for (int64_t t = 0; t < m; ++t) std::copy(facc + t * kBytesTileRows, facc + t * kBytesTileRows + rows, y + t * w.n + r0);
}

}  // namespace

void bcq_bytes_gemm_avx2(const BcqBytesPacked& w, const QuantizedActs& xa, float* y, ThreadPool& pool) {
  pool.parallel_for(w.tiles, 1, [&](int64_t t0, int64_t t1) {
    if (w.q <= 4) {
      std::vector<float> facc(static_cast<size_t>(xa.m * kBytesTileRows));
      for (int64_t tile = t0; tile < t1; ++tile) tile_small(w, xa, tile, facc.data(), y);
      return;
    }
    for (int64_t tile = t0; tile < t1; ++tile) tile_rows(w, xa, tile, y);
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
