// ggml block dequantizers (reference semantics of ggml-quants.c dequantize_row_*), usable on
// their own. Supported: f32, f16, bf16, f64, i8, i16, i32, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1,
// q2_K, q3_K, q4_K, q5_K, q6_K, q8_K.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "io/gguf_types.h"

namespace lutq::io {

bool dequantize_supported(GgmlType type);

// Dequantizes n elements (a multiple of the type's block size) from src (at least
// n / block_size * type_size bytes, no alignment needed) into dst[0..n).
Status dequantize_row(GgmlType type, const uint8_t* src, size_t src_bytes, float* dst, int64_t n);

}  // namespace lutq::io
