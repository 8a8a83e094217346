// Model: a decoder-only transformer of any registered architecture (model/arch/): load,
// make_memory, forward(batch, memory, logits). This is the one thing generation, perplexity, the
// server and calibration see. The forward pass exists once (model/forward.cc):
//
//   x = token_embd[tokens]
//   per layer l, per block of the architecture's layer (attention, SwiGLU FFN, ...):
//       x += block(x)          (blocks/; attention reads and writes the Memory)
//   logits = output(output_norm(x))   for the rows that ask for logits (output = token_embd when tied)
//
// All rows of one batch go through every linear layer as one GEMM with m = number of rows:
// prefill of one sequence, decode of one, and continuous batching of many are the same call.
// Tensor names stay the GGUF / Hugging Face ones.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/batch.h"
#include "model/blocks/block.h"
#include "model/config.h"
#include "model/embedding.h"
#include "model/linear.h"
#include "model/loader.h"
#include "model/memory.h"
#include "model/shard.h"

namespace lutq::io {
class Checkpoint;
}

namespace lutq::model {

// The storage of a model's quantizable block matrices: attention, dense FFN, and, in a
// mixture-of-experts model, every routed expert and the shared expert, each counted once (unlike
// Model::block_weight_bytes, which averages the routed experts over tokens). Biases are not
// counted: they are never quantized.
struct LinearStats {
  int64_t linears = 0;            // block linears outside the experts (Model::linear)
  int64_t quantized = 0;          // of which quantized
  int64_t expert_matrices = 0;    // routed and shared expert matrices (Model::expert_linear)
  int64_t experts_quantized = 0;  // of which quantized
  int64_t params = 0;             // Σ n·k over all of them
  int64_t bytes = 0;              // Σ stored weight bytes over all of them
  // Bits per weight over all of them (0 when there are none).
  double bpw() const { return params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0; }
};

class Model {
 public:
  // Reads the config (ModelConfig::from_checkpoint validates metadata and shapes) and builds
  // every block: a BCQ / int8 matrix stored in a lutq file goes straight to its kernel; a dense
  // tensor is dequantized to fp32 and kept dense or quantized on `pool` as options.linear says.
  // The embedding table stays fp32; the head is dense unless the spec or the file quantizes it.
  static Result<Model> load(const io::Checkpoint& ckpt, const LoadOptions& options, ThreadPool& pool);

  const ModelConfig& config() const { return config_; }
  const OpIsa& ops() const { return ops_; }

  // A memory for `sequences` sequences of `capacity` positions each (<= 0: the trained
  // context). Errors: a size that would not fit (kOutOfMemory).
  Result<std::unique_ptr<Memory>> make_memory(int64_t capacity = 0, int64_t sequences = 1,
                                              MemoryKind kind = MemoryKind::kF32,
                                              const MemoryOptions& options = {}) const;
  MemoryShape memory_shape(int64_t capacity, int64_t sequences) const;

  // Runs the batch's rows and writes the logits of the rows that ask for them, in row order,
  // [batch.logits_rows()][vocab]. Rows of one sequence must have consecutive positions, the
  // first at most memory.size(seq) (later entries are overwritten). Errors: an empty batch, a
  // token outside the vocabulary, a sequence outside the memory, a gap or repeat in a sequence's
  // positions, a full memory ("KV cache full"), a memory made for another model.
  Status forward(const Batch& batch, Memory& memory, float* logits, ThreadPool& pool,
                 LinearObserver* observer = nullptr) const;
  // One sequence's tokens at positions start_pos.. : logits [vocab] of the last token (kLast)
  // or [tokens][vocab] (kAll).
  Status forward(std::span<const int32_t> tokens, int64_t start_pos, Memory& memory, float* logits, ThreadPool& pool,
                 LogitsMode mode = LogitsMode::kLast, LinearObserver* observer = nullptr, int32_t seq = 0) const;

  // The pieces of forward() for a caller that walks the layers itself (layer-by-layer
  // calibration, pipeline stages): the residual stream x [rows][n_embd] of the batch's tokens,
  // then layers [first, last) applied to it. No checks beyond forward()'s own: the batch must be
  // valid for the memory (check_batch), and only forward() updates the memory's sizes.
  Status check_batch(const Batch& batch, const Memory& memory) const;
  std::vector<float> embed(const Batch& batch) const;
  Status forward_layers(const Batch& batch, Memory& memory, float* x, int64_t first, int64_t last, ThreadPool& pool,
                        LinearObserver* observer = nullptr) const;

  // Block l's linear layer of `role` (nullptr when the layer has none).
  const Linear* linear(int64_t l, LinearRole role) const;
  // Layer l's mixture-of-experts linear of `role` (kFfnGate / kFfnUp / kFfnDown) of expert
  // `expert` (or LinearObserver::kSharedExpert); nullptr when there is none.
  const Linear* expert_linear(int64_t l, LinearRole role, int64_t expert) const;
  // Swaps in another form of block l's `role` layer (e.g. a GPTQ-quantized one after
  // calibration); its shape must match (its bias is kept). Not thread-safe with a running forward().
  Status replace_linear(int64_t l, LinearRole role, Linear layer);
  // The same for a mixture-of-experts linear (expert_linear's layer; e.g. the bit allocation's
  // candidates). Errors: no such layer, another shape.
  Status replace_expert_linear(int64_t l, LinearRole role, int64_t expert, Linear layer);
  const Linear& output() const { return output_; }

  // Per-request scale adapters (lutqfile/adapter.h, written by `lutq tune --adapter-out`): adds one
  // whose scales stand in for the model's in the BCQ block layers it names, for the batch rows
  // that ask for it (BatchRow::adapter = the returned index: 1, 2, ...). Each adapted layer is
  // repacked with the adapter's scales beside the model's own (the adapter costs the packed bytes
  // of the layers it changes, `bytes`); every other layer, the embedding and the head are shared.
  // Not thread-safe with a running forward(). Errors (nothing added): a sharded model, an adapter
  // for other codes or shapes, one naming a matrix that is not a BCQ block layer of this model.
  struct AddedAdapter {
    int32_t index = 0;
    int64_t layers = 0;  // layers it changes
    int64_t bytes = 0;   // packed bytes of its versions of them
  };
  Result<AddedAdapter> add_adapter(const lutqfile::Adapter& adapter);
  int32_t adapters() const { return n_adapters_; }
  // Tensor parallelism: the communicator the model was loaded with (nullptr: none) and this
  // rank's shard (nullopt: the whole model). config() is then the rank's local configuration.
  Communicator* communicator() const { return comm_; }
  const std::optional<ShardPlan>& shard() const { return shard_; }
  const Embedding& token_embedding() const { return token_embd_; }

  // Weight bytes streamed per decoded token: block linears + output head (the embedding lookup
  // reads one row), and the same for the block linears alone.
  int64_t weight_bytes() const;
  int64_t block_weight_bytes() const;
  // Bytes of the prefill copies BCQ matrices hold beside the layout decoding streams (the int8
  // or uniform-grid codes of LUTQ_GEMM_PATH=auto|int8; kernels/linear.h), over blocks and head.
  int64_t prefill_copy_bytes() const;
  // Counts, parameters and stored bytes of the quantizable block matrices (LinearStats).
  LinearStats block_linear_stats() const;
  // Multi-line description: config summary, backend, and each distinct linear-layer form.
  std::string describe() const;

 private:
  Model(ModelConfig config, Embedding token_embd, Linear output)
      : config_(std::move(config)), token_embd_(std::move(token_embd)), output_(std::move(output)) {}

  Linear* find_linear(int64_t l, LinearRole role);
  Linear* find_expert_linear(int64_t l, LinearRole role, int64_t expert);
  // Tensor parallelism: this rank's rows of the head for `rows` normed rows h, all-gathered into
  // logits [rows][n_vocab] on every rank.
  Status sharded_head(const float* h, int64_t rows, float* logits, ThreadPool& pool) const;  // linear() and replace_linear() both look here

  ModelConfig config_;
  Embedding token_embd_;  // [n_vocab][n_embd]
  Linear output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  OpIsa ops_;
  Communicator* comm_ = nullptr;
  std::optional<ShardPlan> shard_;
  int32_t n_adapters_ = 0;
};

}  // namespace lutq::model
