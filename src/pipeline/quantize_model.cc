#include "pipeline/quantize_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <map>

#include "core/fp16.h"
#include "format/bcq_matrix.h"
#include "io/gguf_writer.h"
#include "kernels/int8/int8_gemm.h"
#include "lutqfile/lutq_file.h"
#include "model/blocks/moe_ffn.h"
#include "model/config.h"
#include "model/linear.h"
#include "quant/clip_search.h"
#include "quant/flexround.h"
#include "quant/gptq.h"

namespace lutq::pipeline {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Metadata that describes the source file's storage, not the model: not carried over.
bool dropped_key(const std::string& key) {
  return key == "general.file_type" || key == "general.quantization_version" || key.starts_with("lutq.");
}

// A tensor as stored, or re-encoded from its fp32 values when the reader transforms it on the
// way out (tensor_bytes() empty; e.g. permuted safetensors q/k): F16/BF16 stay 16-bit (lossless,
// the values came from that type), anything else becomes F32.
Status copy_tensor(const io::Checkpoint& in, const io::TensorInfo& t, io::GgufWriter& out, int64_t& bytes) {
  const std::span<const uint8_t> raw = in.tensor_bytes(t);
  if (!raw.empty()) {
    bytes = static_cast<int64_t>(raw.size());
    return out.add_tensor(t.name, t.dims, t.type, raw);
  }
  Result<std::vector<float>> v = in.dequantize(t);
  if (!v) return v.status();
  if (t.type == io::GgmlType::F16 || t.type == io::GgmlType::BF16) {
    std::vector<uint16_t> h(v->size());
    for (size_t i = 0; i < h.size(); ++i) {
      if (t.type == io::GgmlType::F16) {
        h[i] = fp32_to_fp16((*v)[i]);
      } else {
        uint32_t u = 0;
        std::memcpy(&u, &(*v)[i], 4);
        h[i] = static_cast<uint16_t>(u >> 16);
      }
    }
    bytes = static_cast<int64_t>(h.size() * 2);
    return out.add_tensor(t.name, t.dims, t.type, {reinterpret_cast<const uint8_t*>(h.data()), h.size() * 2});
  }
  bytes = static_cast<int64_t>(v->size() * 4);
  return out.add_tensor(t.name, t.dims, io::GgmlType::F32,
                        {reinterpret_cast<const uint8_t*>(v->data()), v->size() * 4});
}

struct LinearTarget {
  std::string name;   // the weight's name in the output
  std::string source; // the tensor it is read from (token_embd.weight for a tied head)
  std::optional<LinearRole> role;
  int64_t layer = -1;  // block index, -1 for the head
  bool shared_expert = false;  // an MoE block's shared expert (its statistics are its own)
};

// GPTQ and/or AdaDim for one block layer, with the input statistics of its layer.
Result<format::BcqMatrix> calibrated_quantize(const std::string& name, const float* w, int64_t n, int64_t k,
                                              const LinearChoice& choice, const double* h, ThreadPool& pool,
                                              SharedFactor shared) {
  quant::GptqOptions go;
  go.cfg = choice.quant.cfg;
  go.method = choice.quant.method;
  go.iterations = choice.quant.iterations;
  go.act_order = choice.act_order;
  go.importance = choice.quant.importance;
  go.scale_bits = choice.quant.scale_bits;
  const auto adapt = [&](int64_t extent) -> int64_t {
    if (!choice.adapt_group) return choice.quant.cfg.g;
    return model::adapted_group(choice.quant.cfg.g, extent).value_or(choice.quant.cfg.g);
  };
  const auto named = [&](const Status& st) { return Status(st.code(), name + ": " + st.message()); };
  const quant::GptqFactor* factor = nullptr;
  if (choice.gptq && shared.cache != nullptr) {
    Result<const quant::GptqFactor*> f = shared.cache->get(shared.input_key, h, k, go);
    if (!f) return named(f.status());
    factor = *f;
  }
  if (choice.adadim) {
    quant::OrientationOptions oo;
    oo.use_gptq = choice.gptq;
    oo.gptq = go;
    oo.factor = factor;
    oo.gptq.cfg.g = adapt(k);
    oo.g_per_ic = adapt(n);
    Result<quant::OrientationChoice> r = quant::choose_orientation(w, n, k, h, oo, &pool);
    if (!r) return named(r.status());
    return std::move(r->matrix);
  }
  go.cfg.g = adapt(go.cfg.orientation == format::Orientation::kPerOC ? k : n);
  Result<format::BcqMatrix> q = factor != nullptr ? quant::gptq_quantize(w, n, k, *factor, go, &pool)
                                                   : quant::gptq(w, n, k, h, go, &pool);
  if (!q) return named(q.status());
  return q;
}

// FlexRound or the clipping search for one block layer, with the input statistics h of its layer.
Result<format::BcqMatrix> searched_quantize(const std::string& name, const float* w, int64_t n, int64_t k,
                                            const LinearChoice& choice, const double* h, ThreadPool& pool) {
  const auto named = [&](const Status& st) { return Status(st.code(), name + ": " + st.message()); };
  if (choice.gptq || choice.adadim) {
    return Status::invalid(name + ": the clipping search and FlexRound apply to the plain per-OC fits, not with "
                                  "GPTQ or AdaDim (--orientation auto)");
  }
  format::BcqConfig cfg = choice.quant.cfg;
  if (choice.adapt_group) cfg.g = model::adapted_group(cfg.g, k).value_or(cfg.g);
  std::vector<double> importance;  // diag(H)
  if (choice.quant.importance) {
    importance.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) importance[static_cast<size_t>(i)] = h[i * k + i];
  }
  if (choice.flexround) {
    if (choice.quant.scale_bits != 0) return Status::invalid(name + ": FlexRound stores fp16 scales (no scale_bits)");
    quant::FlexRoundOptions fo;
    fo.cfg = cfg;
    fo.iterations = choice.flexround_steps;
    fo.importance = choice.quant.importance;
    Result<format::BcqMatrix> q = quant::flexround(w, n, k, h, fo, &pool);
    if (!q) return named(q.status());
    return q;
  }
  quant::QuantOptions qo = choice.quant;
  qo.cfg = cfg;
  Result<format::BcqMatrix> q = quant::clip_search(w, n, k, h, qo, {}, &pool, importance);
  if (!q) return named(q.status());
  return q;
}

// An LLM.int8() / int8 layer into the file (lutqfile::add_int8), described in `layer`.
Status write_int8(io::GgufWriter& out, const std::string& name, const float* w, int64_t n, int64_t k, float threshold,
                  QuantizedLayer& layer) {
  if (!(threshold > 0.0f)) return Status::invalid(name + ": int8 outlier threshold must be > 0");
  const bool decompose = std::isfinite(threshold);
  Result<kernels::Int8Weights> q = kernels::quantize_int8(w, n, k, /*keep_fp16=*/decompose);
  if (!q) return Status(q.status().code(), name + ": " + q.status().message());
  std::vector<float> back(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      back[static_cast<size_t>(r * k + c)] = q->q[static_cast<size_t>(r * k + c)] * q->scale[static_cast<size_t>(r)];
    }
  }
  layer.rel_error = relative_error(w, back);
  char form[96];
  if (decompose) {
    std::snprintf(form, sizeof form, "%lldx%lld llm-int8 (threshold %g, fp16 copy)", static_cast<long long>(n),
                  static_cast<long long>(k), static_cast<double>(threshold));
  } else {
    std::snprintf(form, sizeof form, "%lldx%lld int8 (absmax)", static_cast<long long>(n), static_cast<long long>(k));
  }
  layer.form = form;
  layer.bits_per_weight = 8.0 + 32.0 / static_cast<double>(k) + (decompose ? 16.0 : 0.0);
  layer.bytes = n * k * (decompose ? 3 : 1) + 4 * n;
  lutqfile::Int8Entry e{n, k, threshold, std::move(q->q), std::move(q->scale), std::move(q->fp16)};
  return lutqfile::add_int8(out, name, e);
}

}  // namespace

std::string method_label(const LinearChoice& choice, const format::BcqMatrix& q) {
  std::string m = choice.flexround ? "flexround" : quant::method_name(choice.quant.method);
  if (choice.clip_search && !choice.flexround) m += "+clip";
  if (choice.gptq) m = "gptq-" + m + (choice.act_order ? "-act" : "");
  if (choice.adadim) m += std::string("+adadim(") + format::orientation_name(q.cfg.orientation) + ")";
  return m;
}

double relative_error(const float* w, const std::vector<float>& wq) {
  double num = 0.0;
  double den = 0.0;
  for (size_t i = 0; i < wq.size(); ++i) {
    const double d = static_cast<double>(w[i]) - wq[i];
    num += d * d;
    den += static_cast<double>(w[i]) * w[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

Result<format::BcqMatrix> quantize_layer(const std::string& name, const float* w, int64_t n, int64_t k,
                                         const LinearChoice& choice, const double* h, ThreadPool& pool,
                                         SharedFactor shared) {
  if (choice.quantize && (choice.flexround || choice.clip_search)) {
    if (h == nullptr) {
      return Status::invalid(name + ": FlexRound and the clipping search need calibration statistics (--calib)");
    }
    return searched_quantize(name, w, n, k, choice, h, pool);
  }
  if (choice.quantize && (choice.gptq || choice.adadim)) {
    if (h == nullptr) return Status::invalid(name + ": GPTQ / AdaDim need calibration statistics (--calib)");
    return calibrated_quantize(name, w, n, k, choice, h, pool, shared);
  }
  std::vector<double> importance;  // diag(H): the fits' input-channel weights
  if (choice.quantize && choice.quant.importance && h != nullptr) {
    importance.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) importance[static_cast<size_t>(i)] = h[i * k + i];
  }
  return quantize_weight(name, w, n, k, choice, &pool, importance);
}

bool needs_calibration(const LinearSpec& spec, const ModelConfig& config) {
  const auto needs = [&](const std::string& name, LinearRole role) {
    const LinearChoice c = spec.resolve(name, role);
    return c.quantize && (c.gptq || c.adadim || c.flexround || c.clip_search);
  };
  for (int64_t l = 0; l < config.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      if (needs(p + role_name(role) + ".weight", role)) return true;
    }
    if (config.n_expert > 0 && (needs(p + "ffn_gate_exps.weight", LinearRole::kFfnGate) ||
                                needs(p + "ffn_up_exps.weight", LinearRole::kFfnUp) ||
                                needs(p + "ffn_down_exps.weight", LinearRole::kFfnDown))) {
      return true;
    }
    for (LinearRole role : model::kFfnRoles) {
      if (config.n_expert > 0 && config.n_ff_shexp > 0 && needs(model::shared_expert_weight(l, role), role)) return true;
    }
  }
  return false;
}

namespace {

// The linear layers of a checkpoint: every block role of every layer (an MoE block's shared
// expert after them), then the head (read from token_embd.weight when tied).
std::vector<LinearTarget> linear_targets(const ModelConfig& c) {
  std::vector<LinearTarget> targets;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      const std::string name = "blk." + std::to_string(l) + "." + role_name(role) + ".weight";
      targets.push_back({name, name, role, l});
    }
    if (c.n_expert <= 0 || c.n_ff_shexp <= 0) continue;
    // An MoE block's shared expert (qwen2moe): quantized like a dense block's FFN layers.
    for (LinearRole role : model::kFfnRoles) {
      const std::string name = model::shared_expert_weight(l, role);
      targets.push_back({name, name, role, l, true});
    }
  }
  targets.push_back({"output.weight", c.tied_output ? "token_embd.weight" : "output.weight", std::nullopt, -1});
  return targets;
}

using LinearChoices = std::map<std::string, std::pair<const LinearTarget*, LinearChoice>, std::less<>>;

// One quantize_to_file run: the file being built, the report and the progress count.
class FileJob {
 public:
  FileJob(const io::Checkpoint& in, const std::string& out_path, ThreadPool& pool, const QuantizeProgress& progress,
          HessianSource* calib, const LinearSpec& spec, const ExpertsOptions& experts)
      : in_(in), out_path_(out_path), pool_(pool), progress_(progress), calib_(calib),
        experts_(in, spec, experts, out_, pool, [this](const QuantizedLayer& layer) {
          report_.layers.push_back(layer);
          ++report_.experts;
          if (progress_) progress_(++done_, total_, layer);
        }) {}

  void set_total(int64_t total) { total_ = total; }

  // The source's model keys (storage keys dropped), the format version and the source's name.
  Status start() {
    for (const std::string& key : in_.keys()) {
      if (dropped_key(key)) continue;
      if (Status s = out_.add(key, *in_.find(key)); !s) return named(s);
    }
    if (Status s = out_.add_uint32(std::string(lutqfile::kVersionKey), lutqfile::kFormatVersionPlain); !s) return s;
    return out_.add_string("lutq.source", std::filesystem::path(in_.path()).filename().string());
  }

  // Tensors other than linear layers as stored; then the linear layers in block order (a
  // layer-by-layer calibration goes forward only), each quantized or copied as its choice says,
  // each block's experts (`split`) after its other layers.
  Status write_tensors(const std::vector<LinearTarget>& targets, const LinearChoices& linear,
                       const std::vector<ExpertTensor>& split, int64_t n_layer) {
    const auto is_split = [&](const std::string& name) {
      return std::any_of(split.begin(), split.end(), [&](const ExpertTensor& t) { return t.name == name; });
    };
    for (const io::TensorInfo& t : in_.tensors()) {
      if (linear.find(t.name) != linear.end() || is_split(t.name)) continue;
      int64_t bytes = 0;
      if (Status s = copy_tensor(in_, t, out_, bytes); !s) return named(s);
    }
    int64_t experts_next = 0;  // the first block whose experts are not written yet
    const auto experts_until = [&](int64_t end) {
      for (; experts_next < end; ++experts_next) {
        if (Status s = experts_.write_layer(split, experts_next, calib_); !s) return named(s);
      }
      return Status::ok();
    };
    for (const LinearTarget& target : targets) {
      if (Status s = experts_until(target.layer >= 0 ? target.layer : n_layer); !s) return s;
      const io::TensorInfo* t = in_.find_tensor(target.name);
      if (t == nullptr) continue;  // a tied head: quantized by the caller, or left to the embedding
      const LinearChoice& choice = linear.at(target.name).second;
      Status s = choice.quantize ? quantize(target, choice) : copy_linear(*t);
      if (!s) return s;
    }
    return experts_until(n_layer);
  }

  // One linear layer per its choice (int8, or BCQ through quantize_layer) into the file.
  Status quantize(const LinearTarget& target, const LinearChoice& choice) {
    const auto t0 = std::chrono::steady_clock::now();
    const io::TensorInfo* info = in_.find_tensor(target.source);
    if (info == nullptr) return Status::invalid(in_.path() + ": missing tensor '" + target.source + "'");
    Result<std::vector<float>> w = in_.dequantize(*info);
    if (!w) return w.status();
    QuantizedLayer layer;
    layer.name = target.name;
    layer.quantized = true;
    layer.k = info->dims[0];
    layer.n = info->num_elements() / layer.k;
    if (choice.int8) {
      Status st = write_int8(out_, target.name, w->data(), layer.n, layer.k, choice.int8_threshold, layer);
      if (!st) return named(st);
      return record(layer, t0);
    }
    const double* h = nullptr;
    if (target.role && calib_ != nullptr) {
      Result<const double*> hr = statistics(target);
      if (!hr) return hr.status();
      h = *hr;
    }
    const uint64_t input_key = static_cast<uint64_t>(target.layer) * kNumLinearInputs +
                               (target.role ? static_cast<uint64_t>(input_of(*target.role)) : 0);
    Result<format::BcqMatrix> q =
        quantize_layer(target.name, w->data(), layer.n, layer.k, choice, h, pool_, {&factors_, input_key});
    if (!q) return Status(q.status().code(), in_.path() + ": " + q.status().message());
    layer.form = format::describe(*q);
    layer.rel_error = relative_error(w->data(), format::dequantize(*q));
    layer.bits_per_weight = q->bits_per_weight();
    layer.bytes = q->stored_bytes();
    if (Status s = lutqfile::add_bcq(out_, target.name, *q, method_label(choice, *q), layer.rel_error); !s) {
      return named(s);
    }
    return record(layer, t0);
  }

  // Totals of the block layers, then the file itself (after the experts' QMoE codes, if any).
  Result<QuantizeReport> finish() {
    if (Status s = experts_.finish(); !s) return named(s);
    report_.dictionary_bytes = experts_.dictionary_bytes();
    report_.experts_uncalibrated = experts_.uncalibrated();
    for (const QuantizedLayer& l : report_.layers) {
      if (!l.name.starts_with("blk.")) continue;
      report_.linear_weights += l.n * l.k;
      report_.linear_bytes += l.bytes;
    }
    if (Status s = out_.write_file(out_path_); !s) return s;
    std::error_code ec;
    report_.file_bytes = static_cast<int64_t>(std::filesystem::file_size(out_path_, ec));
    return std::move(report_);
  }

 private:
  Status named(const Status& s) const { return Status(s.code(), out_path_ + ": " + s.message()); }

  // A block layer's input statistics: its block's, or for a shared expert its own (every row of
  // the block, through its own SwiGLU for ffn_down).
  Result<const double*> statistics(const LinearTarget& target) {
    if (!target.shared_expert) return calib_->hessian(target.layer, *target.role);
    Result<ExpertHessian> h = calib_->expert_hessian(target.layer, *target.role, LinearObserver::kSharedExpert);
    if (!h) return Status(h.status().code(), in_.path() + ": " + target.name + ": " + h.status().message());
    return h->h;
  }

  // A linear layer left as stored (dense).
  Status copy_linear(const io::TensorInfo& t) {
    int64_t bytes = 0;
    if (Status s = copy_tensor(in_, t, out_, bytes); !s) return named(s);
    QuantizedLayer layer;
    layer.name = t.name;
    layer.form = std::string("dense ") + io::ggml_type_name(t.type);
    layer.k = t.dims[0];
    layer.n = t.num_elements() / layer.k;
    layer.bytes = bytes;
    layer.bits_per_weight = 8.0 * static_cast<double>(bytes) / static_cast<double>(t.num_elements());
    report_.layers.push_back(layer);
    if (progress_) progress_(++done_, total_, layer);
    return Status::ok();
  }

  Status record(QuantizedLayer& layer, std::chrono::steady_clock::time_point t0) {
    layer.seconds = seconds_since(t0);
    report_.layers.push_back(layer);
    if (progress_) progress_(++done_, total_, layer);
    return Status::ok();
  }

  const io::Checkpoint& in_;
  const std::string& out_path_;
  ThreadPool& pool_;
  const QuantizeProgress& progress_;
  HessianSource* calib_;
  io::GgufWriter out_;
  ExpertWriter experts_;
  QuantizeReport report_;
  quant::GptqFactorCache factors_;  // q/k/v and gate/up share their input's factor
  int64_t done_ = 0;
  int64_t total_ = 0;
};

}  // namespace

Result<QuantizeReport> quantize_to_file(const io::Checkpoint& in, const LinearSpec& spec, const std::string& out_path,
                                        ThreadPool& pool, const QuantizeProgress& progress,
                                        HessianSource* calib, const ExpertsOptions& experts) {
  const auto t_start = std::chrono::steady_clock::now();
  Result<bool> is_lutq = lutqfile::is_lutq_file(in);
  if (!is_lutq) return is_lutq.status();
  if (*is_lutq) {
    return Status::invalid(in.path() + ": already a lutq file; quantize the original checkpoint instead");
  }
  Result<ModelConfig> config = ModelConfig::from_checkpoint(in);
  if (!config) return config.status();
  const ModelConfig& c = *config;
  if (needs_calibration(spec, c) && (calib == nullptr || calib->n_layer() != c.n_layer)) {
    return Status::invalid("GPTQ / AdaDim / FlexRound / the clipping search need calibration statistics of this model "
                           "(lutq quantize --calib TEXT)");
  }
  // The expert tensors written one matrix per expert (left out of the file as 3-D tensors).
  Result<std::vector<ExpertTensor>> split = per_expert_tensors(c, spec, experts);
  if (!split) return Status(split.status().code(), in.path() + ": " + split.status().message());

  if (experts.form == ExpertsForm::kTernary && experts.ternary_gptq && calib == nullptr) {
    return Status::invalid("ternary GPTQ of the experts needs calibration statistics of this model "
                           "(lutq quantize --calib TEXT)");
  }
  FileJob job(in, out_path, pool, progress, calib, spec, experts);
  if (Status s = job.start(); !s) return s;
  const std::vector<LinearTarget> targets = linear_targets(c);
  LinearChoices linear;  // each linear layer's choice, by its output name
  for (const LinearTarget& t : targets) linear.emplace(t.name, std::make_pair(&t, spec.resolve(t.name, t.role)));
  // A tied head that stays dense is not a layer of its own here; an MoE block has no dense FFN.
  const bool head_separate = !c.tied_output || linear.at("output.weight").second.quantize;
  const auto present = std::count_if(targets.begin(), targets.end(), [&](const LinearTarget& t) {
    return in.find_tensor(t.name) != nullptr;
  });
  job.set_total(static_cast<int64_t>(present) + (c.tied_output && head_separate ? 1 : 0) +
                static_cast<int64_t>(split->size()) * c.n_expert);
  if (Status s = job.write_tensors(targets, linear, *split, c.n_layer); !s) return s;
  // A tied head that is quantized has no tensor of its own in the source.
  if (c.tied_output && head_separate) {
    if (Status s = job.quantize(targets.back(), linear.at("output.weight").second); !s) return s;
  }
  Result<QuantizeReport> report = job.finish();
  if (report) report->seconds = seconds_since(t_start);
  return report;
}

}  // namespace lutq::pipeline
