// qwen2moe (Qwen1.5-MoE, Qwen2-57B-A14B): qwen2's attention (q/k/v biases, NeoX RoPE) and a
// mixture-of-experts feed-forward: softmax over all experts, the top-k weights used as they are
// (norm_topk_prob false) unless {arch}.expert_weights_norm says otherwise, plus a shared expert
// scaled by sigmoid(ffn_gate_inp_shexp · h).
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_qwen2moe(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNeox;
  c.qkv_bias = true;
  return read_expert_keys(ckpt, c, MoeTraits{.weights_norm = false, .shared_expert = true, .shared_gate = true});
}

}  // namespace

ArchDef qwen2moe_arch() { return {"qwen2moe", configure_qwen2moe, attention_then_moe}; }

}  // namespace lutq::model
