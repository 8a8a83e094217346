// The AVX-512 table builds. Entries must equal build_tables_f32 / quantize_tables_i8
// (lut_tables.h) bit for bit, so each is computed with the same fp32 operations in the same order,
// all 16 entries of a chunk in one vector (lane p):
//
//   T[p] = (((±x0) + (±x1)) + (±x2)) + (±x3),  −x by flipping the sign bit (exact, as the
//   reference's negation), where bit t of p is 0.
//
// int8: amax is a max of |entries| (exact, order-free; vmaxps returns its second operand when
// the first is NaN, so NaN entries are skipped as std::max(amax, fabs(t)) skips them);
// scale = amax / 127, inv = 127 / amax, one fp32 multiply, vcvtps2dq rounds half to even under
// the default MXCSR as nearbyint does. With amax and inv finite, |T·inv| <= 127·(1+2^-24)^2
// rounds to at most 127, so the reference's clamp never bites and vpmovdb (truncating) is exact.
// Blocks with a non-finite amax or inv go through the reference quantizer itself.
// GCC 12's AVX-512 intrinsics initialise their `_mm512_undefined_*()` operands from themselves
// and, once inlined into unrolled loops, trip -Wuninitialized inside the system header (a
// compiler false positive, fixed in GCC 13). The header's code is placed where it is first
// included, so the warning is switched off for this file before that.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <cmath>
#include <cstring>
#include <limits>

#include <immintrin.h>

#include "kernels/avx512/avx512_internal.h"
#include "kernels/lut_tables.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vnni,fma,f16c,bmi2")

namespace lutq::kernels::avx512 {
namespace {

// Sign masks: lane p of mask t has the sign bit set where bit t of p is 0 (s_t = −x_t).
struct SignMasks {
  __m512 m[4];
  SignMasks() {
    for (int t = 0; t < 4; ++t) {
      alignas(64) float v[16];
      for (int p = 0; p < 16; ++p) v[p] = ((p >> t) & 1) ? 0.0f : -0.0f;
      m[t] = _mm512_load_ps(v);
    }
  }
};

// The 16 entries of the table of the chunk at xc.
inline __m512 chunk_entries(const float* xc, const SignMasks& s) {
  __m512 t = _mm512_xor_ps(_mm512_set1_ps(xc[0]), s.m[0]);
  t = _mm512_add_ps(t, _mm512_xor_ps(_mm512_set1_ps(xc[1]), s.m[1]));
  t = _mm512_add_ps(t, _mm512_xor_ps(_mm512_set1_ps(xc[2]), s.m[2]));
  return _mm512_add_ps(t, _mm512_xor_ps(_mm512_set1_ps(xc[3]), s.m[3]));
}

}  // namespace

void tables_f32(const float* x, int64_t chunks, float* out) {
  const SignMasks s;
  for (int64_t c = 0; c < chunks; ++c) _mm512_store_ps(out + kFullTable * c, chunk_entries(x + kMu * c, s));
}

float tables_i8(const float* x, int64_t kb, int8_t* tq, float* scratch) {
  const SignMasks s;
  const int64_t chunks = kb / kMu;
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  __m512 amax_v = _mm512_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    const __m512 t = chunk_entries(x + kMu * c, s);
    _mm512_store_ps(scratch + kFullTable * c, t);
    amax_v = _mm512_max_ps(_mm512_and_ps(t, abs_mask), amax_v);
  }
  const float amax = _mm512_reduce_max_ps(amax_v);
  float scale = amax / 127.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  constexpr float kMax = std::numeric_limits<float>::max();
  if (!(amax <= kMax && inv <= kMax)) {
    // Non-finite amax or inv: the reference quantizer on the fp32 tables, then rearranged.
    alignas(64) int8_t canon[256 / kMu * kTableSize];
    quantize_tables_i8(scratch, kb, kb, canon, &scale);
    for (int64_t c = 0; c < chunks; ++c) std::memcpy(tq + i8_table_at(c), canon + kTableSize * c, kTableSize);
    return scale;
  }
  const __m512 vinv = _mm512_set1_ps(inv);
  for (int64_t c = 0; c < chunks; ++c) {
    const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(scratch + kFullTable * c), vinv));
    _mm_store_si128(reinterpret_cast<__m128i*>(tq + i8_table_at(c)), _mm512_cvtepi32_epi8(r));
  }
  return scale;
}

void scale_by_codes(const uint8_t* code, const float* step, const float* x, int64_t len, float* out) {
  for (int64_t c = 0; c < len; c += 16) {
    const __m512i ci = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(code + c)));
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(ci), _mm512_loadu_ps(step + c));
    const __m512 a = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm512_storeu_ps(out + c, _mm512_mul_ps(a, _mm512_loadu_ps(x + c)));
  }
}

void scale_by_f16(const uint16_t* alpha, const float* x, int64_t len, float* out) {
  for (int64_t c = 0; c < len; c += 16) {
    const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(alpha + c)));
    _mm512_storeu_ps(out + c, _mm512_mul_ps(a, _mm512_loadu_ps(x + c)));
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
  __m512 a0 = _mm512_setzero_ps();
  __m512 a1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= len; c += 32) {
    const __m512 z0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + c)));
    const __m512 z1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + c + 16)));
    a0 = _mm512_fmadd_ps(z0, _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(z1, _mm512_loadu_ps(x + c + 16), a1);
  }
  for (; c < len; c += 16) {
    const __m512 z0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + c)));
    a0 = _mm512_fmadd_ps(z0, _mm512_loadu_ps(x + c), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

}  // namespace lutq::kernels::avx512

#pragma GCC pop_options
