// The AVX2 kernel of the int8 GEMM path (bcq_int8.h; docs/kernels.md "The AVX2 int8 kernel").
// AVX2 has neither VNNI nor a byte permute over more than 16 entries, so it takes the AMX
// kernel's row layout (row_codes: one row's codes per 64 columns in 32 bytes of nibbles, or 16
// bytes of 2-bit codes) and multiplies in int16:
//
//   Expansion, per (16-row tile, group), into an L1 scratch of int16 levels: a row's 2^q <= 16
//   levels fit one 16-byte vpshufb table, so per 64 columns one load, two masks (and a shift)
//   give 2 vectors of 32 codes; two vpshufb read the low and the high byte of each int16 level
//   (tables: wq and its sign byte), and vpunpck{l,h}bw interleave them into 16-bit levels. The
//   unpacks leave the columns of a 32-column step in the order [0-7, 16-23], [8-15, 24-31]; the
//   activations are widened with the same unpacks (against their sign bytes), so both sides agree
//   and a group's sum does not depend on the order.
//   Multiply, per pair of rows and 4 activation rows: per 16 columns 2 weight loads, 4 activation
//   loads, 8 vpmaddwd (s16 x s16 -> s32 pairs: |2·127·127| fits, no saturation, unlike
//   vpmaddubsw on u8 levels) and 8 vpaddd; at the group end a vphaddd tree reduces the 8
//   accumulators to one vector of the 8 integer sums I, exact.
//   Float: scale = s_w·s_x and acc = fma(float(I), scale, acc) per group in group order from +0,
//   the scalar spec's operations, so the outputs equal bcq_int8_gemm_ref bit for bit.
//
// Threads take 16-row tiles; activation rows go in chunks of 64 so a chunk's group of
// activations (64 x g int16) stays in L1/L2 while the tile's 16 rows pass over it.
//
// Opt-in (LUTQ_GEMM_PATH=int8 with --isa avx2): on Zen 3, which issues one vpmaddwd per cycle
// (16 multiply-adds), it ran at ~70 % of that rate and 1.3-1.5x slower than the LUT kernels at
// every m, so the policy keeps avx2 on the LUT (docs/kernels.md "The AVX2 int8 kernel").
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <immintrin.h>

#include "kernels/int8/bcq_int8.h"

namespace lutq::kernels {

bool bcq_int8_avx2_available(const CpuFeatures& cpu) { return cpu.avx2; }

bool bcq_int8_avx2_supported(int64_t g) { return bcq_int8_amx_supported(g); }

}  // namespace lutq::kernels

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace lutq::kernels {
namespace {

constexpr int64_t kStep = 64;  // columns per row-code step
constexpr int kActs = 4;  // activation rows per pass
constexpr int64_t kChunk = 64;  // activation rows per chunk (a multiple of kActs)
constexpr int64_t kPairs = kInt8TileRows / 2;

// The activations widened to int16 in the expansion's column order, and their scales by group.
struct WideActs {
  int64_t m = 0, k = 0, groups = 0;
  std::vector<int16_t> x;  // [m][stride]: rows 2k + 64 bytes apart (2k-byte strides alias in L1)
  int64_t stride = 0;
  std::vector<float> sx;  // [groups][m rounded up to kActs]: s_x, 0 past m
  int64_t sx_stride = 0;
};

WideActs widen(const QuantizedActs& xa) {
  WideActs a;
  a.m = xa.m;
  a.k = xa.k;
  a.groups = xa.groups;
  a.stride = a.k + 32;
  a.x.resize(static_cast<size_t>(a.m * a.stride));
  a.sx_stride = (a.m + kActs - 1) / kActs * kActs;
  a.sx.assign(static_cast<size_t>(a.groups * a.sx_stride), 0.0f);
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t t = 0; t < a.m; ++t) {
    const int8_t* src = xa.xq.data() + t * xa.stride;
    int16_t* dst = a.x.data() + t * a.stride;
    for (int64_t c = 0; c < a.k; c += 32) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + c));
      const __m256i sign = _mm256_cmpgt_epi8(zero, v);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), _mm256_unpacklo_epi8(v, sign));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c + 16), _mm256_unpackhi_epi8(v, sign));
    }
    for (int64_t j = 0; j < a.groups; ++j) {
      a.sx[static_cast<size_t>(j * a.sx_stride + t)] = xa.sx[static_cast<size_t>(t * a.groups + j)];
    }
  }
  return a;
}

// 32 codes (one per byte, natural column order) -> 32 int16 levels at out (the unpack order).
inline void levels_of(__m256i codes, __m256i lo_table, __m256i hi_table, int16_t* out) {
  const __m256i lo = _mm256_shuffle_epi8(lo_table, codes), hi = _mm256_shuffle_epi8(hi_table, codes);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_unpacklo_epi8(lo, hi));
  _mm256_store_si256(reinterpret_cast<__m256i*>(out + 16), _mm256_unpackhi_epi8(lo, hi));
}

// The 16 rows of `tile` in group j as int16 levels: row r at out + r·g.
template <int Q>
void expand_tile(const BcqInt8Packed& w, int64_t tile, int64_t j, int16_t* out) {
  constexpr int64_t kPerByte = Q <= 2 ? 4 : 2, kSpan = kStep / kPerByte;
  const int64_t row_bytes = w.g / kPerByte;
  const uint8_t* lut = w.luts.data() + (tile * w.groups + j) * w.lut_bytes;
  const uint8_t* codes = w.row_codes.data() + (tile * w.groups + j) * kInt8TileRows * row_bytes;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), zero = _mm256_setzero_si256();
  const __m256i mask = _mm256_set1_epi8(Q <= 2 ? 0x03 : 0x0F);
  const __m256i lane_shift = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
  for (int64_t r = 0; r < kInt8TileRows; ++r, codes += row_bytes, out += w.g) {
    // The row's levels (u8 wq + 128; a 16-byte read, the bytes past 2^q never indexed).
    const __m256i u = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + (r << Q))));
    const __m256i lo_table = _mm256_xor_si256(u, flip), hi_table = _mm256_cmpgt_epi8(zero, lo_table);
    for (int64_t s = 0; s < w.g / kStep; ++s) {
      __m256i first, second;  // codes of columns 0-31 and 32-63 of the step
      if constexpr (Q <= 2) {
        const __m256i x = _mm256_srlv_epi32(
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + s * kSpan))), lane_shift);
        first = _mm256_and_si256(x, mask);
        second = _mm256_and_si256(_mm256_srli_epi32(x, 4), mask);
      } else {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + s * kSpan));
        first = _mm256_and_si256(x, mask);
        second = _mm256_and_si256(_mm256_srli_epi32(x, 4), mask);
      }
      levels_of(first, lo_table, hi_table, out + s * kStep);
      levels_of(second, lo_table, hi_table, out + s * kStep + 32);
    }
  }
}

void expand(const BcqInt8Packed& w, int64_t tile, int64_t j, int16_t* out) {
  switch (w.q) {
    case 1: expand_tile<1>(w, tile, j, out); break;
    case 2: expand_tile<2>(w, tile, j, out); break;
    case 3: expand_tile<3>(w, tile, j, out); break;
    default: expand_tile<4>(w, tile, j, out); break;
  }
}

// Eight vectors of int32 -> the vector of their eight sums, in order.
inline __m256i sum8(const __m256i v[8]) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

struct PassArgs {
  const int16_t* w0;  // the pair's two rows in the expanded group
  const int16_t* w1;
  const int16_t* x;  // activation row t0 at the group's first column
  int64_t x_stride;
  int64_t g;
  __m256 scale;  // lanes (row 0: t0..t0+3, row 1: t0..t0+3): s_w·s_x
  float* facc;  // 8 floats, same lanes
};

// One group of two rows x T activation rows (lanes of activation rows past T add nothing).
template <int T>
void pass(const PassArgs& a) {
  __m256i acc[8];
  for (__m256i& v : acc) v = _mm256_setzero_si256();
  for (int64_t c = 0; c < a.g; c += 16) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.w0 + c));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.w1 + c));
    for (int t = 0; t < T; ++t) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x + t * a.x_stride + c));
      acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(w0, x));
      acc[4 + t] = _mm256_add_epi32(acc[4 + t], _mm256_madd_epi16(w1, x));
    }
  }
  const __m256 isum = _mm256_cvtepi32_ps(sum8(acc));
  _mm256_storeu_ps(a.facc, _mm256_fmadd_ps(isum, a.scale, _mm256_loadu_ps(a.facc)));
}

void run_pass(int acts, const PassArgs& a) {
  switch (acts) {
    case 1: pass<1>(a); break;
    case 2: pass<2>(a); break;
    case 3: pass<3>(a); break;
    default: pass<4>(a); break;
  }
}

// Tile `tile` for activation rows [t0, t0 + mc): facc[pair][act block][8] (lanes as PassArgs).
void tile_chunk(const BcqInt8Packed& w, const WideActs& xa, int64_t tile, int64_t t0, int64_t mc, int16_t* scratch,
                float* facc, float* y) {
  const int64_t blocks = (mc + kActs - 1) / kActs;
  std::fill(facc, facc + kPairs * blocks * 8, 0.0f);
  for (int64_t j = 0; j < w.groups; ++j) {
    expand(w, tile, j, scratch);
    const float* ws = w.ws.data() + (tile * w.groups + j) * kInt8TileRows;
    for (int64_t b = 0; b < blocks; ++b) {
      const int acts = static_cast<int>(std::min<int64_t>(kActs, mc - b * kActs));
      const __m128 sx = _mm_loadu_ps(xa.sx.data() + j * xa.sx_stride + t0 + b * kActs);
      PassArgs a{};
      a.x = xa.x.data() + (t0 + b * kActs) * xa.stride + j * w.g;
      a.x_stride = xa.stride;
      a.g = w.g;
      for (int64_t p = 0; p < kPairs; ++p) {
        a.w0 = scratch + 2 * p * w.g;
        a.w1 = a.w0 + w.g;
        const __m256 sw = _mm256_set_m128(_mm_set1_ps(ws[2 * p + 1]), _mm_set1_ps(ws[2 * p]));
        a.scale = _mm256_mul_ps(sw, _mm256_set_m128(sx, sx));
        a.facc = facc + (p * blocks + b) * 8;
        run_pass(acts, a);
      }
    }
  }
  const int64_t r0 = tile * kInt8TileRows;
  for (int64_t row = 0; row < kInt8TileRows && r0 + row < w.n; ++row) {
    const float* f = facc + ((row / 2) * blocks) * 8 + (row % 2) * 4;
    for (int64_t t = 0; t < mc; ++t) y[(t0 + t) * w.n + r0 + row] = f[(t / kActs) * 8 + t % kActs];
  }
}

// One (row, group) of quantize_acts with the same float operations per element (|x|, max,
// x · inv rounded to nearest even by vcvtps2dq under the default MXCSR, as nearbyint).
void quantize_group(const float* xs, int64_t g, int8_t* xq, float& sx, int32_t& corr) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
  __m256 amax = zero, bad = zero;
  for (int64_t c = 0; c < g; c += 8) {
    const __m256 v = _mm256_loadu_ps(xs + c);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_mul_ps(v, zero), zero, _CMP_NEQ_UQ));  // NaN or ±inf
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v));
  }
  if (_mm256_movemask_ps(bad) != 0) {
    sx = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  const float top = *std::max_element(lanes, lanes + 8);
  if (top == 0.0f) return;
  const __m256 inv = _mm256_set1_ps(127.0f / top);
  sx = top / 127.0f;
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  __m256i sum = _mm256_setzero_si256();
  for (int64_t c = 0; c < g; c += 8) {
    const __m256i r = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xs + c), inv)), lo), hi);
    sum = _mm256_add_epi32(sum, r);
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(xq + c), _mm_packs_epi16(w16, w16));
  }
  alignas(32) int32_t s[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), sum);
  int32_t total = 0;
  for (int32_t v : s) total += v;
  corr = -128 * total;
}

}  // namespace

QuantizedActs quantize_acts_avx2(const float* x, int64_t m, int64_t k, int64_t g) {
  if (g % 8 != 0) return quantize_acts(x, m, k, g);
  return quantize_acts_by_group(x, m, k, g, &quantize_group);
}

void bcq_int8_gemm_avx2(const BcqInt8Packed& w, const QuantizedActs& xq, float* y, ThreadPool& pool) {
  const WideActs xa = widen(xq);
  pool.parallel_for(w.tiles, 1, [&](int64_t tile0, int64_t tile1) {
    AlignedBuffer scratch(static_cast<size_t>(kInt8TileRows * w.g) * sizeof(int16_t));
    std::vector<float> facc(static_cast<size_t>(kPairs * (kChunk / kActs) * 8));
    for (int64_t t0 = 0; t0 < xa.m; t0 += kChunk) {
      const int64_t mc = std::min(kChunk, xa.m - t0);
      for (int64_t tile = tile0; tile < tile1; ++tile) tile_chunk(w, xa, tile, t0, mc, scratch.as<int16_t>(), facc.data(), y);
    }
  });
}

}  // namespace lutq::kernels

#pragma GCC pop_options
