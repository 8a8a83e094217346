// A `lutq tune` run's state, so that a run stopped part-way (--run-steps, or killed after a
// checkpoint) continues with --resume to the same scales an uninterrupted run gives, bit for bit:
// the step count, the position in the shuffled sequence order and the generator that shuffles it,
// the fp32 trained parameters and both AdamW moments (double) of every optimized tensor.
//
// File: GGUF v3 (read back through the project's fuzzed GGUF reader).
//   lutq.tune_state.format_version  uint32, 1
//   lutq.tune_state.fingerprint     string, 16 hex digits: what decides the run's trajectory (the
//                                   options, the tokens, the trainable tensors' names and sizes)
//   lutq.tune_state.step / .next    int64: steps done, training sequences drawn
//   lutq.tune_state.order           int64 array: the training sequences in their current order
//   lutq.tune_state.rng             string: the std::mt19937 state as the standard streams it
//   lutq.tune_state.held_out_before float64: the held-out loss before the first step
//   tensors per optimized tensor N (e.g. "blk.0.attn_q.weight.alpha"): N.params F32 [size],
//   N.m and N.v F64 [size].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq::io {
class GgufFile;
}

namespace lutq::train {

struct TuneState {
  std::string fingerprint;  // 16 hex digits
  int64_t step = 0;
  int64_t next = 0;
  std::vector<int64_t> order;
  std::string rng;
  double held_out_before = 0.0;
  struct Tensor {
    std::string name;
    std::vector<float> params;
    std::vector<double> m, v;
  };
  std::vector<Tensor> tensors;
};

// Written beside `path` and renamed when complete (a crash leaves the previous checkpoint).
Status save_tune_state(const std::string& path, const TuneState& state);
// Errors name the file: not a tune state, another version, a missing key or tensor, a tensor of
// the wrong type or size, non-finite parameters.
Result<TuneState> load_tune_state(const std::string& path);
// The same from an open GGUF file (fuzzing).
Result<TuneState> read_tune_state(const io::GgufFile& f);

// FNV-1a 64 of bytes, chained from `h` (for fingerprints).
uint64_t fnv1a(const void* data, size_t size, uint64_t h = 14695981039346656037ull);

}  // namespace lutq::train
