// A Hugging Face checkpoint (Llama family) seen as a Checkpoint: safetensors weights (one file or
// shards named by model.safetensors.index.json), config.json, tokenizer.json and
// tokenizer_config.json, presented exactly as llama.cpp's convert_hf_to_gguf.py would have
// written them into a GGUF file (hf_metadata.h for the metadata):
//   - tensors under their GGUF names with ggml dims (HF shape [out, in] -> dims {in, out}):
//     model.embed_tokens -> token_embd, model.layers.N.{input_layernorm -> attn_norm,
//     self_attn.{q,k,v,o}_proj -> attn_{q,k,v,output}, post_attention_layernorm -> ffn_norm,
//     mlp.{gate,up,down}_proj -> ffn_{gate,up,down}}, model.norm -> output_norm,
//     lm_head -> output (left out with tie_word_embeddings); other tensors keep their HF names
//     (those whose dtype has no ggml type or whose shape ggml cannot hold are not listed);
//   - attn_q / attn_k rows permuted inside dequantize() from HF's rotate-half RoPE layout to the
//     adjacent-pair layout (llama.cpp's permute with n_head resp. n_head_kv); tensor_bytes() is
//     therefore empty for those two and the stored bytes for every other tensor;
//   - rope_freqs.weight synthesized for rope_scaling type llama3.
// Opened from the folder, from model.safetensors(.index.json), or from any one .safetensors
// file (its folder supplies config.json and the tokenizer files). Weights are mmapped.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"
#include "io/hf_metadata.h"
#include "io/safetensors.h"

namespace lutq::io {

class HfCheckpoint final : public Checkpoint {
 public:
  static Result<HfCheckpoint> open(const std::string& path);

  HfCheckpoint(HfCheckpoint&&) noexcept = default;
  HfCheckpoint& operator=(HfCheckpoint&&) noexcept = default;
  HfCheckpoint(const HfCheckpoint&) = delete;
  HfCheckpoint& operator=(const HfCheckpoint&) = delete;

  const std::string& path() const override { return path_; }
  const char* format_name() const override { return "safetensors"; }
  const GgufValue* find(std::string_view key) const override;
  std::vector<std::string> keys() const override;
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const override;
  std::span<const uint8_t> tensor_bytes(const TensorInfo& info) const override;
  Result<std::vector<float>> dequantize(const TensorInfo& info) const override;

  size_t num_shards() const { return shards_.size(); }
  // The HF name a listed tensor came from ("" for synthesized ones).
  std::string source_name(const TensorInfo& info) const;

 private:
  HfCheckpoint() = default;

  // Where a listed tensor's data comes from.
  struct Source {
    int64_t shard = -1;       // index into shards_, -1: owned (synthesized) data
    size_t tensor = 0;        // index into that shard's tensors()
    int64_t permute_heads = 0;  // > 0: rows permuted rotate-half -> adjacent pairs with this many heads
    std::vector<float> owned;
  };

  Status load_weights(const std::vector<std::string>& shard_paths, const HfJson* weight_map, const HfModelInfo& info);
  void add_tensor(TensorInfo info, Source source);
  // Index of `info` in tensors_ when it is one of ours (same name and geometry), else -1.
  int64_t index_of(const TensorInfo& info) const;

  std::string path_;
  std::vector<SafetensorsFile> shards_;
  MetadataList kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::vector<Source> sources_;  // parallel to tensors_
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// HF tensor name -> GGUF name ("" when it is not a Llama weight).
std::string hf_to_gguf_tensor_name(std::string_view hf_name);

}  // namespace lutq::io
