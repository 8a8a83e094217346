// Tiny random models for tests: the same weights written as a GGUF image or as a Hugging Face
// folder (config.json + safetensors, optionally sharded, in F32/F16/BF16; llama only), so that
// both readers can be checked against each other and against a reference forward pass.
// arch "llama" gets its Q/K rows permuted the way llama.cpp's converter does (adjacent-pair
// RoPE); "qwen2" (q/k/v biases) and "qwen3" (q/k norms, a head size of its own) keep Hugging
// Face's row order, as the converter does for those families (NeoX RoPE).
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gen/vocab.h"
#include "io/gguf_file.h"

namespace lutq::testing {

struct TinySpec {
  std::string arch = "llama";
  int64_t n_embd = 64;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t n_ff = 128;
  int64_t n_vocab = 50;
  int64_t n_layer = 2;
  int64_t head_dim = 0;  // 0: n_embd / n_head (written as key_length when set)
  int64_t ctx = 64;
  double rope_base = 10000.0;
  std::string rope_scaling;  // "" (no key), "linear", "yarn", ...
  float rope_factor = 1.0f;
  bool freq_factors = false;  // write rope_freqs.weight (Llama-3.1 style)
  bool tied = false;
  bool tokens_metadata = true;
  std::string tokenizer_model;  // "llama": also write tokenizer.ggml.model and scores (a loadable SentencePiece vocabulary)
  std::string drop_tensor;     // leave this tensor out
  std::string misshape_tensor; // write this tensor with dims[0] + 1
  // Mixture of experts (tiny_moe_spec): n_expert > 0 writes ffn_gate_inp and 3-D
  // ffn_{gate,up,down}_exps instead of the dense FFN (arch llama = Mixtral, qwen2moe with a gated
  // shared expert of n_ff_shexp, qwen3moe, olmoe with full-width q/k norms).
  int64_t n_expert = 0;
  int64_t n_expert_used = 2;
  int64_t n_ff_exp = 0;       // > 0: written as expert_feed_forward_length, else experts are n_ff wide
  int64_t n_ff_shexp = 0;     // > 0 (qwen2moe): shared expert width, written as expert_shared_feed_forward_length
  int weights_norm_key = -1;  // 0 / 1: write {arch}.expert_weights_norm
  uint32_t seed = 7;
};

// Weights in Hugging Face layout (W[n,k] row-major, Q/K not permuted), as the floats written.
struct TinyWeights {
  std::vector<float> embd, out, out_norm, freq_factors;
  struct Layer {
    std::vector<float> attn_norm, ffn_norm, wq, wk, wv, wo, wg, wu, wd;
    std::vector<float> bq, bk, bv;        // qwen2
    std::vector<float> q_norm, k_norm;    // qwen3, [head_dim]; olmoe [q_dim] / [kv_dim]
    std::vector<float> router;            // [n_expert][n_embd]
    std::vector<std::vector<float>> eg, eu, ed;  // per expert: [ff][e], [ff][e], [e][ff]
    std::vector<float> sg, su, sd, shexp_gate;   // shared expert, its gate [n_embd]
  };
  std::vector<Layer> layers;
};

struct Tiny {
  TinySpec spec;
  TinyWeights w;
  std::vector<uint8_t> bytes;  // the GGUF image
};

std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale, float mean = 0.0f);

// llama.cpp convert_hf_to_gguf permute(): within each head, GGUF row 2i+half = HF row
// half*(hd/2)+i, so HF's rotate_half pairs (i, i+hd/2) become adjacent pairs (2i, 2i+1).
std::vector<float> permute_qk(const std::vector<float>& w, int64_t n_heads, int64_t k);

// A small MoE spec of `arch` (llama, qwen2moe, qwen3moe, olmoe): 6 experts, top-2.
TinySpec tiny_moe_spec(const std::string& arch);
// tiny_moe_spec("qwen2moe") with expert widths that suit groups of 32 (routed 32, shared 64).
TinySpec tiny_qwen2moe_spec_g32();
// The experts' width of a spec, and whether its family renormalises the top-k weights.
int64_t tiny_expert_ff(const TinySpec& s);
bool tiny_expert_weights_norm(const TinySpec& s);

// Random weights for `s` and their GGUF image.
Tiny make_tiny(const TinySpec& s);

struct HfFolderOptions {
  int shards = 1;             // > 1: model-0000i-of-0000n.safetensors + model.safetensors.index.json
  std::string dtype = "F32";  // F32, F16 or BF16
  bool lm_head_when_tied = false;  // write lm_head.weight even with tie_word_embeddings
};

// Writes `t`'s weights as a Hugging Face checkpoint folder (config.json + safetensors; no
// tokenizer files). Linear RoPE scaling is written as rope_scaling; freq_factors cannot be.
void write_hf_folder(const Tiny& t, const std::filesystem::path& dir, const HfFolderOptions& opt = {});

// The batched forward pass and the server's scheduler need a model and a tokenizer, not
// particular weights: a smaller TinySpec, opened as a GgufFile (fails the calling test if the
// reader refuses it), and a vocabulary of plain-text tokens for it.
TinySpec small_tiny_spec();
// The head size of a spec (head_dim, or n_embd / n_head).
int64_t tiny_head_dim(const TinySpec& s);
io::GgufFile tiny_llama_gguf(const TinySpec& spec = small_tiny_spec());

// Token i is the text "t<i> " (all normal tokens; no BOS/EOS).
gen::Vocab tiny_llama_vocab(const TinySpec& spec = small_tiny_spec());

}  // namespace lutq::testing
