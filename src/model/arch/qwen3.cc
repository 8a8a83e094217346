// qwen3 (dense Qwen3): no biases; per-head RMSNorm of q and k (attn_q_norm / attn_k_norm, one
// weight of head_dim each) before RoPE, which pairs the halves of each head (NeoX). The head size
// comes from {arch}.attention.key_length and need not be n_embd / n_head.
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_qwen3(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNeox;
  c.qk_norm = true;
  // Experts only in a model split by `lutq moefy` (the trained MoE family is qwen3moe).
  return read_expert_keys(ckpt, c, MoeTraits{.required = false, .weights_norm = true});
}

}  // namespace

ArchDef qwen3_arch() { return {"qwen3", configure_qwen3, dense_or_moe}; }

}  // namespace lutq::model
