// The architecture registry: one row per architecture file.
#include <array>

#include "model/arch/arch.h"

namespace lutq::model {
namespace {

const std::array<ArchDef, 6>& registry() {
  static const std::array<ArchDef, 6> kArchs = {llama_arch(),    qwen2_arch(),    qwen3_arch(),
                                                qwen2moe_arch(), qwen3moe_arch(), olmoe_arch()};
  return kArchs;
}

}  // namespace

const ArchDef* find_arch(std::string_view name) {
  for (const ArchDef& a : registry()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string supported_architectures() {
  std::string s;
  for (const ArchDef& a : registry()) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

std::vector<BlockKind> attention_then_swiglu(const ModelConfig&, int64_t) {
  return {BlockKind::kAttention, BlockKind::kSwigluFfn};
}

std::vector<BlockKind> attention_then_moe(const ModelConfig&, int64_t) {
  return {BlockKind::kAttention, BlockKind::kMoeFfn};
}

std::vector<BlockKind> dense_or_moe(const ModelConfig& c, int64_t l) {
  return c.n_expert > 0 ? attention_then_moe(c, l) : attention_then_swiglu(c, l);
}

}  // namespace lutq::model
