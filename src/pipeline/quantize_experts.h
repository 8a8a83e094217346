// The routed experts of an MoE model in a lutq file, one matrix per expert (docs/moe.md,
// "Quantized experts in the lutq file"): expert e of the 3-D tensor blk.L.ffn_up_exps.weight is
// written as blk.L.ffn_up_exps.e.weight (lutqfile::expert_matrix_name) and the 3-D tensor is left
// out of the file.
//   kBcq      each expert as LinearSpec resolves the 3-D tensor's name under its role (the
//             same -q / -g / --quant-method and overrides as at load time): a BCQ matrix
//             (lutq.bcq.N), or the 3-D tensor copied as it is when the choice keeps it dense.
//             No per-expert calibration statistics are collected yet, so GPTQ and AdaDim are
//             not applied to experts: they get the plain fit of the method (gptq: rtn, gptq-bcq:
//             alternating), unweighted.
//   kTernary  every expert ternary RTN (quant/ternary.h, one fp16 scale per row), one QMoE
//             dictionary built from all of them (format::build_dictionary) and written once,
//             each expert coded with it (lutq.qmoe.N).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/qmoe_code.h"
#include "io/checkpoint.h"
#include "io/gguf_writer.h"
#include "model/config.h"
#include "model/linear_spec.h"
#include "quant/ternary.h"

namespace lutq::pipeline {

struct QuantizedLayer;

enum class ExpertsForm : uint8_t { kBcq = 0, kTernary = 1 };

struct ExpertsOptions {
  ExpertsForm form = ExpertsForm::kBcq;
  quant::TernaryOptions ternary;          // kTernary: the row grids
  format::DictionaryOptions dictionary;   // kTernary: how the one dictionary is built
  std::string dict_name = "experts";      // kTernary: its name in the file (lutq.qmoe_dict.D)
};

// One 3-D expert tensor of the model: `experts` matrices of [n][k].
struct ExpertTensor {
  std::string name;  // blk.L.ffn_{gate,up,down}_exps.weight
  model::LinearRole role = model::LinearRole::kFfnGate;
  int64_t n = 0;
  int64_t k = 0;
  int64_t experts = 0;
};

// The model's expert tensors that are written one matrix per expert, layer by layer (gate, up,
// down); the others (kept dense by the spec) are copied as 3-D tensors. Empty for a dense model.
// Error: a spec that makes experts int8 (not written per expert).
Result<std::vector<ExpertTensor>> per_expert_tensors(const model::ModelConfig& c, const model::LinearSpec& spec,
                                                     const ExpertsOptions& opt);

// Writes every expert of `tensors` (per_expert_tensors) into `out`, calling `done` after each
// matrix (its QuantizedLayer: name, form, error, storage). Errors name the file and matrix.
// `dictionary_bytes` receives the QMoE dictionary's storage (0 for kBcq).
Status write_experts(const io::Checkpoint& in, const std::vector<ExpertTensor>& tensors,
                     const model::LinearSpec& spec, const ExpertsOptions& opt, io::GgufWriter& out, ThreadPool& pool,
                     const std::function<void(const QuantizedLayer&)>& done, int64_t& dictionary_bytes);

}  // namespace lutq::pipeline
