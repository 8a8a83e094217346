// The AVX2 int8 dot product of int8_gemm.h (int8 weights sign-extended to int16, vpmaddwd) and the
// AVX-VNNI one (unsigned activations, vpdpbusd; see int8_gemm_vnni.cc), sharing the reduction.
#include <immintrin.h>

#include <cstdint>

#include "kernels/int8/int8_gemm.h"

#pragma GCC push_options
#pragma GCC target("avx2")

namespace lutq::kernels::int8_detail {

namespace {

// Σ of the eight int32 lanes of acc0 + acc1, plus the scalar tail a[c..k)·b[c..k).
template <typename A>
int32_t finish(__m256i acc0, __m256i acc1, const A* a, const int8_t* b, int64_t c, int64_t k) {
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  int32_t total = _mm_cvtsi128_si32(s);
  for (; c < k; ++c) total += static_cast<int32_t>(a[c]) * b[c];
  return total;
}

}  // namespace

int32_t dot_avx2(const int16_t* a, const int8_t* b, int64_t k) {
  __m256i acc0 = _mm256_setzero_si256();
  __m256i acc1 = _mm256_setzero_si256();
  int64_t c = 0;
  for (; c + 32 <= k; c += 32) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + c)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + c + 16)));
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c + 16));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x0, w0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(x1, w1));
  }
  return finish(acc0, acc1, a, b, c, k);
}

}  // namespace lutq::kernels::int8_detail

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,avxvnni")

namespace lutq::kernels::int8_detail {

int32_t dot_u8_avxvnni(const uint8_t* a, const int8_t* b, int64_t k) {
  __m256i acc0 = _mm256_setzero_si256();
  __m256i acc1 = _mm256_setzero_si256();
  int64_t c = 0;
  for (; c + 64 <= k; c += 64) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c + 32));
    acc0 = _mm256_dpbusd_avx_epi32(acc0, x0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c)));
    acc1 = _mm256_dpbusd_avx_epi32(acc1, x1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c + 32)));
  }
  return finish(acc0, acc1, a, b, c, k);
}

}  // namespace lutq::kernels::int8_detail

#pragma GCC pop_options
