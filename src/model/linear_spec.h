// LinearSpec: how each linear layer of a model is stored and multiplied — dense fp32 or BCQ (bits,
// group, quantizer, orientation, offset) on a kernel backend — by layer type, refined by ordered
// per-tensor overrides:
//
//   --override ffn_down=q=4,g=64          every block's ffn_down at 4 bits, group 64
//   --override 'blk.0.*=dense'            block 0 stays dense
//   --override 'blk.*.attn_v=method=rtn'  only the quantizer changes
//   --override output=dense               keep the output head in fp32 (8-bit when quantizing)
//
// A pattern is a layer type (attn_q ... ffn_down, or `output` for the head) or a glob (`*`, `?`)
// over the GGUF tensor name, with or without its ".weight" suffix. Later overrides win.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/kernel.h"
#include "quant/quantize.h"

namespace lutq::model {

// The linear layers of a transformer block, named by their GGUF tensor suffix.
enum class LinearRole : uint8_t { kAttnQ, kAttnK, kAttnV, kAttnOutput, kFfnGate, kFfnUp, kFfnDown };
constexpr int kNumLinearRoles = 7;

// "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down".
const char* role_name(LinearRole role);
// ffn_gate, ffn_up and ffn_down, in that order: the roles an MoE block holds once per expert.
inline constexpr LinearRole kFfnRoles[] = {LinearRole::kFfnGate, LinearRole::kFfnUp, LinearRole::kFfnDown};
constexpr bool is_ffn_role(LinearRole role) {
  return role == LinearRole::kFfnGate || role == LinearRole::kFfnUp || role == LinearRole::kFfnDown;
}
Result<LinearRole> parse_role(std::string_view name);

// How one layer is stored and multiplied.
struct LinearChoice {
  bool quantize = false;  // false: dense fp32
  quant::QuantOptions quant;  // quant.cfg: q, g, orientation, offset
  kernels::Isa isa = kernels::Isa::kAvx2;
  kernels::Precision precision = kernels::Precision::kFast;
  // When quant.cfg.g does not divide the grouped dimension (e.g. g=128 and k=576), use the
  // largest standard group size below it that does (the layer's describe() shows it); false
  // makes that an error.
  bool adapt_group = true;
  // With quantize: LLM.int8() instead of BCQ (kernels/int8/int8_gemm.h): int8 weights with
  // per-row scales; input features at or above int8_threshold run in fp32 against an fp16 copy
  // of the weights, the rest with zero-point int8 activations (+inf: plain int8, absmax
  // activations, no copy). quant/isa/precision are then unused.
  bool int8 = false;
  float int8_threshold = 6.0f;
  // GPTQ (quant/gptq.h) with quant.method fitting each group's grid (rtn: uniform, alternating:
  // BCQ), optionally in activation order; AdaDim: quantize per-OC and per-IC and keep the lower
  // calibrated error. Both need calibration statistics (quantize_to_file's `calib`).
  bool gptq = false;
  bool act_order = false;
  bool adadim = false;
  // FlexRound (quant/flexround.h): uniform codes whose rounding is learned against the layer's
  // calibrated output error, `flexround_steps` Adam steps; per-OC only. Needs calibration.
  bool flexround = false;
  int flexround_steps = 100;
  // The loss-aware clipping search (quant/clip_search.h) around the plain fit (rtn, greedy,
  // alternating; per-OC). Needs calibration; not with GPTQ or AdaDim.
  bool clip_search = false;
};

// A quantizer name: rtn, greedy, alternating (plain), gptq (uniform grids), gptq-bcq
// (alternating BCQ grids) or flexround (learned rounding of uniform grids). Sets
// choice.quant.method, choice.gptq and choice.flexround.
Status apply_quantizer(std::string_view name, LinearChoice& choice);

// One --override: a pattern and the fields it sets (unset fields keep the base choice).
struct LinearOverride {
  std::string pattern;
  bool dense = false;  // "dense": store the layer in fp32, ignoring the fields below
  std::optional<int> q;
  std::optional<int64_t> g;
  std::optional<std::string> quantizer;  // apply_quantizer name
  std::optional<format::Orientation> orientation;
  std::optional<bool> adadim;  // orientation=auto
  std::optional<bool> offset;
  std::optional<int> scale_bits;  // 0 (fp16) or 4..8: compressed scales
  std::optional<bool> clip_search;  // clip=0|1
  std::optional<float> int8_threshold;  // "int8" (6.0), "int8=plain" (+inf) or "int8=T"
};

// Parses "PATTERN=ITEM[,ITEM...]" with ITEM one of: dense, q=N (or bits=N), g=N (or group=N),
// method=rtn|greedy|alternating|gptq|gptq-bcq|flexround, orientation=oc|ic|auto, offset=0|1, scale_bits=B
// (0 or 4..8: compressed scales), clip=0|1 (the clipping search), int8 (LLM.int8(), outlier
// threshold 6), int8=T (threshold T) or int8=plain (no outlier split). Errors quote the bad item.
Result<LinearOverride> parse_override(std::string_view text);

struct LinearSpec {
  std::array<LinearChoice, kNumLinearRoles> roles{};  // all dense by default
  LinearChoice output;  // the output head: dense by default
  std::vector<LinearOverride> overrides;

  const LinearChoice& operator[](LinearRole r) const { return roles[static_cast<size_t>(r)]; }
  LinearChoice& operator[](LinearRole r) { return roles[static_cast<size_t>(r)]; }
  // Whether any block layer or the head may be quantized (base choices or overrides).
  bool any_quantized() const;

  // The choice for tensor `tensor_name` of type `role` (nullopt: the output head).
  LinearChoice resolve(std::string_view tensor_name, std::optional<LinearRole> role) const;

  static LinearSpec dense() { return {}; }
  // Every block role quantized the same way; the head to 8-bit uniform (RTN, offset, same g).
  static LinearSpec quantized(const quant::QuantOptions& opt, kernels::Isa isa, kernels::Precision precision);
};

// Glob match with `*` (any run, also empty) and `?` (one character).
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace lutq::model
