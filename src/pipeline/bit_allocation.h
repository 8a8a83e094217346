// Automatic mixed precision: bits per block linear layer chosen to meet a target average bits per
// weight at the least total sensitivity.
//
// Mixture-of-experts models: each 3-D expert tensor (blk.L.ffn_up_exps.weight) is one layer of
// the allocation, all its routed experts at the same bits (lutq quantize resolves each expert by
// that name), counted with all its parameters (E·n·k: the file stores every expert); its
// sensitivity sums its experts' (each quantized as quantize_to_file does, on its own statistics,
// the plain fit below ExpertsOptions::min_rows rows), and the loss-aware mode swaps all of its
// experts at once. A shared expert's three matrices are layers of their own, like a dense FFN's.
//
// Every block layer is quantized (with its own choice: method, group, orientation, GPTQ) at each
// candidate bit count. Its sensitivity at each candidate is then, by AllocationOptions:
//   - loss-aware (kl_chunks given): the model is built with every block layer at the base
//     candidate (the spec's bits), and for each layer and each other candidate, that one layer is
//     swapped in and the mean KL divergence of the model's next-token distributions to the dense
//     model's is measured on kl_chunks; the layer's curve is the KL at each candidate (KL at the
//     base for the base), so layers are compared in the units of the loss;
//   - else the layer's calibrated output error tr((W − Ŵ) H (W − Ŵ)ᵀ) (H = Σ x xᵀ from
//     calibration; without calibration the plain squared weight error). Output errors of
//     different layers are not in the same units, so this mode is a heuristic.
// Allocation starts every layer at the lowest candidate and repeatedly takes the upgrade with the
// largest sensitivity reduction per added storage bit that still fits the budget (a greedy
// solution of the knapsack, exact when the curves are convex and the effects add up).
//
// The effects do not add up: on SmolLM2-135M, 79 layers sent to 2 bits each cost little alone and
// together far more than the sum. So the loss-aware mode also measures the whole model under the
// allocation made with each downgrade penalty of AllocationOptions::penalties (a layer's KL
// increase below its base bits counted that many times; infinity: no layer below the base), on
// held-out tokens (selection_chunks: the allocation is fitted to kl_chunks, so its KL there is
// biased low; measured on SmolLM2: 11 % better than uniform bits on kl_chunks, 7 % worse on the
// evaluation text), and keeps the allocation with the lowest KL there. With infinity among the
// penalties and a target at or above the base bits' size, the result is never worse on the
// held-out tokens than every layer at the base bits.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "pipeline/calibration.h"
#include "model/linear_spec.h"

namespace lutq::pipeline {

struct BitAllocation {
  struct Layer {
    std::string name;
    int bits = 0;
    double bits_per_weight = 0.0;  // of the stored form at `bits`
    int64_t weights = 0;
  };
  std::vector<Layer> layers;
  double average_bpw = 0.0;  // over the block linear layers
  // Loss-aware mode: each penalty's allocation with its average bpw and the model's KL on the
  // held-out chunks (the same allocation from two penalties is measured once), and the chosen
  // one's KL (the lowest). Output-error mode: no trials, kl NaN.
  struct Trial {
    double penalty = 1.0;
    double average_bpw = 0.0;
    double kl = 0.0;
  };
  std::vector<Trial> trials;
  double kl = std::numeric_limits<double>::quiet_NaN();
  // One override per layer ("blk.L.role.weight=q=B"), to append to the spec.
  std::vector<LinearOverride> overrides() const;
};

struct AllocationOptions {
  // Token chunks for the loss-aware sensitivity (each scored at every position); empty: the
  // calibrated output error.
  std::vector<std::vector<int32_t>> kl_chunks;
  // (layers quantized, total) and (measurements done, total); either may be empty.
  std::function<void(int64_t, int64_t)> progress;
  std::function<void(int64_t, int64_t)> kl_progress;
  // Loss-aware mode: held-out chunks the whole-model allocations are compared on (empty: kl_chunks),
  // and the downgrade penalties whose allocations are measured (see above).
  std::vector<std::vector<int32_t>> selection_chunks;
  std::vector<double> penalties = {1.0, 2.0, 4.0, 8.0, std::numeric_limits<double>::infinity()};
  // Routed experts that received fewer than this many calibration rows per input feature get the
  // plain fit (as ExpertsOptions::min_rows in quantize_to_file; keep the two equal).
  double expert_min_rows = 0.25;
};

// Candidate bit counts `candidates` (ascending, each 1..8). Errors: a target below what the
// lowest candidates store, or layers whose choice is dense / int8 (only BCQ layers take part; an
// MoE model's experts included). `calib` (may be null) of an MoE model must hold its experts'
// statistics (collect_hessians keeps them).
Result<BitAllocation> allocate_bits(const io::Checkpoint& in, const LinearSpec& spec, double target_bpw,
                                    const std::vector<int>& candidates, const CalibrationStats* calib,
                                    ThreadPool& pool, const AllocationOptions& options = {});

}  // namespace lutq::pipeline
