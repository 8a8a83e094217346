// The AMX kernel of the int8 GEMM path (bcq_int8.h; docs/kernels.md "AMX"). The weights are the
// A tiles (16 output rows x 64 columns, u8 wq + 128) and the activations the B tiles (16 quads
// of columns x 16 activation rows x 4 bytes, s8), so TDPBUSD yields C = 16 outputs x 16
// activation rows.
//
// Why this way round: the expansion of the weights to int8 sets the time at small m and a good
// part of it at large m. As B tiles the weights must be in quad order (16 rows x 4 columns per
// vector), and every vector then needs the level tables of 16 rows (two vpermi2b and a blend at
// q = 4, after an 8x8 bit transpose of the planes: the AVX-512 kernel's expansion, which the
// first AMX kernel shared). As A tiles one vector is 64 columns of one row: its codes are 32
// bytes of nibbles (16 of 2-bit codes at q <= 2) in row_codes, split by one shift, and its level
// table is that row's levels repeated, so one vpermb expands 64 weights.
//
// Per tile pair and group: both tiles expanded into scratch (g/64 A tiles each); for each pair
// of 16-row activation blocks and each 64-column step 2 A loads, a B load and 2 TDPBUSD per
// block into tmm0-3 = C[tile][block]; then each C row (one output, 16 activation rows) gets
// I = C + (−128·Σ xq) and facc = fma(float(I), s_w·s_x, facc), facc [32 outputs][m rounded up
// to 16] per pair, written to y transposed at the end: the scalar spec's integers and float
// operations in its order, so the outputs equal bcq_int8_gemm_ref bit for bit. The next group's
// expansion is issued between the first block pair's TDPBUSDs and their tile stores
// (double-buffered scratch).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // _mm512_undefined_* in GCC 12's intrinsics
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <immintrin.h>

#include "kernels/int8/bcq_int8.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,fma,amx-tile,amx-int8")

namespace lutq::kernels {
namespace {

constexpr int64_t kStep = 64;  // columns per TDPBUSD
constexpr int64_t kTileBytes = 16 * 64;
constexpr int64_t kRowsPerBlock = 16;  // activation rows per B tile
constexpr int64_t kFaccRows = 2 * kInt8TileRows;  // outputs of a pair

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The activations as B tiles, and their per-group corrections and scales by block.
struct BlockActs {
  int64_t blocks = 0, steps = 0;  // ceil(m / 16), k / 64
  AlignedBuffer tiles;  // [block][step][quad 16][row 16][4]
  std::vector<int32_t> corr;  // [block][group][16]: −128·Σ xq (0 past m)
  std::vector<float> sx;  // [block][group][16] (0 past m)
};

BlockActs block_acts(const QuantizedActs& xa, int64_t groups) {
  BlockActs a;
  a.blocks = (xa.m + kRowsPerBlock - 1) / kRowsPerBlock;
  a.steps = xa.k / kStep;
  a.tiles = AlignedBuffer(static_cast<size_t>(a.blocks * a.steps * kTileBytes));
  a.corr.assign(static_cast<size_t>(a.blocks * groups * kRowsPerBlock), 0);
  a.sx.assign(a.corr.size(), 0.0f);
  for (int64_t b = 0; b < a.blocks; ++b) {
    for (int64_t t = 0; t < kRowsPerBlock; ++t) {
      const int64_t row = b * kRowsPerBlock + t;  // xq holds zero rows up to a multiple of 16
      const int8_t* x = xa.xq.data() + row * xa.stride;
      for (int64_t s = 0; s < a.steps; ++s) {
        uint8_t* tile = a.tiles.data() + (b * a.steps + s) * kTileBytes + t * 4;
        for (int64_t d = 0; d < 16; ++d) std::memcpy(tile + d * 64, x + s * kStep + d * 4, 4);
      }
      if (row >= xa.m) continue;
      for (int64_t j = 0; j < groups; ++j) {
        const size_t at = static_cast<size_t>((b * groups + j) * kRowsPerBlock + t);
        a.corr[at] = xa.corr[static_cast<size_t>(row * groups + j)];
        a.sx[at] = xa.sx[static_cast<size_t>(row * groups + j)];
      }
    }
  }
  return a;
}

// The 16 rows of `tile` in group j as g/64 A tiles at out: row r of step s at out[(s·16 + r)·64].
// Q >= 3: 32 bytes of nibbles per 64 columns, both halves from one broadcast, the upper one
// shifted by 4. Q <= 2: 16 bytes of 2-bit codes per 64 columns in every 128-bit lane, lane l
// shifted by 2l. Either way the index's low bits are the code and the bits above it (up to bit
// 5: vpermb reads bits 0-5) are other codes' bits: the table repeats the row's levels every 2^b
// bytes (b = 4 or 2 bits per code), so they only pick one of the equal copies.
template <int Q>
void expand_rows(const BcqInt8Packed& w, int64_t tile, int64_t j, int8_t* out) {
  constexpr int64_t kPerByte = Q <= 2 ? 4 : 2, kSpan = 64 / kPerByte;
  const int64_t steps = w.g / kStep, row_bytes = w.g / kPerByte;
  const __mmask32 upper = 0xFFFF0000u;  // nibbles: bytes 32..63 take the high nibbles
  const __m512i lane_shift = _mm512_set_epi64(0x0006000600060006, 0x0006000600060006, 0x0004000400040004,
                                              0x0004000400040004, 0x0002000200020002, 0x0002000200020002, 0, 0);
  const uint8_t* lut = w.luts.data() + (tile * w.groups + j) * w.lut_bytes;
  const uint8_t* codes = w.row_codes.data() + (tile * w.groups + j) * kInt8TileRows * row_bytes;
  for (int64_t r = 0; r < kInt8TileRows; ++r, codes += row_bytes) {
    __m512i table;
    if constexpr (Q <= 2) {
      int32_t levels = 0;  // 2^Q levels; at Q = 1 the upper two bytes are never read
      std::memcpy(&levels, lut + (r << Q), 4);
      table = _mm512_set1_epi32(levels);
    } else {
      table = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + (r << Q))));
    }
    for (int64_t s = 0; s < steps; ++s) {
      __m512i c;
      if constexpr (Q <= 2) {
        const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + s * kSpan)));
        c = _mm512_srlv_epi16(x, lane_shift);
      } else {
        const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + s * kSpan)));
        c = _mm512_mask_srli_epi16(x, upper, x, 4);
      }
      _mm512_store_si512(out + (s * kInt8TileRows + r) * 64, _mm512_permutexvar_epi8(c, table));
    }
  }
}

void expand_tile(const BcqInt8Packed& w, int64_t tile, int64_t j, int8_t* out) {
  switch (w.q) {
    case 1: expand_rows<1>(w, tile, j, out); break;
    case 2: expand_rows<2>(w, tile, j, out); break;
    case 3: expand_rows<3>(w, tile, j, out); break;
    default: expand_rows<4>(w, tile, j, out); break;
  }
}

// C[e][b] (tmm e + 2b) = Σ over the group's steps of A_e · B_b, left in the tiles.
template <int H, int B>
void multiply(const int8_t* const wexp[2], const uint8_t* const xb[2], int64_t steps) {
  _tile_zero(0);
  if constexpr (H == 2) _tile_zero(1);
  if constexpr (B == 2) _tile_zero(2);
  if constexpr (H == 2 && B == 2) _tile_zero(3);
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, wexp[0] + s * kTileBytes, 64);
    if constexpr (H == 2) _tile_loadd(5, wexp[1] + s * kTileBytes, 64);
    _tile_loadd(6, xb[0] + s * kTileBytes, 64);
    _tile_dpbusd(0, 4, 6);
    if constexpr (H == 2) _tile_dpbusd(1, 5, 6);
    if constexpr (B == 2) {
      _tile_loadd(7, xb[1] + s * kTileBytes, 64);
      _tile_dpbusd(2, 4, 7);
      if constexpr (H == 2) _tile_dpbusd(3, 5, 7);
    }
  }
}

// The C tiles to cbuf[e + 2b][16][16].
template <int H, int B>
void store_c(int32_t* cbuf) {
  _tile_stored(0, cbuf, 64);
  if constexpr (H == 2) _tile_stored(1, cbuf + 256, 64);
  if constexpr (B == 2) _tile_stored(2, cbuf + 512, 64);
  if constexpr (H == 2 && B == 2) _tile_stored(3, cbuf + 768, 64);
}

void run_multiply(int h, int64_t blocks, const int8_t* const wexp[2], const uint8_t* const xb[2], int64_t steps) {
  if (h == 2) {
    blocks == 2 ? multiply<2, 2>(wexp, xb, steps) : multiply<2, 1>(wexp, xb, steps);
  } else {
    blocks == 2 ? multiply<1, 2>(wexp, xb, steps) : multiply<1, 1>(wexp, xb, steps);
  }
}

void run_store(int h, int64_t blocks, int32_t* cbuf) {
  if (h == 2) {
    blocks == 2 ? store_c<2, 2>(cbuf) : store_c<2, 1>(cbuf);
  } else {
    blocks == 2 ? store_c<1, 2>(cbuf) : store_c<1, 1>(cbuf);
  }
}

// Activation rows [16·b0, 16·b0 + 32) of group j: their B tiles, corrections and scales.
struct BlockPair {
  int64_t blocks = 0;  // 1 or 2
  const uint8_t* xb[2] = {nullptr, nullptr};
  const int32_t* corr[2] = {nullptr, nullptr};
  const float* sx[2] = {nullptr, nullptr};
};

BlockPair block_pair(const BcqInt8Packed& w, const BlockActs& acts, int64_t b0, int64_t j) {
  BlockPair p;
  p.blocks = std::min<int64_t>(2, acts.blocks - b0);
  for (int64_t e = 0; e < p.blocks; ++e) {
    const int64_t b = b0 + e;
    p.xb[e] = acts.tiles.data() + (b * acts.steps + j * (w.g / kStep)) * kTileBytes;
    p.corr[e] = acts.corr.data() + (b * w.groups + j) * kRowsPerBlock;
    p.sx[e] = acts.sx.data() + (b * w.groups + j) * kRowsPerBlock;
  }
  return p;
}

// facc[e·16 + r][16b + t] (rows `stride` apart) = fma(float(C[e][b][r][t] + corr), s_w[e][r]·s_x[b][t], facc).
void accumulate(int h, const BlockPair& bp, const int32_t* cbuf, const float* const ws[2], float* facc,
                int64_t stride) {
  for (int64_t b = 0; b < bp.blocks; ++b) {
    const __m512i cv = _mm512_loadu_si512(bp.corr[b]);
    const __m512 sv = _mm512_loadu_ps(bp.sx[b]);
    for (int e = 0; e < h; ++e) {
      const int32_t* c = cbuf + (e + 2 * b) * 256;
      for (int64_t r = 0; r < kInt8TileRows; ++r) {
        const __m512i isum = _mm512_add_epi32(_mm512_loadu_si512(c + r * 16), cv);
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(ws[e][r]), sv);
        float* f = facc + (e * kInt8TileRows + r) * stride + b * kRowsPerBlock;
        _mm512_storeu_ps(f, _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, _mm512_loadu_ps(f)));
      }
    }
  }
}

struct PairScratch {
  int8_t* wexp;  // 2 buffers x 2 tiles x g/64 A tiles
  int32_t* cbuf;  // 4 C tiles
  float* facc;  // [32 outputs][stride]
  int64_t stride;  // activation rows rounded up to 16
};

// Group j of tiles [tile0, tile0 + h) expanded into buffer `buf`; returns its s_w pointers.
void expand_group(const BcqInt8Packed& w, int64_t tile0, int h, int64_t j, int8_t* buf, const float* ws[2]) {
  const int64_t steps = w.g / kStep;
  for (int e = 0; e < h; ++e) {
    expand_tile(w, tile0 + e, j, buf + e * steps * kTileBytes);
    ws[e] = w.ws.data() + ((tile0 + e) * w.groups + j) * kInt8TileRows;
  }
}

// Tiles [tile0, tile0 + h) for all activation rows into y. Software-pipelined: while the tiles
// multiply group j (its first block pair), the vector units expand group j + 1 into the other
// buffer.
void tile_pair(const BcqInt8Packed& w, const BlockActs& acts, int64_t m, int64_t tile0, int h, const PairScratch& s,
               float* y) {
  const int64_t steps = w.g / kStep, buf_bytes = 2 * steps * kTileBytes;
  std::fill(s.facc, s.facc + kFaccRows * s.stride, 0.0f);
  const float* ws[2][2] = {{nullptr, nullptr}, {nullptr, nullptr}};
  expand_group(w, tile0, h, 0, s.wexp, ws[0]);
  for (int64_t j = 0; j < w.groups; ++j) {
    const int8_t* buf = s.wexp + (j % 2) * buf_bytes;
    const int8_t* wexp[2] = {buf, buf + steps * kTileBytes};
    for (int64_t b0 = 0; b0 < acts.blocks; b0 += 2) {
      const BlockPair bp = block_pair(w, acts, b0, j);
      run_multiply(h, bp.blocks, wexp, bp.xb, steps);
      if (b0 == 0 && j + 1 < w.groups) {
        expand_group(w, tile0, h, j + 1, s.wexp + ((j + 1) % 2) * buf_bytes, ws[(j + 1) % 2]);
      }
      run_store(h, bp.blocks, s.cbuf);
      accumulate(h, bp, s.cbuf, ws[j % 2], s.facc + b0 * kRowsPerBlock, s.stride);
    }
  }
  const int64_t r0 = tile0 * kInt8TileRows, rows = std::min<int64_t>(h * kInt8TileRows, w.n - r0);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t r = 0; r < rows; ++r) y[t * w.n + r0 + r] = s.facc[r * s.stride + t];
  }
}

}  // namespace

void bcq_int8_gemm_amx(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool) {
  const BlockActs acts = block_acts(xa, w.groups);
  const int64_t pairs = (w.tiles + 1) / 2;
  pool.parallel_for(pairs, 1, [&](int64_t p0, int64_t p1) {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
      config.colsb[t] = 64;
      config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
    AlignedBuffer wexp(static_cast<size_t>(4 * (w.g / kStep) * kTileBytes));
    AlignedBuffer cbuf(static_cast<size_t>(4 * 256) * sizeof(int32_t));
    const int64_t stride = acts.blocks * kRowsPerBlock;
    std::vector<float> facc(static_cast<size_t>(kFaccRows * stride));
    const PairScratch s{wexp.as<int8_t>(), cbuf.as<int32_t>(), facc.data(), stride};
    for (int64_t p = p0; p < p1; ++p) {
      const int h = static_cast<int>(std::min<int64_t>(2, w.tiles - 2 * p));
      tile_pair(w, acts, xa.m, 2 * p, h, s, y);
    }
    _tile_release();
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
