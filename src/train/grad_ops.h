// The backward pass of the ops a decoder block is made of (issue 14, `lutq tune`): each op's
// forward as training computes it and its gradient with respect to its inputs (and RMSNorm's
// weight), row-major, for T = float (training) and T = double (the finite-difference checks in
// grad_ops_test.cc). Gradients are written, not accumulated, unless a function says so.
//
// Shapes: m rows (tokens); d the normalised width; hd the head size; a head layout
// [rows][heads][hd] as the model's q/k/v rows hold it.
#pragma once

#include <cstdint>

namespace lutq::train {

// y[m][d] = x · r · w with r = 1 / sqrt(mean(x²) + eps) per row.
template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t m, int64_t d, double eps, T* y);
// dx[m][d] and, accumulated over rows into dw[d] (dw += ...), the weight's gradient.
template <class T>
void rmsnorm_backward(const T* x, const T* w, int64_t m, int64_t d, double eps, const T* dy, T* dx, T* dw);

// h[i] = silu(gate[i]) · up[i] over n elements; the backward gives dgate and dup from dh.
template <class T>
void swiglu_forward(const T* gate, const T* up, int64_t n, T* h);
template <class T>
void swiglu_backward(const T* gate, const T* up, int64_t n, const T* dh, T* dgate, T* dup);

// RoPE over rows of `heads` heads of size hd, in place. cos/sin: [m][hd/2], the angle of pair i
// at each row's position. neox pairs (i, i + hd/2); otherwise (2i, 2i + 1). The backward is the
// inverse rotation applied to the gradient (inverse = true).
template <class T>
void rope_apply(T* x, int64_t m, int64_t heads, int64_t hd, const T* cos, const T* sin, bool neox, bool inverse);

// Causal attention of one sequence's m rows, grouped-query: q [m][n_head][hd], k and v
// [m][n_kv][hd] (n_head a multiple of n_kv), row i attends rows 0..i with scores scale·q·k.
// out [m][n_head][hd]; p (optional, [n_head][m][m]) keeps the probabilities for the backward.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t m, int64_t n_head, int64_t n_kv, int64_t hd,
                       double scale, T* out, T* p);
// dq [m][n_head][hd], dk and dv [m][n_kv][hd] (written) from dout, given the forward's p.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* p, int64_t m, int64_t n_head, int64_t n_kv,
                        int64_t hd, double scale, const T* dout, T* dq, T* dk, T* dv);

}  // namespace lutq::train
