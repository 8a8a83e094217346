// The mixture-of-experts feed-forward block (docs/moe.md):
//
//   h = ffn_norm(x);  p = softmax(ffn_gate_inp · h) over the E experts
//   chosen = the top-k experts of p (ties: the lower index); w = p[chosen], renormalised to sum
//            to 1 when the family says so (ModelConfig::expert_weights_norm), or 1 each for a
//            model split by `lutq moefy` (expert_unit_weights)
//   x += Σ_{e in chosen} w_e · down_e(silu(gate_e(h)) · up_e(h))
//        (+ shared(h), scaled by sigmoid(ffn_gate_inp_shexp · h) when gated: qwen2moe)
//
// Execution is grouped by expert: the batch's rows are routed, each active expert gathers its
// rows into one contiguous block and runs gate/up/down once with m_e rows (its weights are read
// once per step), and the weighted outputs are scattered back. Experts come from the 3-D GGUF
// tensors ffn_{gate,up,down}_exps (ggml dims {n_embd, n_ff_exp, E} and {n_ff_exp, n_embd, E}),
// one Linear per expert, dense or quantized at load like any ffn_gate / ffn_up / ffn_down layer;
// in a lutq file expert e may instead be its own matrix blk.L.ffn_up_exps.e.weight (a BCQ, int8
// or QMoE entry; lutqfile::expert_matrix_name), which then takes the place of its slice.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/blocks/block.h"
#include "model/loader.h"

namespace lutq::model {

// The experts each row goes to: expert[r*k + j] with weight[r*k + j], j = 0..k-1 in
// descending probability.
struct Routing {
  int64_t k = 0;
  std::vector<int32_t> expert;
  std::vector<float> weight;
};

// How the chosen experts are weighted: their softmax probabilities (over all experts), those
// renormalised over the k, or 1 each (MoEfied dense models).
enum class ExpertWeights { kProbabilities, kRenormalised, kUnit };
ExpertWeights expert_weights(const ModelConfig& c);

// Routes m rows of router logits [m][n_expert] to their top-k experts (k <= n_expert). A NaN
// logit counts as -inf.
Routing route_rows(const float* logits, int64_t m, int64_t n_expert, int64_t k, ExpertWeights weights);

// The rows of each expert: those of expert e are row[offset[e] .. offset[e+1]) in ascending
// order, with their routing weights.
struct ExpertGroups {
  std::vector<int64_t> offset;  // n_expert + 1
  std::vector<int64_t> row;
  std::vector<float> weight;
};
ExpertGroups group_by_expert(const Routing& routing, int64_t m, int64_t n_expert);

// The shared expert's (qwen2moe) weight of `role` (kFfnGate / kFfnUp / kFfnDown) in block l:
// "blk.l.ffn_{gate,up,down}_shexp.weight". In a lutq file it may be a BCQ or int8 entry of that
// name instead of the fp32 tensor.
std::string shared_expert_weight(int64_t l, LinearRole role);

std::vector<TensorExpectation> moe_ffn_tensors(const ModelConfig& c, int64_t l);
Result<std::unique_ptr<Block>> build_moe_ffn(LayerBuilder& b, int64_t l);

}  // namespace lutq::model
