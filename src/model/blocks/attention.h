// The attention block: h = attn_norm(x); q, k, v = attn_q/k/v(h) (+ biases where the
// architecture has them); optional per-head RMSNorm of q and k (attn_q_norm / attn_k_norm);
// RoPE in the architecture's pairing; the Memory stores k, v and attends; x += attn_output(att).
#pragma once

#include <memory>
#include <vector>

#include "model/blocks/block.h"
#include "model/loader.h"

namespace lutq::model {

std::vector<TensorExpectation> attention_tensors(const ModelConfig& c, int64_t l);
Result<std::unique_ptr<Block>> build_attention(LayerBuilder& b, int64_t l);

}  // namespace lutq::model
