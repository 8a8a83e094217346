// The AMX kernel of the int8 GEMM path (bcq_int8.h; docs/kernels.md "AMX"). Threads take pairs
// of 16-row weight tiles, as the AVX-512 kernel does; per group the pair's weights are expanded
// by the same code (bcq_int8_expand), whose quad order (16 rows x 4 columns per 64 bytes) is
// AMX's B-tile layout: 16 quads = one B tile of 64 k-columns for 16 output rows. Activations are
// A tiles of 16 rows x 64 bytes read in place (QuantizedActs pads its rows to a multiple of 16).
// TDPBSUD multiplies s8 activations by u8 weights (wq + 128) into int32 C tiles.
//
// Tiles: tmm0-3 are C[a][h] (activation block a of 16 rows, weight tile h), tmm4-5 the A tiles,
// tmm6-7 the B tiles; every tile is 16 rows x 64 bytes (one configuration per thread, loaded when
// it starts and released when it ends). Per group and 32 activation rows: 4 C tiles zeroed,
// g/64 steps of 2 A loads, 2 B loads and 4 TDPBSUD, then the C tiles are stored and each (row,
// output) gets I = C + (−128·Σ xq) and y = fma(float(I), s_w·s_x, y), accumulated in y itself
// (zeroed first): the scalar spec's integers and float operations in its order, so the outputs
// equal bcq_int8_gemm_ref bit for bit.
//
// Blocking: the activations of all m rows are swept in chunks of columns (whole groups, about
// kAmxChunkBytes of xq) and each thread runs all its tile pairs over one chunk before the next,
// so the chunk stays in L2 while every pair reads it. Without it every pair streamed all of xq
// (m·k bytes) from L3: at m = 128, k = 14336 that was 0.8 GB per call and the kernel ran at the
// L3's pace, barely ahead of the VNNI kernel.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // _mm512_undefined_ps in GCC 12's intrinsics
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "kernels/int8/bcq_int8.h"
#include "kernels/int8/bcq_int8_expand.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,amx-tile,amx-int8")

namespace lutq::kernels {
namespace {

constexpr int64_t kStepBytes = 64;  // k columns per TDPBSUD (one A-tile row)
constexpr int64_t kBTileBytes = 16 * 64;  // 16 quads
constexpr int kBlockRows = 32;  // activation rows per pass: two A tiles

// The LDTILECFG operand (palette 1): bytes per row and rows of each of the 16 tile registers.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  return c;
}

// One group of up to 2 weight tiles (H) x up to 32 activation rows (A tiles of 16).
struct BlockArgs {
  const int8_t* wexp[2];  // expanded weights of each tile, g/4 quads x 64 bytes
  const float* ws[2];  // s_w of each tile's 16 rows
  __mmask16 cols[2];  // each tile's outputs that exist (n need not be a multiple of 16)
  const int8_t* xq;  // first activation row, at the group's first column
  int64_t x_stride;
  const float* sx;  // s_x of the first row's group; rows sx_stride apart (as corr)
  const int32_t* corr;
  int64_t sx_stride;
  int64_t steps;  // g / 64
  int rows;  // activation rows that are real (1..32); the tiles' other rows are padding
  float* y;  // output of the first row and the pair's first column; rows y_stride apart
  int64_t y_stride;
  int32_t* cbuf;  // [4][16][16] C tiles as stored
};

template <int A, int H>
void multiply(const BlockArgs& b) {
  _tile_zero(0);
  if constexpr (H == 2) _tile_zero(1);
  if constexpr (A == 2) _tile_zero(2);
  if constexpr (A == 2 && H == 2) _tile_zero(3);
  for (int64_t s = 0; s < b.steps; ++s) {
    _tile_loadd(4, b.xq + s * kStepBytes, b.x_stride);
    _tile_loadd(6, b.wexp[0] + s * kBTileBytes, 64);
    if constexpr (H == 2) _tile_loadd(7, b.wexp[1] + s * kBTileBytes, 64);
    _tile_dpbsud(0, 4, 6);
    if constexpr (H == 2) _tile_dpbsud(1, 4, 7);
    if constexpr (A == 2) {
      _tile_loadd(5, b.xq + 16 * b.x_stride + s * kStepBytes, b.x_stride);
      _tile_dpbsud(2, 5, 6);
      if constexpr (H == 2) _tile_dpbsud(3, 5, 7);
    }
  }
  _tile_stored(0, b.cbuf, 64);
  if constexpr (H == 2) _tile_stored(1, b.cbuf + 256, 64);
  if constexpr (A == 2) _tile_stored(2, b.cbuf + 512, 64);
  if constexpr (A == 2 && H == 2) _tile_stored(3, b.cbuf + 768, 64);
}

// y[t][r] = fma(float(C + corr), s_w·s_x, y[t][r]) for the real rows and outputs.
template <int H>
void accumulate(const BlockArgs& b) {
  for (int t = 0; t < b.rows; ++t) {
    const int32_t* c = b.cbuf + (t / 16) * 512 + (t % 16) * 16;
    const __m512i corr = _mm512_set1_epi32(b.corr[t * b.sx_stride]);
    const __m512 sx = _mm512_set1_ps(b.sx[t * b.sx_stride]);
    for (int h = 0; h < H; ++h) {
      const __m512i isum = _mm512_add_epi32(_mm512_loadu_si512(c + h * 256), corr);
      const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(b.ws[h]), sx);
      float* f = b.y + t * b.y_stride + h * 16;
      const __m512 acc = _mm512_maskz_loadu_ps(b.cols[h], f);
      _mm512_mask_storeu_ps(f, b.cols[h], _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc));
    }
  }
}

template <int H>
void block(const BlockArgs& b) {
  if (b.rows > 16) {
    multiply<2, H>(b);
  } else {
    multiply<1, H>(b);
  }
  accumulate<H>(b);
}

__mmask16 columns(int64_t n, int64_t r0) {
  const int64_t c = std::clamp<int64_t>(n - r0, 0, 16);
  return static_cast<__mmask16>((1u << c) - 1);
}

// Groups [j0, j1) of tiles [tile0, tile0 + h) for all activation rows, into y.
void pair_groups(const BcqInt8Packed& w, const QuantizedActs& xa, int64_t tile0, int h, int64_t j0, int64_t j1,
                 int8_t* scratch, int32_t* cbuf, float* y) {
  const int64_t r0 = tile0 * kInt8TileRows;
  BlockArgs b{};
  b.x_stride = xa.stride;
  b.sx_stride = w.groups;
  b.steps = w.g / kStepBytes;
  b.y_stride = w.n;
  b.cbuf = cbuf;
  for (int e = 0; e < h; ++e) b.cols[e] = columns(w.n, r0 + e * kInt8TileRows);
  for (int64_t j = j0; j < j1; ++j) {
    bcq_int8_expand_tiles(w, tile0, h, j, scratch, b.wexp, b.ws);
    for (int64_t t0 = 0; t0 < xa.m; t0 += kBlockRows) {
      b.rows = static_cast<int>(std::min<int64_t>(kBlockRows, xa.m - t0));
      b.xq = xa.xq.data() + t0 * xa.stride + j * w.g;
      b.sx = xa.sx.data() + t0 * w.groups + j;
      b.corr = xa.corr.data() + t0 * w.groups + j;
      b.y = y + t0 * w.n + r0;
      if (h == 2) {
        block<2>(b);
      } else {
        block<1>(b);
      }
    }
  }
}

}  // namespace

void bcq_int8_gemm_amx(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool,
                       int64_t chunk_bytes) {
  const int64_t pairs = (w.tiles + 1) / 2;
  const int64_t chunk = std::max<int64_t>(1, chunk_bytes / std::max<int64_t>(1, xa.m * w.g));
  pool.parallel_for(pairs, 1, [&](int64_t p0, int64_t p1) {
    const int64_t c0 = 2 * p0 * kInt8TileRows, c1 = std::min(w.n, 2 * p1 * kInt8TileRows);
    for (int64_t t = 0; t < xa.m; ++t) std::fill(y + t * w.n + c0, y + t * w.n + c1, 0.0f);
    const TileConfig config = tile_config();
    _tile_loadconfig(&config);
    AlignedBuffer scratch(static_cast<size_t>(2 * (w.g / 4) * 64));
    AlignedBuffer cbuf(static_cast<size_t>(4 * 256) * sizeof(int32_t));
    for (int64_t j0 = 0; j0 < w.groups; j0 += chunk) {
      for (int64_t p = p0; p < p1; ++p) {
        const int h = static_cast<int>(std::min<int64_t>(2, w.tiles - 2 * p));
        pair_groups(w, xa, 2 * p, h, j0, std::min(w.groups, j0 + chunk), scratch.as<int8_t>(), cbuf.as<int32_t>(), y);
      }
    }
    _tile_release();
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
