// The AVX2 table builds. They must equal build_tables_f32 / quantize_tables_i8 (lut_tables.h) bit
// for bit, so every table entry is computed with the same fp32 operations in the same order,
// only eight entries at a time:
//
//   lanes p = 0..7 of one chunk:  t012 = ((±x0) + (±x1)) + (±x2)  (signs from the bits of p)
//   entries 0..7  = t012 + (−x3)     (x − y is x + (−y) in IEEE 754, bit for bit)
//   entries 8..15 = t012 + x3
//
// Entries 8..15 are also −entries 7..0 exactly (all signs flip, and fl(−a − b) = −fl(a + b));
// the int8 path uses that: it builds and rounds entries 0..7 and negates.
//
// int8: amax is a max of |entries| (exact, order-free); scale = amax / 127, inv = 127 / amax,
// one fp32 multiply, then vcvtps2dq rounds half to even under the default MXCSR, as nearbyint
// does under the default rounding mode. With amax and inv finite, |T·inv| <= 127·(1+2^-24)^2
// rounds to at most 127, so the clamp of the reference never bites and the int32 -> int8 packs
// are exact. Blocks with a non-finite amax or inv (tiny subnormal or non-finite activations) go
// through the reference quantizer itself.
#include <cmath>
#include <limits>

#include <immintrin.h>

#include "kernels/avx2/avx2_internal.h"
#include "kernels/lut_tables.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace lutq::kernels::avx2 {
namespace {

// Sign masks: lane p of mask t has the sign bit set where bit t of p is 0 (s_t = −x_t).
struct SignMasks {
  __m256 m0, m1, m2;
  SignMasks() {
    const float z = -0.0f;
    m0 = _mm256_setr_ps(z, 0, z, 0, z, 0, z, 0);
    m1 = _mm256_setr_ps(z, z, 0, 0, z, z, 0, 0);
    m2 = _mm256_setr_ps(z, z, z, z, 0, 0, 0, 0);
  }
};

// Entries 0..7 and 8..15 of the table of the chunk at xc.
inline void chunk_entries(const float* xc, const SignMasks& s, __m256& lo, __m256& hi) {
  const __m256 x0 = _mm256_broadcast_ss(xc);
  const __m256 x1 = _mm256_broadcast_ss(xc + 1);
  const __m256 x2 = _mm256_broadcast_ss(xc + 2);
  const __m256 x3 = _mm256_broadcast_ss(xc + 3);
  const __m256 t01 = _mm256_add_ps(_mm256_xor_ps(x0, s.m0), _mm256_xor_ps(x1, s.m1));
  const __m256 t012 = _mm256_add_ps(t01, _mm256_xor_ps(x2, s.m2));
  lo = _mm256_sub_ps(t012, x3);
  hi = _mm256_add_ps(t012, x3);
}

float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

}  // namespace

void tables_f32_half(const float* x, int64_t chunks, float* out) {
  const SignMasks s;
  for (int64_t c = 0; c < chunks; ++c) {
    __m256 lo, hi;
    chunk_entries(x + 4 * c, s, lo, hi);
    _mm256_storeu_ps(out + 8 * c, lo);
  }
}

float tables_i8(const float* x, int64_t kb, int8_t* tq, float* scratch) {
  const SignMasks s;
  const int64_t chunks = kb / kMu;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  // Pass 1: entries 0..7 of every chunk, and amax. Entries 8..15 are the negated 0..7, so they
  // add nothing to amax. max_ps returns its second operand when the first is NaN: NaN entries
  // are skipped, as std::max(amax, fabs(t)) skips them in the reference.
  __m256 amax_v = _mm256_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    __m256 lo, hi;
    chunk_entries(x + 4 * c, s, lo, hi);
    _mm256_store_ps(scratch + 8 * c, lo);
    amax_v = _mm256_max_ps(_mm256_and_ps(lo, abs_mask), amax_v);
  }
  const float amax = hmax(amax_v);
  float scale = amax / 127.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  constexpr float kMax = std::numeric_limits<float>::max();
  if (!(amax <= kMax && inv <= kMax)) {
    // Non-finite amax or inv: the reference quantizer itself, on the full fp32 tables.
    for (int64_t c = 0; c < chunks; ++c) {
      __m256 lo, hi;
      chunk_entries(x + 4 * c, s, lo, hi);
      _mm256_store_ps(scratch + 16 * c, lo);
      _mm256_store_ps(scratch + 16 * c + 8, hi);
    }
    quantize_tables_i8(scratch, kb, kb, tq, &scale);
    return scale;
  }
  // Pass 2, four chunks at a time: q_l = round(T[l]·inv) for l < 8, and entry 8 + l is
  // −q_(7−l) (rounding half to even is symmetric).
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i order = _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7);
  const __m256i reverse8 = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,  //
                                            7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
  for (int64_t c = 0; c < chunks; c += 4) {
    const float* t = scratch + 8 * c;
    const __m256i a0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(t), vinv));
    const __m256i a1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(t + 8), vinv));
    const __m256i a2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(t + 16), vinv));
    const __m256i a3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(t + 24), vinv));
    // packs work per 128-bit lane: dwords a0[0:4] a1[0:4] a2[0:4] a3[0:4] | a0[4:8] a1[4:8] ...;
    // reordered to a0 a2 | a1 a3 (8 bytes each).
    const __m256i p = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3)), order);
    const __m256i r = _mm256_shuffle_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), p), reverse8);
    // [a | −reversed a] per chunk: chunks c, c+1 from the low qwords, c+2, c+3 from the high.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tq + 16 * c), _mm256_unpacklo_epi64(p, r));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tq + 16 * c + 32), _mm256_unpackhi_epi64(p, r));
  }
  return scale;
}

void scale_by_codes(const uint8_t* code, const float* step, const float* x, int64_t len, float* out) {
  for (int64_t c = 0; c < len; c += 8) {
    const __m256i ci = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(code + c)));
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(ci), _mm256_loadu_ps(step + c));
    const __m256 a = _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm256_storeu_ps(out + c, _mm256_mul_ps(a, _mm256_loadu_ps(x + c)));
  }
}

void scale_by_f16(const uint16_t* alpha, const float* x, int64_t len, float* out) {
  for (int64_t c = 0; c < len; c += 8) {
    const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(alpha + c)));
    _mm256_storeu_ps(out + c, _mm256_mul_ps(a, _mm256_loadu_ps(x + c)));
  }
}

void sums_in_order(const float* const* xs, int count, int64_t len, float* sums) {
  // Independent chains side by side keep the adder busy; each chain is strictly left to right.
  for (int l0 = 0; l0 < count; l0 += 8) {
    const int nl = count - l0 < 8 ? count - l0 : 8;
    float acc[8] = {};
    for (int64_t c = 0; c < len; ++c) {
      for (int l = 0; l < nl; ++l) acc[l] += xs[l0 + l][c];
    }
    for (int l = 0; l < nl; ++l) sums[l0 + l] = acc[l];
  }
}

float dot_f16(const uint16_t* z, const float* x, int64_t len) {
  __m256 a0 = _mm256_setzero_ps();
  __m256 a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= len; c += 16) {
    const __m256 z0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + c)));
    const __m256 z1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + c + 8)));
    a0 = _mm256_fmadd_ps(z0, _mm256_loadu_ps(x + c), a0);
    a1 = _mm256_fmadd_ps(z1, _mm256_loadu_ps(x + c + 8), a1);
  }
  for (; c < len; c += 8) {
    const __m256 z0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + c)));
    a0 = _mm256_fmadd_ps(z0, _mm256_loadu_ps(x + c), a0);
  }
  const __m256 s = _mm256_add_ps(a0, a1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

}  // namespace lutq::kernels::avx2

#pragma GCC pop_options
