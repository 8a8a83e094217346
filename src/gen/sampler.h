// Next-token sampling from a row of logits: greedy (temperature 0) or temperature sampling
// restricted by top-k and top-p (nucleus). Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace lutq::gen {

struct SamplerOptions {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest index among ties)
  int32_t top_k = 40;        // <= 0: no limit
  float top_p = 0.95f;       // >= 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);

  // Picks a token id in [0, logits.size()). logits must not be empty. Non-finite logits
  // (NaN, -inf) never get picked unless every logit is non-finite (then the argmax rule applies
  // to the finite ones, else index 0).
  int32_t sample(std::span<const float> logits);

  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

// Index of the largest finite value, lowest index among ties; 0 when none is finite.
int32_t argmax(std::span<const float> values);

}  // namespace lutq::gen
