// ModelConfig: the hyper-parameters of a decoder-only transformer checkpoint, read from GGUF
// metadata ({arch}.* keys, llama.cpp names) and validated against the tensor directory.
//
// The architecture (general.architecture) is looked up in the registry (model/arch/registry.h),
// which sets what differs between families: the RoPE pairing, q/k/v biases, q/k norms. RoPE:
// optional linear scaling ({arch}.rope.scaling.type = "linear" / {arch}.rope.scale_linear) and
// Llama-3.1-style per-frequency factors (the rope_freqs.weight tensor, which is how llama.cpp
// stores llama3 scaling). YaRN / LongRoPE and other scaling types are rejected by name.
// Mixture-of-experts layers ({arch}.expert_count > 0) are read by the families that have them
// (llama as Mixtral, qwen2moe, qwen3moe, olmoe; docs/moe.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq::io {
class Checkpoint;
}

namespace lutq::model {

enum class RopeScalingType { kNone, kLinear, kFreqFactors };

// Which values RoPE rotates together: kNormal (llama.cpp mode 0) adjacent pairs (x[2i], x[2i+1]),
// the layout of GGUF llama weights, whose converter permuted Q/K rows; kNeox (mode 2) the halves
// (x[i], x[i + dim/2]), Hugging Face's rotate_half, used as is by qwen2 / qwen3 GGUFs.
enum class RopeMode { kNormal, kNeox };
const char* rope_mode_name(RopeMode mode);

// "none", "linear", "freq-factors".
const char* rope_scaling_name(RopeScalingType type);

struct RopeConfig {
  RopeMode mode = RopeMode::kNormal;
  double freq_base = 10000.0;  // θ base
  int64_t dim = 0;             // rotated dimensions per head (n_rot), even, <= head_dim
  RopeScalingType scaling = RopeScalingType::kNone;
  double linear_factor = 1.0;  // kLinear: positions are divided by this
  // kFreqFactors: dim/2 divisors of the per-pair frequencies (rope_freqs.weight), else empty.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  std::string arch;             // general.architecture
  std::string name;             // general.name when present
  int64_t context_length = 0;   // trained context (n_ctx_train)
  int64_t n_embd = 0;           // hidden size
  int64_t n_layer = 0;
  int64_t n_ff = 0;             // feed-forward (intermediate) size
  int64_t n_head = 0;           // query heads
  int64_t n_head_kv = 0;        // key/value heads (grouped-query attention)
  int64_t head_dim = 0;         // key_length (= value_length)
  int64_t n_vocab = 0;
  float rms_eps = 1e-5f;
  RopeConfig rope;
  bool tied_output = false;     // no output.weight: the head reuses token_embd.weight
  bool qkv_bias = false;        // attn_q/k/v carry .bias tensors (qwen2)
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (qwen3: attn_q_norm, attn_k_norm)
  bool qk_norm_full = false;    // with qk_norm: one RMSNorm over the whole q / k projection (olmoe)

  // Mixture of experts (n_expert == 0: every layer has a dense SwiGLU FFN).
  int64_t n_expert = 0;            // {arch}.expert_count
  int64_t n_expert_used = 0;       // {arch}.expert_used_count: experts per token (top-k)
  int64_t n_ff_exp = 0;            // {arch}.expert_feed_forward_length (default feed_forward_length)
  int64_t n_ff_shexp = 0;          // shared expert width; 0: no shared expert
  bool expert_weights_norm = false;  // renormalise the top-k routing weights to sum to 1
  // Every chosen expert weighs 1 ({arch}.expert_unit_weights, lutq's own key, written by
  // `lutq moefy`: a split dense FFN is the plain sum of its parts). Takes precedence over the norm.
  bool expert_unit_weights = false;
  bool shexp_gate = false;         // the shared expert is scaled by sigmoid(ffn_gate_inp_shexp · h)

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  int64_t n_rep() const { return n_head / n_head_kv; }  // query heads per kv head

  // Reads and validates the metadata and the shapes of every tensor the forward pass binds.
  // Errors name the file and the key or tensor, e.g.
  //   "m.gguf: unsupported architecture 'gpt2' (supported: llama, qwen2, qwen3)".
  static Result<ModelConfig> from_checkpoint(const io::Checkpoint& gguf);

  // One line for logs: "llama 'SmolLM2 135M' 30 layers, hidden 576, ...".
  std::string summary() const;
};

// The registered architectures, comma separated (for messages).
std::string supported_architectures();

}  // namespace lutq::model
