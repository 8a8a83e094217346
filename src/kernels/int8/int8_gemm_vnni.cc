// The unsigned-activation int8 dot products of int8_gemm.h: the scalar reference and AVX512-VNNI
// (the 256-bit AVX-VNNI one shares AVX2's reduction in int8_gemm_avx2.cc). Activations are
// xq + 128 in 0..255 against signed weights; vpdpbusd sums four u8·s8 products into each int32
// lane per instruction (no intermediate saturation, unlike vpmaddubsw). The caller subtracts 128·Σq.
#include <immintrin.h>

#include <cstdint>

#include "kernels/int8/int8_gemm.h"

namespace lutq::kernels::int8_detail {

int32_t dot_u8_ref(const uint8_t* a, const int8_t* b, int64_t k) {
  int32_t total = 0;
  for (int64_t c = 0; c < k; ++c) total += static_cast<int32_t>(a[c]) * b[c];
  return total;
}

}  // namespace lutq::kernels::int8_detail

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni")

namespace lutq::kernels::int8_detail {

int32_t dot_u8_avx512vnni(const uint8_t* a, const int8_t* b, int64_t k) {
  __m512i acc0 = _mm512_setzero_si512();
  __m512i acc1 = _mm512_setzero_si512();
  int64_t c = 0;
  for (; c + 128 <= k; c += 128) {
    const __m512i x0 = _mm512_loadu_si512(a + c);
    const __m512i x1 = _mm512_loadu_si512(a + c + 64);
    const __m512i w0 = _mm512_loadu_si512(b + c);
    const __m512i w1 = _mm512_loadu_si512(b + c + 64);
    acc0 = _mm512_dpbusd_epi32(acc0, x0, w0);
    acc1 = _mm512_dpbusd_epi32(acc1, x1, w1);
  }
  // The tail (< 128) in masked 64-byte steps: masked-off bytes load as zero.
  for (; c < k; c += 64) {
    const int64_t left = k - c < 64 ? k - c : 64;
    const __mmask64 m = left == 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
    const __m512i x0 = _mm512_maskz_loadu_epi8(m, a + c);
    const __m512i w0 = _mm512_maskz_loadu_epi8(m, b + c);
    acc0 = _mm512_dpbusd_epi32(acc0, x0, w0);
  }
  // Through memory: GCC 12's _mm512_reduce_add_epi32 trips -Wuninitialized inside its header.
  int32_t lanes[16];
  _mm512_storeu_si512(lanes, _mm512_add_epi32(acc0, acc1));
  int32_t total = 0;
  for (int32_t v : lanes) total += v;
  return total;
}

}  // namespace lutq::kernels::int8_detail

#pragma GCC pop_options
