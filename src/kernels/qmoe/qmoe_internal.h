// Shared by the QMoE kernel files: the row-range kernels of each ISA over padded activations.
#pragma once

#include <cstdint>

#include "kernels/qmoe/qmoe_gemm.h"

namespace lutq::kernels::qmoe {

// Activations are copied into rows of stride padded_k(k), zero past k, so a run's 32-wide
// loads starting at any c < k stay inside the row.
constexpr int64_t padded_k(int64_t k) { return (k + 32 + 15) / 16 * 16; }

// Rows [r0, r1) of y for activation rows [0, m) (m <= 4): xp rows of stride kp, y rows of stride n.
using RowsFn = void (*)(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1);

void rows_scalar(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1);
void rows_avx2(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1);
void rows_avx512(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1);

}  // namespace lutq::kernels::qmoe
