#include "pipeline/quantize_experts.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <utility>

#include "lutqfile/lutq_file.h"
#include "lutqfile/qmoe_entry.h"
#include "model/linear.h"
#include "pipeline/quantize_model.h"

namespace lutq::pipeline {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Whether `c` asks for calibration statistics (as quantize_layer uses them).
bool wants_statistics(const model::LinearChoice& c) {
  return c.quantize && (c.gptq || c.adadim || c.flexround || c.clip_search || c.quant.importance);
}

// The choice without what needs calibration statistics: the plain, unweighted fit of its method.
model::LinearChoice without_statistics(model::LinearChoice c) {
  c.gptq = false;
  c.act_order = false;
  c.adadim = false;
  c.flexround = false;  // its RTN start, uncalibrated
  c.clip_search = false;
  c.quant.importance = false;
  return c;
}

// The 3-D tensor's values [E][n][k]; errors name the file and tensor.
Result<std::vector<float>> read_slab(const io::Checkpoint& in, const ExpertTensor& t) {
  const int64_t n_expert = t.experts;
  const io::TensorInfo* info = in.find_tensor(t.name);
  if (info == nullptr) return Status::invalid(in.path() + ": missing tensor '" + t.name + "'");
  Result<std::vector<float>> w = in.dequantize(*info);
  if (!w) return Status(w.status().code(), in.path() + ": tensor '" + t.name + "': " + w.status().message());
  if (static_cast<int64_t>(w->size()) != n_expert * t.n * t.k) {
    return Status::invalid(in.path() + ": tensor '" + t.name + "' holds " + std::to_string(w->size()) +
                           " values, expected " + std::to_string(n_expert) + " experts of " + std::to_string(t.n) +
                           "x" + std::to_string(t.k));
  }
  return w;
}

// Ternary GPTQ on the statistics h (QMoE's recipe: GPTQ's defaults, no act-order), or ternary
// RTN without them.
Result<format::TernaryMatrix> ternary_fit(const float* w, int64_t n, int64_t k, const double* h,
                                          const quant::TernaryOptions& opt, ThreadPool& pool) {
  if (h == nullptr) return quant::ternary_rtn(w, n, k, opt, &pool);
  Result<quant::GptqFactor> factor = quant::prepare_gptq(h, k, quant::GptqOptions{}, &pool);
  if (!factor) return factor.status();
  return quant::ternary_gptq(w, n, k, *factor, opt, &pool);
}


// Expert e's statistics when `wanted`: null when not, or with fewer than max(1, min_rows·k) rows.
Result<ExpertHessian> routed_statistics(const ExpertTensor& t, int64_t e, bool wanted, HessianSource* calib,
                                        double min_rows) {
  if (!wanted || calib == nullptr) return ExpertHessian{};
  Result<ExpertHessian> h = calib->expert_hessian(t.layer, t.role, e);
  if (!h) {
    return Status(h.status().code(), lutqfile::expert_matrix_name(t.name, e) + ": " + h.status().message());
  }
  const auto least = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(min_rows * static_cast<double>(t.k))));
  return h->rows < least ? ExpertHessian{nullptr, h->rows} : *h;
}

}  // namespace

Result<ExpertFit> expert_fit(const ExpertTensor& t, int64_t expert, const model::LinearChoice& choice,
                             HessianSource* calib, double min_rows) {
  ExpertFit fit;
  fit.choice = choice;
  Result<ExpertHessian> h = routed_statistics(t, expert, wants_statistics(choice), calib, min_rows);
  if (!h) return h.status();
  fit.h = h->h;
  // Too few rows: the plain fit. No source at all: quantize_layer names what needed one.
  if (fit.h == nullptr && calib != nullptr) {
    fit.uncalibrated = wants_statistics(choice);
    fit.choice = without_statistics(choice);
  }
  return fit;
}

Result<const double*> ExpertWriter::statistics(const ExpertTensor& t, int64_t e, bool wanted, HessianSource* calib) {
  Result<ExpertHessian> h = routed_statistics(t, e, wanted, calib, opt_.min_rows);
  if (!h) return Status(h.status().code(), in_.path() + ": " + h.status().message());
  if (wanted && calib != nullptr && h->h == nullptr) ++uncalibrated_;
  return h->h;
}

Status ExpertWriter::write_bcq(const ExpertTensor& t, const float* w, int64_t e, HessianSource* calib) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = lutqfile::expert_matrix_name(t.name, e);
  // Not int8: per_expert_tensors refuses it.
  Result<ExpertFit> fit = expert_fit(t, e, spec_.resolve(t.name, t.role), calib, opt_.min_rows);
  if (!fit) return Status(fit.status().code(), in_.path() + ": " + fit.status().message());
  if (fit->uncalibrated) ++uncalibrated_;
  const model::LinearChoice& choice = fit->choice;
  Result<format::BcqMatrix> q = quantize_layer(name, w, t.n, t.k, choice, fit->h, pool_);
  if (!q) return Status(q.status().code(), in_.path() + ": " + q.status().message());
  QuantizedLayer layer;
  layer.name = name;
  layer.quantized = true;
  layer.n = t.n;
  layer.k = t.k;
  layer.form = format::describe(*q);
  layer.rel_error = relative_error(w, format::dequantize(*q));
  layer.bits_per_weight = q->bits_per_weight();
  layer.bytes = q->stored_bytes();
  if (Status s = lutqfile::add_bcq(out_, name, *q, method_label(choice, *q), layer.rel_error); !s) return s;
  layer.seconds = seconds_since(t0);
  done_(layer);
  return Status::ok();
}

Status ExpertWriter::fit_ternary(const ExpertTensor& t, const float* w, int64_t e, HessianSource* calib) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = lutqfile::expert_matrix_name(t.name, e);
  if (opt_.ternary_gptq && calib == nullptr) {
    return Status::invalid(in_.path() + ": " + name + ": ternary GPTQ needs calibration statistics (--calib)");
  }
  Result<const double*> h = statistics(t, e, opt_.ternary_gptq, calib);
  if (!h) return h.status();
  Result<format::TernaryMatrix> q = ternary_fit(w, t.n, t.k, *h, opt_.ternary, pool_);
  if (!q) return Status(q.status().code(), in_.path() + ": " + name + ": " + q.status().message());
  const double err = relative_error(w, format::dequantize(*q));
  ternary_.push_back({name, std::move(*q), err, seconds_since(t0)});
  return Status::ok();
}

Status ExpertWriter::write_layer(const std::vector<ExpertTensor>& tensors, int64_t layer, HessianSource* calib) {
  for (const ExpertTensor& t : tensors) {
    if (t.layer != layer) continue;
    Result<std::vector<float>> slab = read_slab(in_, t);
    if (!slab) return slab.status();
    for (int64_t e = 0; e < t.experts; ++e) {
      const float* w = slab->data() + e * t.n * t.k;
      Status s = opt_.form == ExpertsForm::kTernary ? fit_ternary(t, w, e, calib) : write_bcq(t, w, e, calib);
      if (!s) return s;
    }
  }
  return Status::ok();
}

// One dictionary over every ternary expert, then each expert coded with it.
Status ExpertWriter::finish() {
  if (ternary_.empty()) return Status::ok();
  std::vector<const format::TernaryMatrix*> mats;
  for (const Coded& c : ternary_) mats.push_back(&c.t);
  Result<format::QmoeDictionary> dict = format::build_dictionary(mats, opt_.dictionary);
  if (!dict) {
    return Status(dict.status().code(), in_.path() + ": the experts' QMoE dictionary: " + dict.status().message());
  }
  auto shared = std::make_shared<const format::QmoeDictionary>(std::move(*dict));
  if (Status s = lutqfile::add_qmoe_dictionary(out_, opt_.dict_name, *shared); !s) return s;
  dictionary_bytes_ = shared->storage_bytes();
  for (Coded& c : ternary_) {
    const auto t0 = std::chrono::steady_clock::now();
    Result<format::QmoeMatrix> m = format::encode(c.t, shared);
    if (!m) return Status(m.status().code(), in_.path() + ": " + c.name + ": " + m.status().message());
    if (Status s = lutqfile::add_qmoe(out_, c.name, *m, opt_.dict_name); !s) return s;
    QuantizedLayer layer;
    layer.name = c.name;
    layer.quantized = true;
    layer.n = m->n;
    layer.k = m->k;
    layer.form = format::describe(*m);
    layer.rel_error = c.rel_error;
    layer.bits_per_weight = m->bits_per_weight();
    layer.bytes = static_cast<int64_t>(m->codes.size() * 2 + m->scale.size() * 2 + m->row_offset.size() * 4);
    layer.seconds = c.seconds + seconds_since(t0);
    c.t = {};  // the symbols are no longer needed
    done_(layer);
  }
  ternary_.clear();
  return Status::ok();
}

Result<std::vector<ExpertTensor>> per_expert_tensors(const model::ModelConfig& c, const model::LinearSpec& spec,
                                                     const ExpertsOptions& opt) {
  std::vector<ExpertTensor> out;
  if (c.n_expert <= 0) return out;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const int64_t e = c.n_embd;
    const int64_t f = c.n_ff_exp;
    for (ExpertTensor t : {ExpertTensor{p + "ffn_gate_exps.weight", model::LinearRole::kFfnGate, f, e, c.n_expert, l},
                           ExpertTensor{p + "ffn_up_exps.weight", model::LinearRole::kFfnUp, f, e, c.n_expert, l},
                           ExpertTensor{p + "ffn_down_exps.weight", model::LinearRole::kFfnDown, e, f, c.n_expert, l}}) {
      const model::LinearChoice choice = spec.resolve(t.name, t.role);
      if (opt.form == ExpertsForm::kBcq && choice.quantize && choice.int8) {
        return Status::unsupported("'" + t.name + "': int8 experts are not written to lutq files; quantize them " +
                                   "to BCQ or keep them dense (--override 'blk.*.ffn_*_exps=dense')");
      }
      if (opt.form == ExpertsForm::kTernary || choice.quantize) out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace lutq::pipeline
