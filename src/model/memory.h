// Memory: what attention keeps of past positions, for several sequences (the KV cache behind an
// interface, in the spirit of llama.cpp's llama_memory_i). The model never touches cache storage:
// each attention block hands its layer's new rows to attend(), which stores what this kind of
// memory keeps and computes the attention of every row over its sequence's positions 0..pos.
// A quantized KV cache or an XQuant cache (which keeps the normed input x and rebuilds K, V) is
// one new implementation of this interface plus one row in make_memory (model/memory/).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/ops.h"

namespace lutq::model {

// A layer's key/value path as a memory that caches the layer input (XQuant) rebuilds K and V:
// k = k_norm(x·W_kᵀ + b_k) rotated at its position, v = x·W_vᵀ + b_v. Implemented by the
// attention block, which hands itself to attend() in AttentionRows::kv; the memory depends only
// on this interface, never on the block.
class KvProjector {
 public:
  virtual ~KvProjector() = default;
  // k, v [m][kv_dim] = x [m][n_embd] through the layer's k/v linears, biases included, before
  // the k norm and RoPE.
  virtual Status project(const float* x, int64_t m, float* k, float* v, ThreadPool& pool) const = 0;
  // The k or the v half of project() alone: k or v [m][kv_dim].
  virtual Status project_keys(const float* x, int64_t m, float* k, ThreadPool& pool) const = 0;
  virtual Status project_values(const float* x, int64_t m, float* v, ThreadPool& pool) const = 0;
  virtual std::span<const float> k_bias() const = 0;  // [kv_dim] or empty
  virtual std::span<const float> v_bias() const = 0;
  // The RoPE table of positions first..first+count-1 under the layer's RoPE configuration.
  virtual RopeTable rope_table(int64_t first, int64_t count) const = 0;
  // Applies the k norm (when the architecture has one) and RoPE to k [m][kv_dim] in place, row t
  // rotated by row first_row + t of `rope`.
  virtual void position_keys(float* k, int64_t m, const RopeTable& rope, int64_t first_row) const = 0;
};

// One layer's new rows as attention sees them, all [m][width] row-major, m = rows.size().
struct AttentionRows {
  std::span<const BatchRow> rows;
  const float* q = nullptr;  // [m][n_head·head_dim], RoPE applied
  const float* k = nullptr;  // [m][n_head_kv·head_dim], RoPE applied
  const float* v = nullptr;  // [m][n_head_kv·head_dim]
  const float* x = nullptr;  // [m][n_embd], the normed block input the projections saw
  const KvProjector* kv = nullptr;  // the layer's k/v path (needed by the XQuant kinds only)
};

struct MemoryShape {
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t capacity = 0;   // positions per sequence
  int64_t sequences = 0;
  bool operator==(const MemoryShape&) const = default;
};

class Memory {
 public:
  virtual ~Memory() = default;

  virtual std::string_view kind() const = 0;  // "f32", ...
  const MemoryShape& shape() const { return shape_; }
  int64_t capacity() const { return shape_.capacity; }
  int64_t sequences() const { return shape_.sequences; }

  // Positions 0..size(seq)-1 of sequence seq hold valid entries.
  int64_t size(int32_t seq) const { return sizes_[static_cast<size_t>(seq)]; }
  // Forgets positions >= n of seq (e.g. to re-run from a shared prefix); n >= size is a no-op.
  void truncate(int32_t seq, int64_t n);
  void clear(int32_t seq) { truncate(seq, 0); }
  // Set by Model::forward: invalidated to the batch's first position before it runs, advanced
  // past its last position when it succeeds.
  void set_size(int32_t seq, int64_t n) { sizes_[static_cast<size_t>(seq)] = n; }

  // Bytes held, and bytes one position of one sequence costs over all layers.
  virtual int64_t bytes() const = 0;
  virtual int64_t bytes_per_token() const = 0;

  // Stores layer `layer`'s rows (at their own sequence and position), then writes to out
  // [m][n_head·head_dim] each row's causal attention over positions 0..pos of its sequence.
  // Query head h reads kv head h / (n_head / n_head_kv); scores scaled by 1/sqrt(head_dim).
  virtual Status attend(int64_t layer, const AttentionRows& rows, float* out, OpIsa ops, ThreadPool& pool) = 0;

 protected:
  explicit Memory(const MemoryShape& shape) : shape_(shape), sizes_(static_cast<size_t>(shape.sequences), 0) {}

 private:
  MemoryShape shape_;
  std::vector<int64_t> sizes_;
};

// The kinds (docs/memory.md): fp32 / fp16 K,V; int8 K,V per token and kv head; KIVI-style 4-bit
// (keys per channel over groups of tokens, values per token, the newest tokens in fp32);
// XQuant (the quantized layer input, K and V rebuilt each step); XQuant-CL (cross-layer deltas).
enum class MemoryKind { kF32, kF16, kQ8, kQ4, kXQuant, kXQuantCl };
const char* memory_kind_name(MemoryKind kind);
Result<MemoryKind> parse_memory_kind(std::string_view name);  // "f32", "f16", "q8", ...
// Whether the memories of this kind rebuild K and V in attend from each layer's cached input
// through the model's own k/v layers (xquant, xquant-cl) instead of storing them: rows whose k/v
// layers differ (a per-request adapter's) cannot use such a memory. The one statement of this
// fact; for a memory at hand, ask it of parse_memory_kind(memory.kind()).
bool rebuilds_from_layer_inputs(MemoryKind kind);

// How XQuant splits W = [W_k; W_v] into blocks with a basis each (memory/kv_basis.h): one
// joint basis, W_k and W_v apart, one block per kv head of each, or W_k per kv head and W_v whole.
// XQuant-CL always takes the joint basis (its maps need one orthonormal basis).
enum class XQuantBasis { kJoint, kSplit, kPerHead, kHeadKeys };

// Parameters of the XQuant kinds (the others ignore them).
struct MemoryOptions {
  int x_bits = 4;           // bits per cached input value, 2..8, or 32: kept in fp32 (tests)
  int64_t cl_anchor = 4;    // XQuant-CL: every cl_anchor-th layer (from 0) is stored whole
  XQuantBasis basis = XQuantBasis::kJoint;  // XQuant (low-rank layers): the latent's blocks
  bool operator==(const MemoryOptions&) const = default;
};
// A kind and its options as written on a command line: "q8", "xquant", "xquant:2",
// "xquant-cl:3" (the suffix sets x_bits), "xquant:4:head" (then the basis: joint, split, head,
// head-keys; xquant only).
struct MemorySpec {
  MemoryKind kind = MemoryKind::kF32;
  MemoryOptions options;
};
Result<MemorySpec> parse_memory_spec(std::string_view text);
Status check_memory_options(const MemoryOptions& options);
std::string memory_spec_name(const MemorySpec& spec);  // "xquant:2"; plain name at the default bits

// Bytes a memory of this kind and shape would hold (for planning, before allocating).
int64_t memory_bytes(MemoryKind kind, const MemoryShape& shape, const MemoryOptions& options = {});
// How many sequences of shape.capacity positions a memory of this kind fits in budget_bytes
// (shape.sequences ignored; fixed costs such as XQuant's bases counted once): the server's
// slots for a memory budget. 0 when not even one fits.
int64_t sequences_in_budget(MemoryKind kind, const MemoryShape& shape, const MemoryOptions& options,
                            double budget_bytes);
// A memory of this kind; errors when the shape is invalid or would not fit (kOutOfMemory).
Result<std::unique_ptr<Memory>> make_memory(MemoryKind kind, const MemoryShape& shape,
                                            const MemoryOptions& options = {});

}  // namespace lutq::model
