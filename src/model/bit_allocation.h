// Automatic mixed precision: bits per block linear layer chosen to meet a target average bits per
// weight at the least total sensitivity-weighted error.
//
// Every block layer is quantized (with its own choice: method, group, orientation, GPTQ) at each
// candidate bit count, and its error measured as E = Σ_{r,c} (W − Ŵ)²_rc · H_cc — the output
// error the layer would cause if its inputs were uncorrelated, H = Σ x xᵀ from calibration (all
// ones without calibration: plain squared error). Allocation starts every layer at the lowest
// candidate and repeatedly takes the upgrade with the largest error reduction per added storage
// bit that still fits the budget (a greedy solution of the knapsack; exact when the error curves
// are convex in bits).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "model/calibration.h"
#include "model/linear_spec.h"

namespace lutq::model {

struct BitAllocation {
  struct Layer {
    std::string name;
    int bits = 0;
    double bits_per_weight = 0.0;  // of the stored form at `bits`
    int64_t weights = 0;
  };
  std::vector<Layer> layers;
  double average_bpw = 0.0;  // over the block linear layers
  // One override per layer ("blk.L.role.weight=q=B"), to append to the spec.
  std::vector<LinearOverride> overrides() const;
};

// Candidate bit counts `candidates` (ascending, each 1..8). Errors: a target below what the
// lowest candidates store, or layers whose choice is dense / int8 (only BCQ layers take part).
Result<BitAllocation> allocate_bits(const io::Checkpoint& in, const LinearSpec& spec, double target_bpw,
                                    const std::vector<int>& candidates, const CalibrationStats* calib,
                                    ThreadPool& pool, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace lutq::model
