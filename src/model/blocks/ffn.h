// The SwiGLU feed-forward block: h = ffn_norm(x); x += ffn_down(silu(ffn_gate(h)) · ffn_up(h)).
#pragma once

#include <memory>
#include <vector>

#include "model/blocks/block.h"
#include "model/loader.h"

namespace lutq::model {

std::vector<TensorExpectation> swiglu_ffn_tensors(const ModelConfig& c, int64_t l);
Result<std::unique_ptr<Block>> build_swiglu_ffn(LayerBuilder& b, int64_t l);

}  // namespace lutq::model
