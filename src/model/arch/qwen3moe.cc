// qwen3moe (Qwen3-30B-A3B, Qwen3-235B-A22B): qwen3's attention (per-head q/k RMSNorm, NeoX RoPE,
// no biases) and a mixture-of-experts feed-forward without a shared expert: softmax over all
// experts, the top-k weights renormalised to sum to 1 (norm_topk_prob).
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_qwen3moe(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNeox;
  c.qk_norm = true;
  return read_expert_keys(ckpt, c, MoeTraits{.weights_norm = true});
}

}  // namespace

ArchDef qwen3moe_arch() { return {"qwen3moe", configure_qwen3moe, attention_then_moe}; }

}  // namespace lutq::model
