// Blocks: the pieces an architecture stacks into a layer (attention, SwiGLU feed-forward,
// mixture-of-experts feed-forward). Each block adds its output to the residual stream of the batch's rows. A new kind of
// block is one file implementing Block plus one row in the block table (blocks/block.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/adapter_rows.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/linear.h"
#include "model/linear_spec.h"
#include "model/memory.h"
#include "model/ops.h"

namespace lutq::model {

// Sees the input of every block linear layer during forward() (calibration, pipeline/):
// observe(layer, role, x[m][k]) is called before each linear, so q/k/v (and gate/up) each see
// the same x. A non-ok Status aborts the forward pass with that error.
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual Status observe(int64_t layer, LinearRole role, const float* x, int64_t m, int64_t k) = 0;
  // A mixture-of-experts block's expert linears: role kFfnGate / kFfnUp / kFfnDown of expert
  // `expert` (0..n_expert-1, or kSharedExpert), x [m][k] holding only the rows routed to it.
  // Ignored unless overridden, so that an observer of the dense roles never mixes experts in.
  static constexpr int64_t kSharedExpert = -1;
  virtual Status observe_expert(int64_t /*layer*/, LinearRole /*role*/, int64_t /*expert*/, const float* /*x*/,
                                int64_t /*m*/, int64_t /*k*/) {
    return Status::ok();
  }
};

// Scratch rows a forward pass reuses from layer to layer; blocks size them as they need.
struct Scratch {
  std::vector<float> h, q, k, v, att, gate, up;
  std::vector<float> moe_in, moe_out, router;  // mixture-of-experts: gathered rows, sum, router logits
  AdapterScratch adapter;  // rows of several scale adapters (model/adapter_rows.h)
  static float* rows(std::vector<float>& buf, int64_t m, int64_t width) {
    const auto need = static_cast<size_t>(m * width);
    if (buf.size() < need) buf.resize(need);
    return buf.data();
  }
};

// What every block of one forward pass shares.
struct ForwardContext {
  const ModelConfig& config;
  std::span<const BatchRow> rows;
  const RopeTable& rope;  // one row per batch row
  Memory& memory;
  ThreadPool& pool;
  OpIsa ops;
  LinearObserver* observer = nullptr;
  Scratch& scratch;
  Communicator* comm = nullptr;  // tensor parallelism (model/shard.h): the ranks sharing this pass

  int64_t m() const { return static_cast<int64_t>(rows.size()); }
  // lin.forward(in) on the batch's rows (each row through its adapter's version of the layer,
  // model/adapter_rows.h), preceded by the observer's look at the input.
  Status linear(int64_t layer, LinearRole role, const Linear& lin, const float* in, float* out) const {
    if (observer != nullptr) {
      if (Status s = observer->observe(layer, role, in, m(), lin.k()); !s) return s;
    }
    const Linear* lins[] = {&lin};
    float* outs[] = {out};
    return forward_by_adapter(lins, rows, in, outs, pool, scratch.adapter);
  }
  // Several layers that read the same input (q/k/v, gate/up): the observer sees each role's
  // input, then Linear::forward_shared runs them together (per adapter where rows name several).
  Status linears(int64_t layer, std::span<const LinearRole> roles, std::span<const Linear* const> lins, const float* in,
                 std::span<float* const> outs) const {
    if (observer != nullptr) {
      for (size_t j = 0; j < roles.size(); ++j) {
        if (Status s = observer->observe(layer, roles[j], in, m(), lins[j]->k()); !s) return s;
      }
    }
    return forward_by_adapter(lins, rows, in, outs, pool, scratch.adapter);
  }
  // Sums a row-split layer's partial output out[m][width] over the ranks (no-op on one).
  Status all_reduce(float* out, int64_t width) const {
    if (comm == nullptr || comm->size() == 1) return Status::ok();
    return comm->all_reduce_sum(out, m() * width);
  }
};

class Block {
 public:
  virtual ~Block() = default;
  // x [m][n_embd]: the residual stream of the batch's rows at layer `layer`, updated in place.
  virtual Status forward(int64_t layer, float* x, ForwardContext& ctx) const = 0;
  // The block's linear layer of this role, or nullptr.
  virtual Linear* find(LinearRole role) = 0;
  const Linear* find(LinearRole role) const { return const_cast<Block*>(this)->find(role); }
  // Mixture-of-experts blocks: expert `expert`'s (or LinearObserver::kSharedExpert) layer of role
  // kFfnGate / kFfnUp / kFfnDown, else nullptr; find() gives none of them.
  virtual Linear* find_expert(LinearRole /*role*/, int64_t /*expert*/) { return nullptr; }
  const Linear* find_expert(LinearRole role, int64_t expert) const {
    return const_cast<Block*>(this)->find_expert(role, expert);
  }
};

// A layer: its blocks, run in order.
using Layer = std::vector<std::unique_ptr<Block>>;

class LayerBuilder;

enum class BlockKind { kAttention, kSwigluFfn, kMoeFfn };

// A tensor a block reads: name, GGUF dims (ggml order), whether it must be present.
// `experts` > 0: a 3-D expert tensor {k, n, experts} that a lutq file may hold instead as one
// matrix per expert (lutqfile::expert_matrix_name, each of dims {k, n}); a file with neither the
// tensor nor every expert's matrix is refused naming the first missing one.
struct TensorExpectation {
  std::string name;
  std::vector<int64_t> dims;
  bool required = true;
  int64_t experts = 0;
};

// The tensors block `kind` of layer l reads under config c (shape checks at config time).
std::vector<TensorExpectation> block_tensors(BlockKind kind, const ModelConfig& c, int64_t l);
// Builds block `kind` of layer l from the checkpoint.
Result<std::unique_ptr<Block>> build_block(BlockKind kind, LayerBuilder& b, int64_t l);

}  // namespace lutq::model
