// Tensor parallelism (Megatron-style): which part of each layer one rank of N holds.
//
//   attention: whole KV-head groups per rank; q/k/v column-split (their output rows: the rank's
//              KV heads and the query heads that share them), attn_output row-split (its input
//              columns: the same heads); all-reduce of the block output.
//   SwiGLU FFN: gate/up column-split over n_ff, ffn_down row-split; all-reduce of the block output.
//   output head: row-split over the vocabulary, the logits all-gathered (every rank gets all).
//   embedding, norms: replicated.
//
// Biases of column-split layers are split with them; a row-split layer's bias is added once (on
// rank 0), since the all-reduce sums every rank's partial output. Each rank's ModelConfig is the
// local one (its heads, KV heads and n_ff), so the blocks, the Memory and its shape are sized
// for the rank's share. docs/scale-out.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "format/bcq_matrix.h"
#include "lutqfile/lutq_file.h"
#include "model/config.h"
#include "model/linear_spec.h"

namespace lutq::model {

struct ShardPlan {
  int rank = 0;
  int size = 1;
  int64_t kv_begin = 0, kv_end = 0;  // the rank's KV heads
  int64_t ff_begin = 0, ff_end = 0;  // the rank's slice of n_ff
  int64_t n_rep = 1;                 // query heads per KV head
  int64_t vocab_begin = 0, vocab_end = 0;  // the rank's rows of the output head
  std::vector<int64_t> vocab_counts;       // every rank's rows of the head, in rank order
};

// Splits `full` over `size` ranks: KV heads as evenly as whole heads allow (3 over 2: 2 + 1), n_ff
// in units of the largest of 256/128/64/32 that gives every rank at least one (so BCQ groups of
// ffn_down stay whole), else of 1; the vocabulary (the head's rows) likewise. Errors: more ranks
// than KV heads.
Result<ShardPlan> plan_shard(const ModelConfig& full, int rank, int size);
// The configuration rank `plan.rank` computes with: n_head, n_head_kv and n_ff of its share.
ModelConfig local_config(const ModelConfig& full, const ShardPlan& plan);

enum class SplitAxis { kNone, kRows, kCols };  // rows: output features n; cols: input features k

// The part of a [n][k] weight a rank reads: rows or columns [begin, end).
struct TensorSlice {
  SplitAxis axis = SplitAxis::kNone;
  int64_t begin = 0;
  int64_t end = 0;
  bool bias_here = true;  // false: a row-split layer's bias, added on rank 0 only
};

// The slice of block linear `role` under the plan (kNone for roles TP does not split).
TensorSlice slice_for(const ShardPlan& plan, const ModelConfig& full, LinearRole role);
// The output head's slice: its rows [vocab_begin, vocab_end).
TensorSlice head_slice(const ShardPlan& plan);

// Rows or columns of a dense row-major [n][k] matrix.
std::vector<float> slice_dense(const std::vector<float>& w, int64_t n, int64_t k, const TensorSlice& s);
// The bias of a layer under the slice (its rows for a column split; whole or empty for a row split).
std::vector<float> slice_bias(std::vector<float> bias, const TensorSlice& s);
// Rows or columns of a BCQ matrix; the slice must start and end on the groups of the split axis
// (per-OC groups run along k, per-IC along n). The error names `name`, the group size and the slice.
Result<format::BcqMatrix> slice_bcq(const format::BcqMatrix& w, const TensorSlice& s, const std::string& name);
// Rows or columns of an int8 layer (per-row scales are kept: each column slice is a partial sum).
lutqfile::Int8Entry slice_int8(const lutqfile::Int8Entry& w, const TensorSlice& s);

// What ranks compare at start: the model file's size, a hash of its first bytes (header and
// metadata) and a hash of the program version. Errors: a file that cannot be read.
struct ModelFingerprint {
  uint64_t file_size = 0;
  uint64_t header_hash = 0;
  uint64_t version_hash = 0;
};
Result<ModelFingerprint> fingerprint_file(const std::string& path, const std::string& version);
// Every rank's fingerprint against rank 0's; any mismatch is an error on every rank (naming the
// ranks that differ on those ranks). A collective: every rank must call it.
Status check_same_model(const ModelFingerprint& mine, Communicator& comm);

}  // namespace lutq::model
