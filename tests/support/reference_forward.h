// An independent reference forward pass for the tiny models of tiny_llama.h, written from the
// Hugging Face definitions (Llama, Qwen2, Qwen3) rather than from the runtime's ops: double
// precision, naive loops, Q/K weights in Hugging Face's layout with rotate_half RoPE, q/k/v
// biases (Qwen2), per-head q/k RMSNorm (Qwen3), full-width q/k RMSNorm (OLMoE), and the sparse
// mixture-of-experts feed-forward of Mixtral / Qwen2-MoE / Qwen3-MoE / OLMoE (top-k routing
// written from the math, sharing no code with the runtime's block).
#pragma once

#include <cstdint>
#include <vector>

#include "support/tiny_llama.h"

namespace lutq::testing {

// What the reference pass saw on the way: the feed-forward input ffn_norm(x) of every layer
// and position, [layer][position][n_embd].
struct ReferenceTrace {
  std::vector<std::vector<std::vector<double>>> ffn_in;
};

// Logits [tokens][n_vocab] of every position of `tokens` (positions 0..T-1, causal); with
// `trace`, also the feed-forward inputs.
std::vector<std::vector<double>> reference_logits(const Tiny& t, const std::vector<int32_t>& tokens,
                                                  ReferenceTrace* trace = nullptr);

}  // namespace lutq::testing
