// llama (llama.cpp "llama": Llama 1/2/3, Mistral, SmolLM, TinyLlama, ...): RMSNorm pre-norm
// blocks, no biases, RoPE over adjacent pairs (GGUF llama weights have their Q/K rows permuted by
// the converter so that this equals Hugging Face's rotate_half), SwiGLU feed-forward.
// With llama.expert_count > 0 (Mixtral, and models converted by `lutq moefy`), every layer's
// feed-forward is a mixture of experts: softmax over the top-k router logits (the softmax over all
// experts renormalised over the chosen ones), no shared expert.
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_llama(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNormal;
  return read_expert_keys(ckpt, c, MoeTraits{.required = false, .weights_norm = true});
}

}  // namespace

ArchDef llama_arch() { return {"llama", configure_llama, dense_or_moe}; }

}  // namespace lutq::model
