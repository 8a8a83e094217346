// qwen2 (Qwen2, Qwen2.5, Qwen2.5-Coder): llama's blocks with biases on q/k/v, RoPE over the
// halves of each head (NeoX pairing; the GGUF converter does not permute Q/K for qwen2), usually
// an untied output head and rope base 1e6 (both read from the file).
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_qwen2(const io::Checkpoint& ckpt, ModelConfig& c) {
  c.rope.mode = RopeMode::kNeox;
  c.qkv_bias = true;
  // Experts only in a model split by `lutq moefy` (the trained MoE family is qwen2moe).
  return read_expert_keys(ckpt, c, MoeTraits{.required = false, .weights_norm = true});
}

}  // namespace

ArchDef qwen2_arch() { return {"qwen2", configure_qwen2, dense_or_moe}; }

}  // namespace lutq::model
