// One decoder layer (pre-norm attention then SwiGLU FFN, the dense llama/qwen2 layer) forward
// with its activations kept, and its backward: the gradient of the layer input and the dense
// gradient G = dyᵀ x of every linear weight, from which scale-only training reduces its α
// gradients (reduce_scale_grad in bcq_grad.h) and full fine-tuning would take W's. Weights are
// given as dense row-major matrices (a BCQ layer's dequantize_with()), T = float or double.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace lutq::train {

enum LayerLinear { kWq, kWk, kWv, kWo, kWgate, kWup, kWdown, kNumLayerLinears };

struct LayerShape {
  int64_t d = 0;       // hidden width
  int64_t n_head = 0;  // query heads
  int64_t n_kv = 0;    // key/value heads (divides n_head)
  int64_t hd = 0;      // head size
  int64_t n_ff = 0;    // FFN width
  double eps = 1e-5;   // RMSNorm epsilon
  bool neox = false;   // RoPE pairing
};

template <class T>
struct LayerParams {
  const T* attn_norm = nullptr;  // [d]
  const T* ffn_norm = nullptr;   // [d]
  std::array<const T*, kNumLayerLinears> w{};  // [n][k] each: q/k/v [heads·hd][d], o [d][n_head·hd],
                                               // gate/up [n_ff][d], down [d][n_ff]
  std::array<const T*, 3> qkv_bias{};          // optional [n] each (qwen2)
};

// What the backward needs of one forward over m rows.
template <class T>
struct LayerTape {
  int64_t m = 0;
  std::vector<T> x, h1, q, k, v, p, att, x2, h2, gate, up, act;
};

template <class T>
struct LayerGrads {
  std::vector<T> dx;                                 // [m][d]
  std::vector<T> attn_norm, ffn_norm;                // [d]
  std::array<std::vector<T>, kNumLayerLinears> w;    // [n][k] each, G = dyᵀ x
  std::array<std::vector<T>, 3> qkv_bias;            // [n] each where the layer has them
};

// y = layer(x) for one sequence of m rows at the positions cos/sin ([m][hd/2]) describe; the
// tape keeps what the backward reads.
template <class T>
void layer_forward(const LayerShape& s, const LayerParams<T>& p, const T* x, int64_t m, const T* cos, const T* sin,
                   T* y, LayerTape<T>& tape);

// The gradients of Σ dy ⊙ y with respect to x and every parameter (written).
template <class T>
void layer_backward(const LayerShape& s, const LayerParams<T>& p, const LayerTape<T>& tape, const T* cos, const T* sin,
                    const T* dy, LayerGrads<T>& g);

}  // namespace lutq::train
