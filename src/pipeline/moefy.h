// MoEfication: a dense llama / qwen2 / qwen3 GGUF turned into a mixture-of-experts GGUF of the
// same architecture (docs/moe.md). Each layer's n_ff SwiGLU neurons are split into E clusters of
// n_ff / E neurons by balanced k-means over their (unit-normalised) ffn_gate rows; expert j holds
// its neurons' ffn_gate / ffn_up rows and ffn_down columns, and the router row j is the mean of
// the cluster's gate rows (its score is the average gate pre-activation of the cluster), or with
// calibration tokens a least-squares fit of the clusters' activation mass. The file
// gets {arch}.expert_count / expert_used_count / expert_feed_forward_length and
// {arch}.expert_unit_weights = true (lutq's key: each chosen expert weighs 1, so with top-k = E
// the model is the dense one up to summation order); the dense ffn_gate/up/down are removed.
// Experts and routers are written F32; every other tensor keeps its source type.
// A converted MoE, not a trained one: label its figures so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "pipeline/calibration.h"  // the model names the pipeline uses
#include "core/thread_pool.h"
#include "io/checkpoint.h"

namespace lutq::pipeline {

struct MoefyOptions {
  int64_t experts = 8;     // E: must divide n_ff
  int64_t top_k = 2;       // experts per token, 1..E
  int iterations = 15;     // balanced k-means rounds
  uint32_t seed = 1;
  // Calibration token chunks: when given, each router is fitted by ridge least squares to predict
  // its clusters' activation mass on them (moefy_router.h) instead of the mean gate rows.
  std::vector<std::vector<int32_t>> calib;
  double ridge = 1e-2;
};

struct MoefyReport {
  std::string arch;
  int64_t layers = 0;
  int64_t n_ff = 0;
  int64_t n_ff_exp = 0;
  int64_t calib_tokens = 0;  // 0: routers from the mean gate rows
  double seconds = 0.0;
};

// Balanced k-means of the rows of x [n][d] into `clusters` groups of n / clusters rows each
// (clusters must divide n), by cosine similarity to the centroids: cluster[i] for each row.
std::vector<int32_t> balanced_clusters(const float* x, int64_t n, int64_t d, int64_t clusters, int iterations,
                                       uint32_t seed);

// Reads `in` (a dense GGUF, not a lutq file) and writes the converted model to out_path.
// Errors: an unsupported or already-MoE model, E not dividing n_ff, top_k outside 1..E.
Result<MoefyReport> moefy_to_file(const io::Checkpoint& in, const MoefyOptions& opt, const std::string& out_path,
                                  ThreadPool& pool);

}  // namespace lutq::pipeline
