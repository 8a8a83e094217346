// Routers for `lutq moefy` fitted on calibration tokens (see moefy_router.cc for the fit).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "pipeline/calibration.h"  // the model names the pipeline uses
#include "core/thread_pool.h"
#include "model/model.h"

namespace lutq::pipeline {

// Runs the dense `model` over `chunks` and fits, per layer, the router rows [E][n_embd] that
// predict each neuron cluster's activation mass (clusters[l][i]: the cluster of neuron i).
// ridge: λ relative to the mean diagonal of Σ h hᵀ.
Result<std::vector<std::vector<float>>> fit_routers(const Model& model, const std::vector<std::vector<int32_t>>& clusters,
                                                    int64_t experts, std::span<const std::vector<int32_t>> chunks,
                                                    double ridge, ThreadPool& pool);

}  // namespace lutq::pipeline
