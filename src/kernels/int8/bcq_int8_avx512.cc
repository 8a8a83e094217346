// The AVX-512 (VNNI + VBMI) kernel of the int8 GEMM path (bcq_int8.h). Blocked GEMM: threads
// take pairs of 16-row tiles; per group, the pair's weights are expanded once to int8 into an
// L1-resident scratch (quad order: 16 rows x 4 columns per 64 bytes), then every activation row
// multiplies it with vpdpbusd, up to 8 rows per pass so each weight vector load serves 8 rows.
// The weights are the u8 operand (levels stored + 128), the activations the s8 one, read as an
// embedded {1to16} broadcast of 4 bytes: one fused load+op per 64 multiply-adds, accumulators
// starting at −128·Σ xq of the (row, group).
//
// Expansion of 64 weights (16 rows x 4 columns): code bytes = (row << q) + Σ_i bit_i << i, built
// from the q plane masks with masked byte adds; the (tile, group) level table of 16 rows x 2^q
// int8 levels is then read with vpermb (q <= 2: 64 entries), vpermi2b (q = 3: 128 entries), or
// two vpermi2b and a blend on the row half (q = 4: rows 0-7 and 8-15, 128 entries each).
//
// Float order: the scalar spec's (scale = s_w·s_x, acc = fma(float(isum), scale, acc) per group,
// in group order), so the outputs equal bcq_int8_gemm_ref bit for bit.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <immintrin.h>

#include "kernels/int8/bcq_int8.h"

namespace lutq::kernels {

bool bcq_int8_avx512_available(const CpuFeatures& cpu) {
  return cpu.avx512 && cpu.avx512_vbmi && cpu.avx512_vnni && cpu.avx512_gfni;
}

}  // namespace lutq::kernels

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vnni,gfni,fma")

namespace lutq::kernels {
namespace {

constexpr int kMaxRows = 8;  // activation rows per pass

// acc += u8 w · s8 (4 bytes at x, broadcast to every lane): vpdpbusd with an embedded
// broadcast, in place. Inline asm because GCC 12 copies every accumulator of the unrolled
// intrinsic version through a second register each iteration (32 extra zmm moves per 16
// vpdpbusd, measured ~1.6x slower).
inline void dpbusd_bcast(__m512i& acc, __m512i w, const int8_t* x) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
}

// Byte b of a quad vector belongs to row b / 4; its code starts at that row's table offset.
template <int Q>
__m512i code_base() {
  alignas(64) std::array<uint8_t, 64> base{};
  for (int b = 0; b < 64; ++b) base[static_cast<size_t>(b)] = static_cast<uint8_t>(((b / 4) & (Q == 4 ? 7 : 15)) << Q);
  return _mm512_load_si512(base.data());
}

// vpermb indices gathering a quad's Q plane masks (8·Q bytes: byte j of plane i = positions
// 8j..8j+7) so that qword j holds plane i's byte j at byte 7 − i (zeroed above Q planes).
template <int Q>
__m512i gather_index() {
  alignas(64) std::array<uint8_t, 64> idx{};
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 8; ++i) idx[static_cast<size_t>(8 * j + 7 - i)] = static_cast<uint8_t>(i < Q ? 8 * i + j : 0);
  }
  return _mm512_load_si512(idx.data());
}

template <int Q>
uint64_t gather_keep() {
  uint64_t keep = 0;
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < Q; ++i) keep |= uint64_t{1} << (8 * j + 7 - i);
  }
  return keep;
}

// The codes of a quad (byte 4·row + j = Σ_i bit_i << i) by an 8x8 bit transpose per qword:
// vgf2p8affineqb with the gathered plane bytes as the matrix and x = byte b holding 1 << b sets
// bit i of output byte b to bit b of matrix byte 7 − i, i.e. of plane i.
template <int Q>
__m512i quad_codes(const uint64_t* planes, __m512i index, __mmask64 keep, __m512i select) {
  const __m512i raw = _mm512_maskz_loadu_epi8(_cvtu64_mask64((uint64_t{1} << (8 * Q)) - 1), planes);
  const __m512i matrix = _mm512_maskz_permutexvar_epi8(keep, index, raw);
  return _mm512_gf2p8affine_epi64_epi8(select, matrix, 0);
}

// Expands the quads of one (tile, group) to int8 levels: out[quad*64 + 4·row + j].
template <int Q>
void expand_group(const uint64_t* masks, const uint8_t* lut, int64_t quads, int8_t* out) {
  const __m512i base = code_base<Q>();
  const __m512i index = gather_index<Q>();
  const __mmask64 keep = _cvtu64_mask64(gather_keep<Q>());
  const __m512i select = _mm512_set1_epi64(static_cast<long long>(0x8040201008040201ull));
  const __m512i t0 = _mm512_load_si512(lut);
  const __m512i t1 = Q >= 3 ? _mm512_load_si512(lut + 64) : t0;
  const __m512i t2 = Q == 4 ? _mm512_load_si512(lut + 128) : t0;
  const __m512i t3 = Q == 4 ? _mm512_load_si512(lut + 192) : t0;
  for (int64_t d = 0; d < quads; ++d) {
    // The masked loads below do not train every CPU's stream prefetcher (Zen 5: the kernel ran
    // at DRAM latency, not bandwidth, once the masks outgrew the cache): fetch 4 KiB ahead.
    if (d % (8 / Q) == 0) _mm_prefetch(reinterpret_cast<const char*>(masks + d * Q) + 4096, _MM_HINT_T0);
    const __m512i codes = _mm512_or_si512(base, quad_codes<Q>(masks + d * Q, index, keep, select));
    __m512i lv;
    if constexpr (Q <= 2) {
      lv = _mm512_permutexvar_epi8(codes, t0);
    } else if constexpr (Q == 3) {
      lv = _mm512_permutex2var_epi8(t0, codes, t1);
    } else {
      const __m512i lo = _mm512_permutex2var_epi8(t0, codes, t1);
      const __m512i hi = _mm512_permutex2var_epi8(t2, codes, t3);
      lv = _mm512_mask_blend_epi8(_cvtu64_mask64(0xFFFFFFFF00000000ull), lo, hi);
    }
    _mm512_store_si512(out + d * 64, lv);
  }
}


// Expands `quads` quads of one (tile, group) from `masks` (the tile's plane masks at the group's
// first quad) and `lut` (the (tile, group) level table): out[quad*64 + 4·row + j] = wq + 128.
void expand_quads(int q, const uint64_t* masks, const uint8_t* lut, int64_t quads, int8_t* out) {
  switch (q) {
    case 1: expand_group<1>(masks, lut, quads, out); break;
    case 2: expand_group<2>(masks, lut, quads, out); break;
    case 3: expand_group<3>(masks, lut, quads, out); break;
    default: expand_group<4>(masks, lut, quads, out); break;
  }
}

// Group j of tiles [tile0, tile0 + h) (h = 1 or 2) expanded into scratch (g/4 quads x 64 bytes
// per tile): wexp[e] points at tile e's quads, ws[e] at its 16 s_w.
void expand_tiles(const BcqInt8Packed& w, int64_t tile0, int h, int64_t j, int8_t* scratch, const int8_t* wexp[2],
                  const float* ws[2]) {
  const int64_t quads = w.g / 4;
  for (int e = 0; e < h; ++e) {
    const int64_t tile = tile0 + e, cell = tile * w.groups + j;
    int8_t* out = scratch + e * quads * 64;
    expand_quads(w.q, w.mask_words() + (tile * (w.k / 4) + j * quads) * w.q, w.luts.data() + cell * w.lut_bytes, quads,
                 out);
    wexp[e] = out;
    ws[e] = w.ws.data() + cell * kInt8TileRows;
  }
}

// One group of up to 2 tiles (H) x MR activation rows.
struct GroupArgs {
  const int8_t* wexp[2];  // expanded weights of each tile, quads x 64 bytes
  const float* ws[2];  // 16 each
  const int8_t* xq;  // first activation row, at the group's first column
  int64_t x_stride;  // bytes between activation rows
  const float* sx;  // s_x of the first row; stride sx_stride (as corr)
  const int32_t* corr;  // −128·Σ xq of the first row's group
  int64_t sx_stride;
  int64_t quads;
  float* facc;  // [MR][32]
};

template <int MR, int H>
void group_block(const GroupArgs& a) {
  __m512i acc[MR][H];
#pragma GCC unroll 8
  for (int t = 0; t < MR; ++t) {
    for (int h = 0; h < H; ++h) acc[t][h] = _mm512_set1_epi32(a.corr[t * a.sx_stride]);
  }
  for (int64_t d = 0; d < a.quads; ++d) {
    __m512i w[H];
    for (int h = 0; h < H; ++h) w[h] = _mm512_load_si512(a.wexp[h] + d * 64);
#pragma GCC unroll 8
    for (int t = 0; t < MR; ++t) {
      for (int h = 0; h < H; ++h) dpbusd_bcast(acc[t][h], w[h], a.xq + t * a.x_stride + d * 4);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < MR; ++t) {
    const __m512 sx = _mm512_set1_ps(a.sx[t * a.sx_stride]);
    for (int h = 0; h < H; ++h) {
      const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(a.ws[h]), sx);
      float* f = a.facc + t * 32 + h * 16;
      _mm512_storeu_ps(f, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t][h]), scale, _mm512_loadu_ps(f)));
    }
  }
}

template <int H>
void run_rows(int mr, const GroupArgs& a) {
  switch (mr) {
    case 1: group_block<1, H>(a); break;
    case 2: group_block<2, H>(a); break;
    case 3: group_block<3, H>(a); break;
    case 4: group_block<4, H>(a); break;
    case 5: group_block<5, H>(a); break;
    case 6: group_block<6, H>(a); break;
    case 7: group_block<7, H>(a); break;
    default: group_block<8, H>(a); break;
  }
}

// Tiles [tile0, tile0 + h) for all activation rows; scratch holds 2 expanded groups.
void tile_pair(const BcqInt8Packed& w, const QuantizedActs& xa, int64_t tile0, int h, int8_t* scratch,
               float* facc, float* y) {
  const int64_t quads = w.g / 4, m = xa.m;
  std::fill(facc, facc + m * 32, 0.0f);
  for (int64_t j = 0; j < w.groups; ++j) {
    GroupArgs a{};
    expand_tiles(w, tile0, h, j, scratch, a.wexp, a.ws);
    a.x_stride = xa.stride;
    a.sx_stride = w.groups;
    a.quads = quads;
    for (int64_t t0 = 0; t0 < m; t0 += kMaxRows) {
      const int mr = static_cast<int>(std::min<int64_t>(kMaxRows, m - t0));
      a.xq = xa.xq.data() + t0 * xa.stride + j * w.g;
      a.sx = xa.sx.data() + t0 * w.groups + j;
      a.corr = xa.corr.data() + t0 * w.groups + j;
      a.facc = facc + t0 * 32;
      if (h == 2) {
        run_rows<2>(mr, a);
      } else {
        run_rows<1>(mr, a);
      }
    }
  }
  const int64_t r0 = tile0 * kInt8TileRows, rows = std::min<int64_t>(h * kInt8TileRows, w.n - r0);
  for (int64_t t = 0; t < m; ++t) std::copy(facc + t * 32, facc + t * 32 + rows, y + t * w.n + r0);
}


// One (row, group) of quantize_acts: the same float operations per element (|x|, max, x · inv
// rounded to nearest even by vcvtps2dq under the default MXCSR, as nearbyint), so equal results.
void quantize_group(const float* xs, int64_t g, int8_t* xq, float& sx, int32_t& corr) {
  __m512 amax = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (int64_t c = 0; c < g; c += 16) {
    const __mmask16 in = c + 16 <= g ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (g - c)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(in, xs + c);
    bad = static_cast<__mmask16>(bad | _mm512_mask_fpclass_ps_mask(in, v, 0x99));  // NaN or ±inf
    amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
  }
  if (bad != 0) {
    sx = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const float top = _mm512_reduce_max_ps(amax);
  if (top == 0.0f) return;
  const __m512 inv = _mm512_set1_ps(127.0f / top);
  sx = top / 127.0f;
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  __m512i sum = _mm512_setzero_si512();
  for (int64_t c = 0; c < g; c += 16) {
    const __mmask16 in = c + 16 <= g ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (g - c)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(in, xs + c);
    const __m512i r = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), lo), hi);
    sum = _mm512_add_epi32(sum, r);
    _mm_mask_storeu_epi8(xq + c, in, _mm512_cvtepi32_epi8(r));
  }
  corr = -128 * _mm512_reduce_add_epi32(sum);
}

}  // namespace

QuantizedActs quantize_acts_avx512(const float* x, int64_t m, int64_t k, int64_t g) {
  return quantize_acts_by_group(x, m, k, g, &quantize_group);
}

void bcq_int8_gemm_avx512(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool) {
  const int64_t pairs = (w.tiles + 1) / 2;
  pool.parallel_for(pairs, 1, [&](int64_t p0, int64_t p1) {
    AlignedBuffer scratch(static_cast<size_t>(2 * (w.g / 4) * 64));
    std::vector<float> facc(static_cast<size_t>(xa.m * 32));
    for (int64_t p = p0; p < p1; ++p) {
      const int h = static_cast<int>(std::min<int64_t>(2, w.tiles - 2 * p));
      tile_pair(w, xa, 2 * p, h, scratch.as<int8_t>(), facc.data(), y);
    }
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
