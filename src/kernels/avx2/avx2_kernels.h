// The AVX2 inner loops, shared by the per-OC and per-IC drivers (avx2_gemm_oc.cc, avx2_gemm_ic.cc).
// This header wraps its own code in the AVX2 target, after its includes.
//
// Fast path (int8 tables), one 32-row tile, one plane, one table block of kb activations:
//   a row vector w (32 bytes = byte j of 32 rows) gives 64 nibble indices: w & 15 (chunk 2j) and
//   (w >> 4) & 15 (chunk 2j+1); vpshufb with each chunk's 16-byte table (broadcast to both lanes)
//   looks up 32 int8 entries each; unpacklo/hi_epi8 pair the two chunks of one row and
//   vpmaddubsw(1, pair) adds each pair into int16, exactly (|a + b| <= 254).
//   int16 overflow: an accumulator lane sums one row's entries over one block only, at most
//   kb/4 <= 64 entries of |value| <= 127, so |sum| <= 8128 < 32767. At each block end the sums
//   are widened to int32 (vpmaddwd with 1/0) and fp32 and scaled.
//   One table load serves up to 3 planes (m = 1), one weight load up to 4 activation rows.
// Exact path (fp32 tables): a byte of each row is widened to a dword; vpermps on entries 0..7 of
//   the chunk's table (index bits 0..2) and a sign flip from bit 3 (T[p] = −T[15 − p]) give 8 fp32
//   lookups.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <immintrin.h>

#include "kernels/avx2/avx2_internal.h"
#include "kernels/kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace lutq::kernels::avx2 {

constexpr int kFastRows = 4;   // activation rows per pass over a weight vector (fast path)
constexpr int kExactRows = 2;  // same for the exact path (it needs 4 accumulators per row)
constexpr int kHalfTable = 8;  // fp32 entries stored per chunk: T[8..15] = −T[7..0]
constexpr int64_t kPrefetchAhead = 8192;  // bytes of weight stream prefetched ahead

// Calls f(std::integral_constant<int, NJ>{}) with NJ = nj, the row vectors of one int8 table
// block (kb / 8: 4, 8, 16 or 32), so the block loop can be unrolled completely.
template <typename F>
void with_block_vecs(int64_t nj, F&& f) {
  switch (nj) {
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    default: f(std::integral_constant<int, 32>{}); break;
  }
}

// ---------------------------------------------------------------------------------------------
// Inner loops.

// Asks for the cache line kPrefetchAhead bytes past p in the weight stream (into L2); the inner
// loops call it once per 64 bytes of weights they load. The hardware prefetcher alone falls
// behind while the core computes (and stops at 4 KiB pages): with this, one thread streams from
// DRAM at ~90% of its read bandwidth instead of ~50-65%, for ~3% in the cache-resident case.
inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchAhead, _MM_HINT_T1);
}

// int16 sums over the NJ row vectors of one table block, for QB planes (row vectors wstride
// bytes apart) times MB activation rows (tables tstride bytes apart): lo[qi*MB + mm] holds slots
// {0..7, 16..23}, hi slots {8..15, 24..31} (see widen_i32 for rows). Each table load serves QB
// planes, each weight load MB rows.
template <int MB, int QB, int NJ>
inline void lookup_block(const uint8_t* w, int64_t wstride, const int8_t* tab, int64_t tstride, __m256i* lo,
                         __m256i* hi) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi8(1);
#pragma GCC unroll 8
  for (int e = 0; e < MB * QB; ++e) {
    lo[e] = _mm256_setzero_si256();
    hi[e] = _mm256_setzero_si256();
  }
#pragma GCC unroll 32
  for (int j = 0; j < NJ; ++j) {
    __m256i il[QB], ih[QB];
#pragma GCC unroll 4
    for (int qi = 0; qi < QB; ++qi) {
      const uint8_t* wj = w + qi * wstride + 32 * j;
      if (j % 2 == 0) prefetch_ahead(wj);
      const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(wj));
      il[qi] = _mm256_and_si256(wv, nib);
      ih[qi] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
    }
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const int8_t* t = tab + mm * tstride + 32 * j;
      const __m256i t0 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
      const __m256i t1 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t + 16)));
#pragma GCC unroll 4
      for (int qi = 0; qi < QB; ++qi) {
        const __m256i v0 = _mm256_shuffle_epi8(t0, il[qi]);
        const __m256i v1 = _mm256_shuffle_epi8(t1, ih[qi]);
        __m256i& l = lo[qi * MB + mm];
        __m256i& h = hi[qi * MB + mm];
        l = _mm256_add_epi16(l, _mm256_maddubs_epi16(ones, _mm256_unpacklo_epi8(v0, v1)));
        h = _mm256_add_epi16(h, _mm256_maddubs_epi16(ones, _mm256_unpackhi_epi8(v0, v1)));
        // Keep the sums running chains: left alone, GCC reassociates the unrolled integer adds
        // into a tree whose many live terms spill to the stack.
        asm("" : "+x"(l), "+x"(h));
      }
    }
  }
}

// Uniform scales (PackedMatrix::uniform), planes folded: the int16 sums over NJ row vectors of
// Σ_i 2^i·(plane i's lookups), all Q planes, for MB activation rows: lo[mm] / hi[mm] as in
// lookup_block. vpmaddubsw by 2^i instead of 1 weights each pair exactly (|2^i·254| <= 2032), and
// a lane sums NJ pairs of each plane: |sum| <= (2^Q − 1)·254·NJ, which fold_vecs keeps <= 32767.
// The weight vector of a plane is loaded once per j and each table once per plane (from L1):
// the Q planes' accumulators are one pair per row, so MB = 4 fits the registers.
template <int Q>
constexpr int fold_vecs() {  // the most row vectors an int16 fold of Q planes may span: 8, 16 or 32
  return Q == 4 ? 8 : (Q == 3 ? 16 : 32);
}
static_assert(15 * 254 * fold_vecs<4>() <= 32767 && 7 * 254 * fold_vecs<3>() <= 32767 &&
              3 * 254 * fold_vecs<2>() <= 32767 && 254 * fold_vecs<1>() <= 32767);

template <int MB, int Q, int NJ>
inline void lookup_fold(const uint8_t* w, int64_t wstride, const int8_t* tab, int64_t tstride, __m256i* lo,
                        __m256i* hi) {
  static_assert(NJ <= fold_vecs<Q>(), "int16 overflow");
  const __m256i nib = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int mm = 0; mm < MB; ++mm) {
    lo[mm] = _mm256_setzero_si256();
    hi[mm] = _mm256_setzero_si256();
  }
#pragma GCC unroll 32
  for (int j = 0; j < NJ; ++j) {
#pragma GCC unroll 4
    for (int i = 0; i < Q; ++i) {
      const uint8_t* wj = w + i * wstride + 32 * j;
      if (j % 2 == 0) prefetch_ahead(wj);
      const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(wj));
      const __m256i il = _mm256_and_si256(wv, nib);
      const __m256i ih = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
      const __m256i p2 = _mm256_set1_epi8(static_cast<char>(1 << i));
#pragma GCC unroll 4
      for (int mm = 0; mm < MB; ++mm) {
        const int8_t* t = tab + mm * tstride + 32 * j;
        const __m256i t0 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
        const __m256i t1 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t + 16)));
        const __m256i v0 = _mm256_shuffle_epi8(t0, il);
        const __m256i v1 = _mm256_shuffle_epi8(t1, ih);
        lo[mm] = _mm256_add_epi16(lo[mm], _mm256_maddubs_epi16(p2, _mm256_unpacklo_epi8(v0, v1)));
        hi[mm] = _mm256_add_epi16(hi[mm], _mm256_maddubs_epi16(p2, _mm256_unpackhi_epi8(v0, v1)));
        asm("" : "+x"(lo[mm]), "+x"(hi[mm]));  // running chains (see lookup_block)
      }
    }
  }
}

// int16 block sums -> int32, rows 8x .. 8x+7 in d[x]: the even / odd int16 lanes of lo and hi
// (vpmaddwd with 1 and 0, exact), in row order thanks to tile_slot.
// With `mult` (a power of two <= 8): the sums times mult, exactly.
inline void widen_i32(__m256i lo, __m256i hi, __m256i* d, int mult = 1) {
  const __m256i even = _mm256_set1_epi32(mult);
  const __m256i odd = _mm256_set1_epi32(mult << 16);
  d[0] = _mm256_madd_epi16(lo, even);
  d[1] = _mm256_madd_epi16(lo, odd);
  d[2] = _mm256_madd_epi16(hi, even);
  d[3] = _mm256_madd_epi16(hi, odd);
}

// fp32 running sums s[4*mm + x] (rows 8x..8x+7) over nj row vectors for MB activation rows, each
// row's lookups added strictly in chunk order. tab: entries 0..7 of the fp32 tables of the first
// activation row (16 floats per row vector); rows tstride floats apart.
// The exact layout stores each nibble p as p ^ (p & 8 ? 7 : 0) (avx2_repack.cc): bits 0..2 index
// entries 0..7 and bit 3 is the sign, since T[p] = −T[15 − p] exactly (every partial sum of the
// spec just changes sign). A negated +0 gives −0 where the spec has +0; the running sums start at
// +0, so that never shows.
template <int MB>
inline void lookup_f32(const uint8_t* w, int64_t nj, const float* tab, int64_t tstride, __m256* s) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  for (int64_t j = 0; j < nj; ++j) {
    if (j % 2 == 0) prefetch_ahead(w + 32 * j);
    const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32 * j));
    // One dword per row, its low byte the row's byte (higher bits are ignored below): rows
    // 0..7 = even slots of the low 8 bytes of each lane, 8..15 the odd ones, 16..31 likewise
    // from the high 8 bytes.
    __m256i u[4];
    u[0] = _mm256_unpacklo_epi8(wv, zero);
    u[2] = _mm256_unpackhi_epi8(wv, zero);
    u[1] = _mm256_srli_epi32(u[0], 16);
    u[3] = _mm256_srli_epi32(u[2], 16);
#pragma GCC unroll 4
    for (int x = 0; x < 4; ++x) {
      // vpermps reads index bits 0..2; bit 3 of each nibble, moved to bit 31, is the sign.
      const __m256i uh = _mm256_srli_epi32(u[x], 4);
      const __m256 sg_lo = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(u[x], 28), sign));
      const __m256 sg_hi = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(u[x], 24), sign));
#pragma GCC unroll 4
      for (int mm = 0; mm < MB; ++mm) {
        const float* t = tab + mm * tstride + 16 * j;
        const __m256 v0 = _mm256_xor_ps(_mm256_permutevar8x32_ps(_mm256_load_ps(t), u[x]), sg_lo);
        const __m256 v1 = _mm256_xor_ps(_mm256_permutevar8x32_ps(_mm256_load_ps(t + 8), uh), sg_hi);
        s[4 * mm + x] = _mm256_add_ps(_mm256_add_ps(s[4 * mm + x], v0), v1);
      }
    }
  }
}

// 32 fp16 (rows 0..31) -> 4 x 8 fp32.
inline void load_f16x32(const uint8_t* p, __m256* a) {
#pragma GCC unroll 4
  for (int x = 0; x < 4; ++x) a[x] = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(p + 16 * x)));
}

// The 32 alphas (rows 0..31) of plane i of the unit u at up: fp16 widened, or in the coded layout
// fp16(fp32(code · step)) (kernels/coded_scales.h), which is the decoded fp16 α exactly.
inline void load_alpha32(const Layout& L, const uint8_t* up, int64_t u, int i, __m256* a) {
  if (L.uniform) {  // α_0·2^i: exact in fp32, and the fp16 α_i (lut_uniform)
    load_f16x32(up + L.alpha_in_unit(0), a);
    const __m256 p2 = _mm256_set1_ps(static_cast<float>(1 << i));
#pragma GCC unroll 4
    for (int x = 0; x < 4; ++x) a[x] = _mm256_mul_ps(a[x], p2);
    return;
  }
  if (!L.coded) return load_f16x32(up + L.alpha_in_unit(i), a);
  const uint8_t* c = up + L.alpha_in_unit(i);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const __m256i d0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));       // rows 0..7 | 16..23
  const __m256i d1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(c + 32));  // rows 8..15 | 24..31
  __m256i code[4];  // rows 8x..8x+7: bytes 0, 1 (even plane) or 2, 3 (odd) of each dword
  if (i % 2 == 0) {
    code[0] = _mm256_and_si256(d0, byte);
    code[1] = _mm256_and_si256(d1, byte);
    code[2] = _mm256_and_si256(_mm256_srli_epi32(d0, 8), byte);
    code[3] = _mm256_and_si256(_mm256_srli_epi32(d1, 8), byte);
  } else {
    code[0] = _mm256_and_si256(_mm256_srli_epi32(d0, 16), byte);
    code[1] = _mm256_and_si256(_mm256_srli_epi32(d1, 16), byte);
    code[2] = _mm256_srli_epi32(d0, 24);
    code[3] = _mm256_srli_epi32(d1, 24);
  }
  const float* step = L.tile_steps(up, u) + i * kTileRows;
#pragma GCC unroll 4
  for (int x = 0; x < 4; ++x) {
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(code[x]), _mm256_load_ps(step + 8 * x));
    if (!L.round_alpha) {  // short super scales: code·step is the fp16 α already
      a[x] = v;
      continue;
    }
    // round_to_fp16_grid (coded_scales.h): the decoded fp16 α, without fp16 conversions.
    const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7F800000));
    const __m256 c = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_max_epu32(e, _mm256_set1_epi32(113 << 23)), _mm256_set1_epi32(13 << 23)));
    a[x] = _mm256_sub_ps(_mm256_add_ps(v, c), c);
  }
}

// Writes the tile's rows below n: y[mm*n + r0 + r] = acc[mm*32 + r].
inline void store_tile(const float* acc, int64_t m, int64_t n, int64_t r0, float* y) {
  const int64_t rows = std::min<int64_t>(kTileRows, n - r0);
  for (int64_t mm = 0; mm < m; ++mm) {
    const float* a = acc + mm * kTileRows;
    float* yr = y + mm * n + r0;
    if (rows == kTileRows) {
      for (int x = 0; x < 4; ++x) _mm256_storeu_ps(yr + 8 * x, _mm256_load_ps(a + 8 * x));
    } else {
      for (int64_t r = 0; r < rows; ++r) yr[r] = a[r];
    }
  }
}

// Stores the int32 block sums of one tile, plane i, block b: out[(r*q + i)*nb + b], rows < n.
inline void store_partials(const Layout& L, __m256i lo, __m256i hi, int64_t r0, int i, int64_t b, int32_t* out) {
  alignas(32) int32_t sums[kTileRows];
  __m256i d[4];
  widen_i32(lo, hi, d);
  for (int x = 0; x < 4; ++x) _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 8 * x), d[x]);
  const int64_t nb = L.k / L.kb;
  const int64_t rows = std::min<int64_t>(kTileRows, L.n - r0);
  for (int64_t r = 0; r < rows; ++r) out[((r0 + r) * L.q + i) * nb + b] = sums[r];
}

}  // namespace lutq::kernels::avx2

#pragma GCC pop_options
