// Hugging Face checkpoint folders in GGUF terms: config.json and tokenizer.json (+
// tokenizer_config.json) are translated into the llama.cpp metadata keys that
// model::ModelConfig and gen::Tokenizer read, the way llama.cpp's convert_hf_to_gguf.py writes
// them. Used by HfCheckpoint (hf_checkpoint.h); exposed for tests.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "io/gguf_types.h"

namespace lutq::io {

// std::map-backed: ordered_json looks keys up linearly, quadratic on a 150k-token vocabulary.
using HfJson = nlohmann::json;
using MetadataList = std::vector<std::pair<std::string, GgufValue>>;

// What the tensor mapping needs from config.json beyond the metadata.
struct HfModelInfo {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t vocab_size = 0;           // config vocab_size, 0 when absent
  bool tied_embeddings = false;     // tie_word_embeddings: lm_head.weight is not used
  std::vector<float> rope_freqs;    // llama3 RoPE scaling: rope_freqs.weight (head_dim / 2 factors)
};

// The llama.cpp regexes of the byte-level BPE pre-tokenizers recognised in tokenizer.json.
inline constexpr const char* kHfGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* kHfLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* kHfQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Appends general.* and llama.* keys for a dense Llama-family config.json (LlamaForCausalLM,
// MistralForCausalLM). `where` (the config.json path) prefixes errors; `name` is general.name.
// Errors: unknown architecture/model_type (listing the supported ones), missing or mistyped
// fields, unsupported features (biases, activations other than silu).
Result<HfModelInfo> hf_config_to_gguf(const HfJson& config, const std::string& where, const std::string& name,
                                      MetadataList& out);

// Appends tokenizer.ggml.* (and tokenizer.chat_template) for a byte-level BPE tokenizer.json.
// `tokenizer_config` and `config` may be null JSON (absent files); `chat_template` overrides the
// template (chat_template.jinja) when non-empty; `vocab_size` (> 0) pads the token list with
// "[PAD<id>]" unused tokens as llama.cpp does. `where` (the folder) prefixes errors.
Status hf_tokenizer_to_gguf(const HfJson& tokenizer, const HfJson& tokenizer_config, const HfJson& config,
                            int64_t vocab_size, const std::string& chat_template, const std::string& where,
                            MetadataList& out);

}  // namespace lutq::io
