#include "pipeline/quantize_experts.h"

#include <chrono>
#include <memory>
#include <utility>

#include "lutqfile/lutq_file.h"
#include "lutqfile/qmoe_entry.h"
#include "model/linear.h"
#include "pipeline/quantize_model.h"

namespace lutq::pipeline {
namespace {

// The experts' fit: the choice for the 3-D tensor without what needs calibration statistics.
model::LinearChoice expert_choice(const ExpertTensor& t, const model::LinearSpec& spec) {
  model::LinearChoice c = spec.resolve(t.name, t.role);
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

Status write_bcq_experts(const io::Checkpoint& in, const ExpertTensor& t, const model::LinearSpec& spec,
                         io::GgufWriter& out, ThreadPool& pool,
                         const std::function<void(const QuantizedLayer&)>& done) {
  const model::LinearChoice choice = expert_choice(t, spec);  // not int8: per_expert_tensors refuses it
  Result<std::vector<float>> slab = read_slab(in, t);
  if (!slab) return slab.status();
  for (int64_t e = 0; e < t.experts; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string name = lutqfile::expert_matrix_name(t.name, e);
    const float* w = slab->data() + e * t.n * t.k;
    Result<format::BcqMatrix> q = model::quantize_weight(name, w, t.n, t.k, choice, &pool);
    if (!q) return Status(q.status().code(), in.path() + ": " + q.status().message());
    QuantizedLayer layer;
    layer.name = name;
    layer.quantized = true;
    layer.n = t.n;
    layer.k = t.k;
    layer.form = format::describe(*q);
    layer.rel_error = relative_error(w, format::dequantize(*q));
    layer.bits_per_weight = q->bits_per_weight();
    layer.bytes = q->stored_bytes();
    if (Status s = lutqfile::add_bcq(out, name, *q, quant::method_name(choice.quant.method), layer.rel_error); !s) {
      return s;
    }
    layer.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    done(layer);
  }
  return Status::ok();
}

// Ternary RTN of every expert, one dictionary over all of them, then each expert coded with it.
Status write_ternary_experts(const io::Checkpoint& in, const std::vector<ExpertTensor>& tensors,
                             const ExpertsOptions& opt, io::GgufWriter& out, ThreadPool& pool,
                             const std::function<void(const QuantizedLayer&)>& done, int64_t& dictionary_bytes) {
  struct Coded {
    std::string name;
    format::TernaryMatrix t;
    double rel_error = 0.0;
    double seconds = 0.0;
  };
  std::vector<Coded> all;
  for (const ExpertTensor& t : tensors) {
    Result<std::vector<float>> slab = read_slab(in, t);
    if (!slab) return slab.status();
    for (int64_t e = 0; e < t.experts; ++e) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::string name = lutqfile::expert_matrix_name(t.name, e);
      const float* w = slab->data() + e * t.n * t.k;
      Result<format::TernaryMatrix> q = quant::ternary_rtn(w, t.n, t.k, opt.ternary, &pool);
      if (!q) return Status(q.status().code(), in.path() + ": " + name + ": " + q.status().message());
      const double err = relative_error(w, format::dequantize(*q));
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      all.push_back({name, std::move(*q), err, sec});
    }
  }
  if (all.empty()) return Status::ok();
  std::vector<const format::TernaryMatrix*> mats;
  for (const Coded& c : all) mats.push_back(&c.t);
  Result<format::QmoeDictionary> dict = format::build_dictionary(mats, opt.dictionary);
  if (!dict) {
    return Status(dict.status().code(), in.path() + ": the experts' QMoE dictionary: " + dict.status().message());
  }
  auto shared = std::make_shared<const format::QmoeDictionary>(std::move(*dict));
  if (Status s = lutqfile::add_qmoe_dictionary(out, opt.dict_name, *shared); !s) return s;
  dictionary_bytes = shared->storage_bytes();
  for (Coded& c : all) {
    const auto t0 = std::chrono::steady_clock::now();
    Result<format::QmoeMatrix> m = format::encode(c.t, shared);
    if (!m) return Status(m.status().code(), in.path() + ": " + c.name + ": " + m.status().message());
    if (Status s = lutqfile::add_qmoe(out, c.name, *m, opt.dict_name); !s) return s;
    QuantizedLayer layer;
    layer.name = c.name;
    layer.quantized = true;
    layer.n = m->n;
    layer.k = m->k;
    layer.form = format::describe(*m);
    layer.rel_error = c.rel_error;
    layer.bits_per_weight = m->bits_per_weight();
    layer.bytes = static_cast<int64_t>(m->codes.size() * 2 + m->scale.size() * 2 + m->row_offset.size() * 4);
    layer.seconds = c.seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    c.t = {};  // the symbols are no longer needed
    done(layer);
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<ExpertTensor>> per_expert_tensors(const model::ModelConfig& c, const model::LinearSpec& spec,
                                                     const ExpertsOptions& opt) {
  std::vector<ExpertTensor> out;
  if (c.n_expert <= 0) return out;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const int64_t e = c.n_embd;
    const int64_t f = c.n_ff_exp;
    for (ExpertTensor t : {ExpertTensor{p + "ffn_gate_exps.weight", model::LinearRole::kFfnGate, f, e, c.n_expert},
                           ExpertTensor{p + "ffn_up_exps.weight", model::LinearRole::kFfnUp, f, e, c.n_expert},
                           ExpertTensor{p + "ffn_down_exps.weight", model::LinearRole::kFfnDown, e, f, c.n_expert}}) {
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

Status write_experts(const io::Checkpoint& in, const std::vector<ExpertTensor>& tensors,
                     const model::LinearSpec& spec, const ExpertsOptions& opt, io::GgufWriter& out, ThreadPool& pool,
                     const std::function<void(const QuantizedLayer&)>& done, int64_t& dictionary_bytes) {
  dictionary_bytes = 0;
  if (opt.form == ExpertsForm::kTernary) {
    return write_ternary_experts(in, tensors, opt, out, pool, done, dictionary_bytes);
  }
  for (const ExpertTensor& t : tensors) {
    if (Status s = write_bcq_experts(in, t, spec, out, pool, done); !s) return s;
  }
  return Status::ok();
}

}  // namespace lutq::pipeline
