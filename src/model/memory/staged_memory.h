// StagedMemory: the base of every memory kind that keeps K/V (or what rebuilds them) in a compact
// form. attend() stores the batch's rows (store), then for each sequence in the batch decodes
// its positions 0..n-1 of the layer into fp32 scratch (load) and runs the fp32 attention loop of
// model/ops.h over them, so each kind writes only its encoder and decoder and the attention math
// exists once. The scratch is working space of one call, not kept state: bytes() leaves it out.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/memory.h"

namespace lutq::model {

class StagedMemory : public Memory {
 public:
  Status attend(int64_t layer, const AttentionRows& in, float* out, OpIsa ops, ThreadPool& pool) final;

 protected:
  explicit StagedMemory(const MemoryShape& shape) : Memory(shape) {}

  // Stores every row of `in` at its sequence and position for `layer`.
  virtual Status store(int64_t layer, const AttentionRows& in, OpIsa ops, ThreadPool& pool) = 0;
  // Writes positions 0..n-1 of sequence seq in `layer` as fp32 rows: k, v [n][n_head_kv·head_dim]
  // (RoPE applied to k).
  virtual Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows& in, float* k, float* v,
                      OpIsa ops, ThreadPool& pool) = 0;

  int64_t kv_dim() const { return shape().n_head_kv * shape().head_dim; }

 private:
  std::vector<float> k_, v_;
};

// Below this many flops a pool round trip costs more than the work: attention loops run inline.
inline constexpr int64_t kMinParallelFlops = int64_t{1} << 18;

// Runs fn(first, last) over [0, n) in chunks on the pool (inline when the work is small).
void for_positions(ThreadPool& pool, int64_t n, int64_t cost_per_position, FunctionRef<void(int64_t, int64_t)> fn);

// Calls fn(seq, n, rows) once per sequence of the batch, in order of first appearance: rows are
// the indices of that sequence's batch rows, n one past its last position. Stops at an error.
Status for_each_sequence(std::span<const BatchRow> batch,
                         FunctionRef<Status(int32_t, int64_t, const std::vector<int64_t>&)> fn);

}  // namespace lutq::model
