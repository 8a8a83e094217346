// olmoe (OLMoE-1B-7B): llama-like blocks with NeoX RoPE and RMSNorms of q and k over the whole
// projection (attn_q_norm has q_dim weights, attn_k_norm kv_dim; not per head), and a
// mixture-of-experts feed-forward: softmax over all experts, top-k weights not renormalised.
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_olmoe(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNeox;
  c.qk_norm = true;
  c.qk_norm_full = true;
  return read_expert_keys(ckpt, c, MoeTraits{.weights_norm = false});
}

}  // namespace

ArchDef olmoe_arch() { return {"olmoe", configure_olmoe, attention_then_moe}; }

}  // namespace lutq::model
