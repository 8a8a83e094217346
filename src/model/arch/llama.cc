// llama (llama.cpp "llama": Llama 1/2/3, Mistral, SmolLM, TinyLlama, ...): RMSNorm pre-norm
// blocks, no biases, RoPE over adjacent pairs (GGUF llama weights have their Q/K rows permuted by
// the converter so that this equals Hugging Face's rotate_half), SwiGLU feed-forward.
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

Status configure_llama(const io::Checkpoint&, ModelConfig& c) {
  c.rope.mode = RopeMode::kNormal;
  return Status::ok();
}

}  // namespace

ArchDef llama_arch() { return {"llama", configure_llama, attention_then_swiglu}; }

}  // namespace lutq::model
