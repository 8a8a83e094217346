// The AVX-512 VNNI kernel of the byte-code path (bcq_bytes.h). Threads take blocks of up to 4
// 16-row tiles; per group, every block of up to 4 activation rows runs the group's quads with
// one accumulator per (row, tile): per quad, 4 zmm loads of 64 codes (16 rows x 4 columns) and
// vpdpbusd with the 4 activation bytes as an embedded {1to16} broadcast. A block's group (4 x 16
// rows x g bytes) stays in L1 for the next activation rows, so DRAM sees each code once per call.
//
// Float order: the scalar spec's (v = A·float(I); v = fma(B, float(S), v); acc = fma(v, s_x, acc)
// per group in order), so the outputs equal bcq_bytes_gemm_ref bit for bit.
// GCC 12's _mm512_cvtepi32_ps reads an undefined vector (a false positive, as in bcq_int8_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cstdint>
#include <vector>

#include <immintrin.h>

#include "kernels/bytes/bcq_bytes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")

namespace lutq::kernels {
namespace {

constexpr int kMaxRows = 4;  // activation rows per pass
constexpr int kMaxTiles = 4;  // tiles per thread block

// acc += u8 w · s8 (4 bytes at x, broadcast): inline asm so GCC keeps the accumulators in place
// (as in bcq_int8_avx512.cc).
inline void dpbusd_bcast(__m512i& acc, __m512i w, const int8_t* x) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
}

struct GroupArgs {
  const uint8_t* codes[kMaxTiles];  // each tile's first quad of the group
  const float* sc[kMaxTiles];  // each tile's 32 scales (A, then B) of the group
  const int8_t* xq;  // first activation row at the group's first column
  int64_t x_stride;
  const float* sx;  // first row's s_x of the group; stride s_stride (as corr)
  const int32_t* corr;
  int64_t s_stride;
  int64_t quads;
  float* facc;  // [rows][kMaxTiles * 16]
};

template <int MR, int H>
void group_block(const GroupArgs& a) {
  __m512i acc[MR][H];
#pragma GCC unroll 16
  for (int t = 0; t < MR; ++t) {
    for (int h = 0; h < H; ++h) acc[t][h] = _mm512_setzero_si512();
  }
  for (int64_t d = 0; d < a.quads; ++d) {
    __m512i w[H];
    for (int h = 0; h < H; ++h) w[h] = _mm512_load_si512(a.codes[h] + d * 64);
#pragma GCC unroll 16
    for (int t = 0; t < MR; ++t) {
      for (int h = 0; h < H; ++h) dpbusd_bcast(acc[t][h], w[h], a.xq + t * a.x_stride + d * 4);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MR; ++t) {
    const __m512 sx = _mm512_set1_ps(a.sx[t * a.s_stride]);
    const __m512 s = _mm512_set1_ps(static_cast<float>(a.corr[t * a.s_stride] / -128));
    for (int h = 0; h < H; ++h) {
      __m512 v = _mm512_mul_ps(_mm512_loadu_ps(a.sc[h]), _mm512_cvtepi32_ps(acc[t][h]));
      v = _mm512_fmadd_ps(_mm512_loadu_ps(a.sc[h] + kBytesTileRows), s, v);
      float* f = a.facc + t * kMaxTiles * kBytesTileRows + h * kBytesTileRows;
      _mm512_storeu_ps(f, _mm512_fmadd_ps(v, sx, _mm512_loadu_ps(f)));
    }
  }
}

template <int H>
void run_rows(int mr, const GroupArgs& a) {
  switch (mr) {
    case 1: group_block<1, H>(a); break;
    case 2: group_block<2, H>(a); break;
    case 3: group_block<3, H>(a); break;
    default: group_block<4, H>(a); break;
  }
}

void run_block(int h, int mr, const GroupArgs& a) {
  switch (h) {
    case 1: run_rows<1>(mr, a); break;
    case 2: run_rows<2>(mr, a); break;
    case 3: run_rows<3>(mr, a); break;
    default: run_rows<4>(mr, a); break;
  }
}

// Tiles [tile0, tile0 + h) for all activation rows.
void tile_block(const BcqBytesPacked& w, const QuantizedActs& xa, int64_t tile0, int h, float* facc, float* y) {
  const int64_t quads = w.g / 4, m = xa.m, width = kMaxTiles * kBytesTileRows;
  std::fill(facc, facc + m * width, 0.0f);
  for (int64_t j = 0; j < w.groups; ++j) {
    GroupArgs a{};
    for (int e = 0; e < h; ++e) {
      const int64_t tile = tile0 + e;
      a.codes[e] = w.codes.data() + (tile * (w.k / 4) + j * quads) * 64;
      a.sc[e] = w.scales.data() + (tile * w.groups + j) * 2 * kBytesTileRows;
    }
    a.x_stride = xa.stride;
    a.s_stride = w.groups;
    a.quads = quads;
    for (int64_t t0 = 0; t0 < m; t0 += kMaxRows) {
      const int mr = static_cast<int>(std::min<int64_t>(kMaxRows, m - t0));
      a.xq = xa.xq.data() + t0 * xa.stride + j * w.g;
      a.sx = xa.sx.data() + t0 * w.groups + j;
      a.corr = xa.corr.data() + t0 * w.groups + j;
      a.facc = facc + t0 * width;
      run_block(h, mr, a);
    }
  }
  const int64_t r0 = tile0 * kBytesTileRows, rows = std::min<int64_t>(h * kBytesTileRows, w.n - r0);
  for (int64_t t = 0; t < m; ++t) std::copy(facc + t * width, facc + t * width + rows, y + t * w.n + r0);
}

}  // namespace

void bcq_bytes_gemm_avx512(const BcqBytesPacked& w, const QuantizedActs& xa, float* y, ThreadPool& pool) {
  const int64_t blocks = (w.tiles + kMaxTiles - 1) / kMaxTiles;
  pool.parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> facc(static_cast<size_t>(xa.m * kMaxTiles * kBytesTileRows));
    for (int64_t b = b0; b < b1; ++b) {
      const int h = static_cast<int>(std::min<int64_t>(kMaxTiles, w.tiles - kMaxTiles * b));
      tile_block(w, xa, kMaxTiles * b, h, facc.data(), y);
    }
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
