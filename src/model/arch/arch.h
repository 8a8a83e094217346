// Architectures: one file each (arch/llama.cc, arch/qwen2.cc, ...), registered by one row in
// arch/registry.cc, keyed by GGUF general.architecture. An architecture says what its family
// changes on top of the common hyper-parameters (RoPE pairing, biases, q/k norms, extra keys)
// and which blocks make up each layer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/blocks/block.h"
#include "model/config.h"

namespace lutq::io {
class Checkpoint;
}

namespace lutq::model {

struct ArchDef {
  std::string_view name;
  // Sets the family's fields of c (the common keys are read already); may read {arch}.* keys.
  // Errors name the file and the key.
  Status (*configure)(const io::Checkpoint& ckpt, ModelConfig& c);
  // The blocks of layer l, in order.
  std::vector<BlockKind> (*layer_blocks)(const ModelConfig& c, int64_t l);
};

ArchDef llama_arch();
ArchDef qwen2_arch();
ArchDef qwen3_arch();
ArchDef qwen2moe_arch();
ArchDef qwen3moe_arch();
ArchDef olmoe_arch();

// The registered architecture of this name, or nullptr.
const ArchDef* find_arch(std::string_view name);

// A dense pre-norm decoder layer: attention then SwiGLU feed-forward.
std::vector<BlockKind> attention_then_swiglu(const ModelConfig& c, int64_t l);
// Attention then the mixture-of-experts feed-forward.
std::vector<BlockKind> attention_then_moe(const ModelConfig& c, int64_t l);
// A dense family that may carry experts ({arch}.expert_count > 0: Mixtral as llama, or a dense
// model split by `lutq moefy`): the MoE layer when it does, else the dense one.
std::vector<BlockKind> dense_or_moe(const ModelConfig& c, int64_t l);

// What a mixture-of-experts family reads and assumes (arch/moe.cc).
struct MoeTraits {
  bool required = true;          // expert_count must be present and positive (false: llama, dense without it)
  bool weights_norm = false;     // default for renormalising the top-k weights ({arch}.expert_weights_norm overrides)
  bool shared_expert = false;    // a shared expert (width {arch}.expert_shared_feed_forward_length, else n_ff)
  bool shared_gate = false;      // ... scaled by sigmoid(ffn_gate_inp_shexp · h)
};
// Reads {arch}.expert_count, expert_used_count, expert_feed_forward_length,
// expert_shared_feed_forward_length, expert_weights_norm and expert_unit_weights into c. Errors name the file and key.
Status read_expert_keys(const io::Checkpoint& ckpt, ModelConfig& c, const MoeTraits& traits);

}  // namespace lutq::model
