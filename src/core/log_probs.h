// Log-probabilities and the KL divergence between two next-token distributions: shared by
// perplexity evaluation (gen/perplexity.h) and loss-aware bit allocation (model/bit_allocation.h).
#pragma once

#include <span>

namespace lutq {

// out[i] = logits[i] - log Σ exp(logits) computed in double with the max subtracted.
void log_softmax(std::span<const float> logits, std::span<float> out);

// KL(base ‖ current) = Σ p_base (log p_base − log p_current) over one position's log-probs.
double kl_divergence(std::span<const float> base_log_probs, std::span<const float> log_probs);

}  // namespace lutq
