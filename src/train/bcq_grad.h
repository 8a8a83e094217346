// Scale-only training of a BCQ layer (PEQA / AlphaTuning, issue 14): the binary codes B_i of a
// format::BcqMatrix stay frozen; its scales α (and offsets z) are trainable fp32 master copies
// indexed exactly as the matrix indexes its fp16 ones (format/bcq_matrix.h):
//
//   W[n,k] = z[s(n,k)] + Σ_i α[s(n,k)·q + i] · B_i[n,k],   y[m,n] = x[m,k] · Wᵀ
//
// so dL/dα[s·q + i] = Σ_{(n,k) in s} G[n,k] B_i[n,k] and dL/dz[s] = Σ_{(n,k) in s} G[n,k], with
// G = dyᵀ x the dense weight gradient; dx = dy · W.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"

namespace lutq::train {

struct ScaleParams {
  std::vector<float> alpha;   // num_scale_sets() * q
  std::vector<float> offset;  // num_scale_sets(), empty without offsets
};

// The fp32 master copy of w's scales (fp16 widened exactly).
ScaleParams scales_of(const format::BcqMatrix& w);
// Rounds p into w's fp16 scales. Error: sizes that do not match w, or a scale fp16 cannot hold.
Status store_scales(const ScaleParams& p, format::BcqMatrix& w);

// W[n][k] in fp32 from w's codes and the scales p (the training forward's weights).
std::vector<float> dequantize_with(const format::BcqMatrix& w, const ScaleParams& p);

// Adds to grad the scale and offset gradients that the dense weight gradient g [n][k] (dL/dW)
// implies for w's frozen codes. Error: mismatched sizes.
Status reduce_scale_grad(const format::BcqMatrix& w, const float* g, ScaleParams& grad);

// The backward of y = x · Wᵀ for x [m][k] and dy [m][n]: dx [m][k] (written; may be null) and
// the scale gradients added into grad (same sizes as p). Error: mismatched sizes.
Status bcq_linear_backward(const format::BcqMatrix& w, const ScaleParams& p, const float* x, const float* dy,
                           int64_t m, float* dx, ScaleParams& grad);

}  // namespace lutq::train
