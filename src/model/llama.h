// The Llama architecture (llama.cpp "llama": Llama 1/2/3, Mistral, SmolLM, TinyLlama, ...):
// weight binding from GGUF, a per-sequence KV cache, and the straight-line forward pass
//
//   x = token_embd[tokens]
//   per block l:  h = attn_norm(x);  q,k,v = attn_q/k/v(h);  RoPE(q,k);  cache ← k,v
//                 x += attn_output(causal GQA attention(q, cache))
//                 h = ffn_norm(x);  x += ffn_down(silu(ffn_gate(h)) · ffn_up(h))
//   logits = output(output_norm(x))       (output = token_embd when tied)
//
// All tokens of one forward() call go through every linear layer as one GEMM with m = number
// of tokens (batched prefill); m = 1 is decode. Tensor names stay the GGUF / Hugging Face ones.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/linear_layer.h"

namespace lutq::io {
class Checkpoint;
}

namespace lutq::model {

struct LoadOptions {
  LinearSpec linear;             // dense fp32 for every layer type by default
  // Backend and precision for BCQ matrices a lutq file already holds (quantize-at-load layers
  // use their LinearChoice's); no isa: the best for this CPU (or LUTQ_ISA).
  std::optional<kernels::Isa> isa;
  kernels::Precision precision = kernels::Precision::kFast;
  bool allow_avx2 = true;        // dense GEMM and attention use AVX2+FMA when the CPU has it
  // Called after each block with (blocks done, blocks total); quantizing loads are slow.
  std::function<void(int64_t, int64_t)> progress;
};

enum class LogitsMode { kLast, kAll };

// Sees the input of every block linear layer during forward() (calibration, model/calibration.h):
// observe(layer, role, x[m][k]) is called before each linear, so q/k/v (and gate/up) each see
// the same x. A non-ok Status aborts the forward pass with that error.
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual Status observe(int64_t layer, LinearRole role, const float* x, int64_t m, int64_t k) = 0;
};

class KvCache;

// One sequence's next token for LlamaModel::forward_batch: `token` at position `pos` of `cache`.
struct BatchItem {
  int32_t token = 0;
  int64_t pos = 0;
  KvCache* cache = nullptr;
};

// Keys and values of one sequence, fp32, [layer][position][n_head_kv·head_dim].
class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  // Positions 0..size()−1 hold valid entries.
  int64_t size() const { return size_; }
  void clear() { size_ = 0; }
  // Forgets positions >= n (n <= size()), e.g. to re-run from a shared prefix.
  void truncate(int64_t n) { size_ = n < size_ ? (n < 0 ? 0 : n) : size_; }
  int64_t bytes() const;

  float* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data(); }
  float* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data(); }
  const float* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].data(); }
  const float* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].data(); }

 private:
  friend class LlamaModel;
  int64_t capacity_ = 0;
  int64_t size_ = 0;
  int64_t n_layer_ = 0;
  int64_t kv_dim_ = 0;
  std::vector<std::vector<float>> k_;
  std::vector<std::vector<float>> v_;
};

struct LlamaLayer {
  std::vector<float> attn_norm;
  std::vector<float> ffn_norm;
  std::vector<LinearLayer> linear;  // indexed by LinearRole
  const LinearLayer& operator[](LinearRole r) const { return linear[static_cast<size_t>(r)]; }
};

class LlamaModel {
 public:
  // Reads the config (ModelConfig::from_checkpoint validates metadata and shapes) and builds
  // every linear layer: a BCQ matrix stored in a lutq file goes straight to its kernel backend;
  // a dense tensor is dequantized to fp32 and kept dense or quantized on `pool` as
  // options.linear.resolve() says. The embedding table stays fp32; the head is dense unless
  // the spec or the file quantizes it.
  static Result<LlamaModel> load(const io::Checkpoint& gguf, const LoadOptions& options, ThreadPool& pool);

  const ModelConfig& config() const { return config_; }

  // A cache for one sequence; capacity <= 0 means the trained context length.
  Result<KvCache> make_cache(int64_t capacity = 0) const;

  // Runs tokens at positions start_pos.. (start_pos <= cache.size(); entries from start_pos on
  // are overwritten) and writes logits: [vocab] for the last token (kLast) or
  // [tokens.size()][vocab] (kAll). Errors: empty input, a token outside the vocabulary, a gap
  // in the cache, the cache too small ("KV cache full"), a cache of another model.
  Status forward(std::span<const int32_t> tokens, int64_t start_pos, KvCache& cache, float* logits,
                 ThreadPool& pool, LogitsMode mode = LogitsMode::kLast, LinearObserver* observer = nullptr) const;

  // Decode step of several independent sequences (continuous batching; llama_batch.cc): every
  // item is one token at its own position in its own cache. The linear layers run once with
  // m = items.size(); attention runs per item against its own cache. logits: [items][vocab].
  // Errors as forward(), plus a null or repeated cache.
  Status forward_batch(std::span<const BatchItem> items, float* logits, ThreadPool& pool) const;

  const LlamaLayer& layer(int64_t l) const { return layers_[static_cast<size_t>(l)]; }
  // Swaps in another form of block l's `role` layer (e.g. a GPTQ-quantized one after
  // calibration); its shape must match. Not thread-safe with a running forward().
  Status replace_linear(int64_t l, LinearRole role, LinearLayer layer);
  const LinearLayer& output() const { return output_; }
  const float* token_embedding() const { return token_embd_->data(); }

  // Weight bytes streamed per decoded token: block linears + output head (the embedding lookup
  // reads one row), and the same for the block linears alone.
  int64_t weight_bytes() const;
  int64_t block_weight_bytes() const;
  // Multi-line description: config summary and each distinct linear-layer form.
  std::string describe() const;

 private:
  LlamaModel(ModelConfig config, std::shared_ptr<const std::vector<float>> token_embd, LinearLayer output)
      : config_(std::move(config)), token_embd_(std::move(token_embd)), output_(std::move(output)) {}

  ModelConfig config_;
  std::shared_ptr<const std::vector<float>> token_embd_;  // [n_vocab][n_embd]
  LinearLayer output_;
  std::vector<float> output_norm_;
  std::vector<LlamaLayer> layers_;
  bool use_avx2_ = false;
};

}  // namespace lutq::model
