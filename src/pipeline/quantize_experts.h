// The routed experts of an MoE model in a lutq file, one matrix per expert (docs/moe.md,
// "Quantized experts in the lutq file"): expert e of the 3-D tensor blk.L.ffn_up_exps.weight is
// written as blk.L.ffn_up_exps.e.weight (lutqfile::expert_matrix_name) and the 3-D tensor is left
// out of the file.
//   kBcq      each expert as LinearSpec resolves the 3-D tensor's name under its role (the
//             same -q / -g / --quant-method and overrides as at load time): a BCQ matrix
//             (lutq.bcq.N), or the 3-D tensor copied as it is when the choice keeps it dense.
//             With per-expert calibration statistics (HessianSource::expert_hessian: the rows
//             the router sent to that expert) an expert gets what the choice asks of them as any
//             block layer does (pipeline::quantize_layer: GPTQ, AdaDim, FlexRound, the clipping
//             search, importance-weighted fits); without statistics, the plain fit of the method
//             (gptq: rtn, gptq-bcq: alternating), unweighted.
//   kTernary  every expert ternary (quant/ternary.h, one fp16 scale per row): RTN, or with
//             ternary_gptq GPTQ with the row's ternary grid on the expert's statistics (QMoE's
//             recipe); one QMoE dictionary built from all of them (format::build_dictionary)
//             and written once, each expert coded with it (lutq.qmoe.N).
// An expert the router sent fewer than max(1, min_rows·k) calibration rows gets the fit without
// statistics (GPTQ on a Hessian of so few rows would fit those rows, not the expert), counted in
// ExpertWriter::uncalibrated().
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/qmoe_code.h"
#include "io/checkpoint.h"
#include "io/gguf_writer.h"
#include "model/config.h"
#include "model/linear_spec.h"
#include "pipeline/calibration.h"
#include "quant/ternary.h"

namespace lutq::pipeline {

struct QuantizedLayer;

enum class ExpertsForm : uint8_t { kBcq = 0, kTernary = 1 };

struct ExpertsOptions {
  ExpertsForm form = ExpertsForm::kBcq;
  quant::TernaryOptions ternary;          // kTernary: the row grids
  bool ternary_gptq = false;              // kTernary: GPTQ with the ternary grid (needs statistics)
  double min_rows = 0.25;                 // calibrated experts: the fewest rows, per input feature k
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
  int64_t layer = 0;
};

// The model's expert tensors that are written one matrix per expert, layer by layer (gate, up,
// down); the others (kept dense by the spec) are copied as 3-D tensors. Empty for a dense model.
// Error: a spec that makes experts int8 (not written per expert).
Result<std::vector<ExpertTensor>> per_expert_tensors(const model::ModelConfig& c, const model::LinearSpec& spec,
                                                     const ExpertsOptions& opt);

// How a BCQ expert is fitted (what ExpertWriter writes, and what the bit allocation measures):
// `choice` with expert `expert`'s statistics of `t`'s input from `calib` when the choice wants
// them; with fewer than max(1, min_rows·k) rows routed to it, no statistics and the choice's
// plain fit (`uncalibrated`). No source, or a choice that wants none: `choice` as it is, h null.
struct ExpertFit {
  model::LinearChoice choice;
  const double* h = nullptr;
  bool uncalibrated = false;
};
Result<ExpertFit> expert_fit(const ExpertTensor& t, int64_t expert, const model::LinearChoice& choice,
                             HessianSource* calib, double min_rows);

// Writes the experts block by block, so that a LayerwiseCalibration source is walked forward
// together with the block's other layers (quantize_to_file asks for block l's experts right after
// its attention). `done` is called after each matrix (its QuantizedLayer: name, form, error,
// storage); errors name the file and matrix.
class ExpertWriter {
 public:
  using Done = std::function<void(const QuantizedLayer&)>;
  // All references must outlive the writer.
  ExpertWriter(const io::Checkpoint& in, const model::LinearSpec& spec, const ExpertsOptions& opt,
               io::GgufWriter& out, ThreadPool& pool, Done done)
      : in_(in), spec_(spec), opt_(opt), out_(out), pool_(pool), done_(std::move(done)) {}

  // The experts of `tensors` (per_expert_tensors) in block `layer`: written (kBcq) or fitted and
  // kept for finish() (kTernary), with per-expert statistics from `calib` where asked for (may
  // be null: then nothing asks for them, or an error names what needs them).
  Status write_layer(const std::vector<ExpertTensor>& tensors, int64_t layer, HessianSource* calib);
  // kTernary: builds the one dictionary over every expert fitted and writes their codes.
  Status finish();
  int64_t dictionary_bytes() const { return dictionary_bytes_; }
  // Expert matrices fitted without statistics though the spec asked for them (too few rows).
  int64_t uncalibrated() const { return uncalibrated_; }

 private:
  struct Coded {
    std::string name;
    format::TernaryMatrix t;
    double rel_error = 0.0;
    double seconds = 0.0;
  };
  // Expert e's statistics for a fit that wants them: null when it does not, or when too few rows
  // reached the expert (counted).
  Result<const double*> statistics(const ExpertTensor& t, int64_t e, bool wanted, HessianSource* calib);
  Status write_bcq(const ExpertTensor& t, const float* w, int64_t e, HessianSource* calib);
  Status fit_ternary(const ExpertTensor& t, const float* w, int64_t e, HessianSource* calib);

  const io::Checkpoint& in_;
  const model::LinearSpec& spec_;
  const ExpertsOptions& opt_;
  io::GgufWriter& out_;
  ThreadPool& pool_;
  Done done_;
  std::vector<Coded> ternary_;
  int64_t dictionary_bytes_ = 0;
  int64_t uncalibrated_ = 0;
};

}  // namespace lutq::pipeline
