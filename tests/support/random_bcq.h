// Random inputs for kernel tests: BCQ matrices with random planes, fp16 scales and offsets, and
// activation rows; a per-run seed that failures print (LUTQ_TEST_SEED=... reproduces a run); and
// the check that two matrices are the same.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "format/bcq_matrix.h"

namespace lutq::testing {

// The run's seed: LUTQ_TEST_SEED if set, else fresh from std::random_device.
uint64_t test_seed();

// A valid matrix with uniformly random planes, α ~ N(0, 1) and offsets ~ N(0, 0.5), all rounded
// to fp16. Padding bits stay zero.
format::BcqMatrix random_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng);

// random_bcq with uniform scales: in every group α_i = α_0·2^i exactly (RTN's grids), so
// kernels::lut_uniform holds for q in 2..4 per-OC. The coded form has 8-bit codes, one code per
// group for all planes and super scales S_i = S_0·2^i (α ≥ 0, as encode_scales makes them).
format::BcqMatrix uniform_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng);
format::BcqMatrix uniform_coded_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng);

// m*k activations ~ N(0, 1), with a few large outliers (as real activations have).
std::vector<float> random_activations(int64_t m, int64_t k, std::mt19937_64& rng);

// Expects `got` to equal `want` field by field: shape, configuration, planes, scales, offsets,
// compressed scale codes.
void expect_same_bcq(const format::BcqMatrix& got, const format::BcqMatrix& want);

}  // namespace lutq::testing
