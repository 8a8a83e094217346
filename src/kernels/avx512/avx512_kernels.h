// The AVX-512 inner loops, shared by the per-OC and per-IC drivers (avx512_gemm_oc.cc,
// avx512_gemm_ic.cc). Needs F/BW/VL/DQ + VBMI (vpermb) + VNNI (vpdpbusd). This header wraps its
// own code in that target, after its includes.
//
// Fast path (int8 tables), one 16-row group vector w (the step's dword of 16 rows, 8 chunks each):
//   bytes b = 0..3 of a dword hold chunks 2b (low nibble) and 2b+1 (high nibble). The step's
//   int8 tables are two 64-byte vectors, [T_0 T_2 T_4 T_6] and [T_1 T_3 T_5 T_7] (avx512_tables.cc),
//   so the index of byte b is its nibble + 16·b: one vpternlogd per nibble set computes
//   (nibble & 15) | (16·b), one vpermb per set looks up 64 entries, and vpdpbusd with all-ones
//   u8 adds the four entries of each row into its int32 lane: a row's 8 lookups of the step in
//   2 instructions, exactly (integers, no int16 stage to overflow). Low and high nibbles go to
//   separate accumulators (two dependency chains), added at the block end.
// Exact path (fp32 tables): the 16 entries of a chunk's table are one vector; vpermps reads the
//   low 4 bits of each dword, so chunk t of the step is looked up with index (w >> 4t): per row
//   the 8 lookups are added in chunk order, as the reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <immintrin.h>

#include "kernels/avx512/avx512_internal.h"
#include "kernels/kernel.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vnni,fma,f16c,bmi2")

namespace lutq::kernels::avx512 {

constexpr int kFastRows = 4;   // activation rows per pass over a weight vector (fast path)
constexpr int kExactRows = 2;  // same for the exact path
constexpr int64_t kPrefetchAhead = 4096;  // bytes of weight stream prefetched ahead

// Calls f(std::integral_constant<int, NS>{}) with NS = ns, the steps of one int8 table block
// (kb / 32: 1, 2, 4 or 8), so the block loop can be unrolled completely.
template <typename F>
void with_block_steps(int64_t ns, F&& f) {
  switch (ns) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// Asks for the cache line kPrefetchAhead bytes past p in the weight stream, into L1; called once
// per 64-byte vector loaded. Measured on Zen 4 (4096x4096 q=4 m=1 from DRAM, 1 thread): on 4 KiB
// pages the AVX2 backend's choice (L2 hint, 8 KiB ahead) made this kernel 1.7x slower than no
// prefetch at all, the L1 hint at 2-8 KiB ~15% faster than none (4 KiB best); on huge pages
// (AlignedBuffer) the two hints are within 10%, T0 4 KiB still ahead.
inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchAhead, _MM_HINT_T0);
}

// int32 block sums over the NS steps of one table block, for QB planes (plane steps wstride
// bytes apart) times MB activation rows (tables tstride bytes apart): sums[(qi*MB + mm)*2 + h]
// holds rows 16h .. 16h+15 of the tile. Each table load serves QB planes x 2 row groups.
template <int MB, int QB, int NS>
inline void lookup_block(const uint8_t* w, int64_t wstride, const int8_t* tab, int64_t tstride, __m512i* sums) {
  constexpr int kAcc = QB * MB * 2;
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const __m512i pos = _mm512_set1_epi32(0x30201000);  // 16·b in byte b of each dword
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i alo[kAcc], ahi[kAcc];
#pragma GCC unroll 16
  for (int e = 0; e < kAcc; ++e) {
    alo[e] = _mm512_setzero_si512();
    ahi[e] = _mm512_setzero_si512();
  }
#pragma GCC unroll 8
  for (int s = 0; s < NS; ++s) {
    __m512i il[QB * 2], ih[QB * 2];
#pragma GCC unroll 8
    for (int v = 0; v < QB * 2; ++v) {
      const uint8_t* wv = w + (v / 2) * wstride + s * kStepBytes + (v % 2) * 64;
      prefetch_ahead(wv);
      const __m512i x = _mm512_load_si512(wv);
      il[v] = _mm512_ternarylogic_epi32(x, nib, pos, 0xEA);  // (x & nib) | pos
      ih[v] = _mm512_ternarylogic_epi32(_mm512_srli_epi32(x, 4), nib, pos, 0xEA);
    }
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const int8_t* t = tab + mm * tstride + s * kStepBytes;
      const __m512i tl = _mm512_load_si512(t);
      const __m512i th = _mm512_load_si512(t + 64);
#pragma GCC unroll 8
      for (int v = 0; v < QB * 2; ++v) {
        const int e = ((v / 2) * MB + mm) * 2 + v % 2;
        alo[e] = _mm512_dpbusd_epi32(alo[e], ones, _mm512_permutexvar_epi8(il[v], tl));
        ahi[e] = _mm512_dpbusd_epi32(ahi[e], ones, _mm512_permutexvar_epi8(ih[v], th));
      }
    }
  }
#pragma GCC unroll 16
  for (int e = 0; e < kAcc; ++e) sums[e] = _mm512_add_epi32(alo[e], ahi[e]);
}

// fp32 running sums s[(qi*MB + mm)*2 + h] (rows 16h..16h+15) over `steps` steps for QB planes
// and MB activation rows, each row's lookups added strictly in chunk order. tab: the fp32 tables
// of the first activation row (16 floats per chunk); rows tstride floats apart.
template <int MB, int QB>
inline void lookup_f32(const uint8_t* w, int64_t wstride, int64_t steps, const float* tab, int64_t tstride,
                       __m512* s) {
  for (int64_t st = 0; st < steps; ++st) {
    __m512i wv[QB * 2];
#pragma GCC unroll 8
    for (int v = 0; v < QB * 2; ++v) {
      const uint8_t* p = w + (v / 2) * wstride + st * kStepBytes + (v % 2) * 64;
      prefetch_ahead(p);
      wv[v] = _mm512_load_si512(p);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m512i idx[QB * 2];
#pragma GCC unroll 8
      for (int v = 0; v < QB * 2; ++v) idx[v] = _mm512_srli_epi32(wv[v], 4 * c);
#pragma GCC unroll 4
      for (int mm = 0; mm < MB; ++mm) {
        const __m512 t = _mm512_load_ps(tab + mm * tstride + (st * 8 + c) * kFullTable);
#pragma GCC unroll 8
        for (int v = 0; v < QB * 2; ++v) {
          const int e = ((v / 2) * MB + mm) * 2 + v % 2;
          s[e] = _mm512_add_ps(s[e], _mm512_permutexvar_ps(idx[v], t));
        }
      }
    }
  }
}

// 32 fp16 (rows 0..31) -> 2 x 16 fp32.
inline void load_f16x32(const uint8_t* p, __m512* a) {
  a[0] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
  a[1] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32)));
}

// The 32 alphas (rows 0..31) of plane i of the unit u at up: fp16 widened, or in the coded layout
// fp16(fp32(code · step)) (kernels/coded_scales.h), which is the decoded fp16 α exactly. Measured
// (4096x4096 q4 g64 m = 1, hot, Xeon): rounding (vcvtps2ph + vcvtph2ps, or the magic constant:
// the same) made the coded layout ~14 % slower than fp16 alphas, no rounding ~3 %; the encoders
// choose short super scales (format::short_super) so that the rounding is skipped.
inline void load_alpha32(const Layout& L, const uint8_t* up, int64_t u, int i, __m512* a) {
  if (!L.coded) return load_f16x32(up + L.alpha_in_unit(i), a);
  const __m512i c = _mm512_load_si512(up + L.alpha_in_unit(i));
  const __m512i byte = _mm512_set1_epi32(0xFF);
  __m512i code[2];  // rows 0..15, 16..31: bytes 0, 1 (even plane) or 2, 3 (odd) of each dword
  if (i % 2 == 0) {
    code[0] = _mm512_and_si512(c, byte);
    code[1] = _mm512_and_si512(_mm512_srli_epi32(c, 8), byte);
  } else {
    code[0] = _mm512_and_si512(_mm512_srli_epi32(c, 16), byte);
    code[1] = _mm512_srli_epi32(c, 24);
  }
  const float* step = L.tile_steps(up, u) + i * kTileRows;
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(code[h]), _mm512_load_ps(step + 16 * h));
    if (!L.round_alpha) {  // short super scales: code·step is the fp16 α already
      a[h] = v;
      continue;
    }
    // round_to_fp16_grid (coded_scales.h): the decoded fp16 α, without fp16 conversions.
    const __m512i e = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7F800000));
    const __m512 c = _mm512_castsi512_ps(
        _mm512_add_epi32(_mm512_max_epu32(e, _mm512_set1_epi32(113 << 23)), _mm512_set1_epi32(13 << 23)));
    a[h] = _mm512_sub_ps(_mm512_add_ps(v, c), c);
  }
}

// Writes the tile's rows below n: y[mm*n + r0 + r] = acc[mm*32 + r].
inline void store_tile(const float* acc, int64_t m, int64_t n, int64_t r0, float* y) {
  const int64_t rows = std::min<int64_t>(kTileRows, n - r0);
  for (int64_t mm = 0; mm < m; ++mm) {
    const float* a = acc + mm * kTileRows;
    float* yr = y + mm * n + r0;
    if (rows == kTileRows) {
      _mm512_storeu_ps(yr, _mm512_load_ps(a));
      _mm512_storeu_ps(yr + 16, _mm512_load_ps(a + 16));
    } else {
      for (int64_t r = 0; r < rows; ++r) yr[r] = a[r];
    }
  }
}

// Stores the int32 block sums of one tile (rows 0..15 in d[0], 16..31 in d[1]), plane i,
// block b: out[(r*q + i)*nb + b], rows < n.
inline void store_partials(const Layout& L, const __m512i* d, int64_t r0, int i, int64_t b, int32_t* out) {
  alignas(64) int32_t sums[kTileRows];
  _mm512_store_si512(sums, d[0]);
  _mm512_store_si512(sums + 16, d[1]);
  const int64_t nb = L.k / L.kb;
  const int64_t rows = std::min<int64_t>(kTileRows, L.n - r0);
  for (int64_t r = 0; r < rows; ++r) out[((r0 + r) * L.q + i) * nb + b] = sums[r];
}

}  // namespace lutq::kernels::avx512

#pragma GCC pop_options
