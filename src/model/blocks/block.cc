// The block table: one row per kind of block.
#include "model/blocks/block.h"

#include <array>

#include "model/blocks/attention.h"
#include "model/blocks/ffn.h"
#include "model/blocks/moe_ffn.h"

namespace lutq::model {
namespace {

struct BlockDef {
  BlockKind kind;
  std::vector<TensorExpectation> (*tensors)(const ModelConfig&, int64_t);
  Result<std::unique_ptr<Block>> (*build)(LayerBuilder&, int64_t);
};

constexpr std::array<BlockDef, 3> kBlocks = {{
    {BlockKind::kAttention, attention_tensors, build_attention},
    {BlockKind::kSwigluFfn, swiglu_ffn_tensors, build_swiglu_ffn},
    {BlockKind::kMoeFfn, moe_ffn_tensors, build_moe_ffn},
}};

const BlockDef& def(BlockKind kind) {
  for (const BlockDef& d : kBlocks) {
    if (d.kind == kind) return d;
  }
  return kBlocks[0];
}

}  // namespace

std::vector<TensorExpectation> block_tensors(BlockKind kind, const ModelConfig& c, int64_t l) {
  return def(kind).tensors(c, l);
}

Result<std::unique_ptr<Block>> build_block(BlockKind kind, LayerBuilder& b, int64_t l) { return def(kind).build(b, l); }

}  // namespace lutq::model
