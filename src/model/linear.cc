#include "model/linear.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/cpu.h"
#include "format/scale_codes.h"
#include "kernels/dense/dense_gemm.h"

namespace lutq::model {
namespace {

std::string shape_string(int64_t n, int64_t k) { return std::to_string(n) + "x" + std::to_string(k); }

// Each weight form's three operations, visited by Linear.
struct FormForward {
  const float* x;
  int64_t m;
  float* y;
  int64_t n, k;
  ThreadPool& pool;
  Status operator()(const DenseForm& f) const {
    kernels::dense_gemm(kernels::DenseWeights{f.w->data(), n, k}, x, m, y, pool, f.avx2);
    return Status::ok();
  }
  Status operator()(const BcqForm& f) const { return f.lin.forward(x, m, y, pool); }
  Status operator()(const Int8Form& f) const { return kernels::int8_gemm(f.w, x, m, y, f.options, pool, f.isa); }
  Status operator()(const QmoeForm& f) const { return kernels::qmoe_gemm(f.w, x, m, y, pool, f.isa, f.cpu); }
};

struct FormBytes {
  int64_t n, k;
  int64_t operator()(const DenseForm&) const { return n * k * static_cast<int64_t>(sizeof(float)); }
  int64_t operator()(const BcqForm& f) const { return f.lin.weight_bytes(); }
  // int8 codes, scales and row sums; the fp16 copy is read only at the outlier columns.
  int64_t operator()(const Int8Form&) const { return n * k + n * static_cast<int64_t>(sizeof(float) + sizeof(int32_t)); }
  // Codes, row offsets and scales; the dictionary table is shared by many layers, not counted.
  int64_t operator()(const QmoeForm& f) const { return f.w.weight_bytes(); }
};

struct FormDescribe {
  int64_t n, k;
  std::string operator()(const DenseForm& f) const {
    return "dense fp32 " + shape_string(n, k) + (f.avx2 ? " (avx2)" : " (scalar)");
  }
  std::string operator()(const BcqForm& f) const { return f.desc; }
  std::string operator()(const Int8Form& f) const {
    const float t = f.options.threshold;
    return (std::isinf(t) ? std::string("int8 ") : "llm-int8 (outliers >= " + std::to_string(t) + ", fp16 copy) ") +
           shape_string(n, k) + " (" + kernels::int8_isa_name(f.isa) + ")";
  }
  std::string operator()(const QmoeForm& f) const {
    return std::string("qmoe ") + kernels::isa_name(f.isa) + " " + format::describe(*f.w.m);
  }
};

}  // namespace

std::optional<int64_t> adapted_group(int64_t requested, int64_t extent) {
  if (requested == extent || (requested > 0 && extent % requested == 0)) return requested;
  for (int64_t g : {256, 128, 64, 32}) {
    if (g < requested && extent % g == 0) return g;
  }
  return std::nullopt;
}

Result<Linear> Linear::dense(std::shared_ptr<const std::vector<float>> w, int64_t n, int64_t k, kernels::Isa isa) {
  if (n < 1 || k < 1) return Status::invalid("dense layer: bad shape " + shape_string(n, k));
  if (w == nullptr || static_cast<int64_t>(w->size()) < n * k) {
    return Status::invalid("dense layer " + shape_string(n, k) + ": weight buffer too small");
  }
  return Linear(n, k, DenseForm{std::move(w), op_isa(isa, detect_cpu()).avx2});
}

Result<format::BcqMatrix> quantize_weight(const std::string& name, const float* w, int64_t n, int64_t k,
                                          const LinearChoice& choice, ThreadPool* pool,
                                          std::span<const double> importance) {
  if (!choice.quantize) return Status::invalid(name + ": layer choice is not quantized");
  if (choice.int8) return Status::invalid(name + ": an LLM.int8() layer has no BCQ form");
  if (choice.gptq || choice.adadim || choice.flexround || choice.clip_search) {
    return Status::invalid(name + ": GPTQ, AdaDim, FlexRound and the clipping search need calibration statistics: "
                                  "use lutq quantize --calib");
  }
  quant::QuantOptions opt = choice.quant;
  const int64_t extent = opt.cfg.orientation == format::Orientation::kPerOC ? k : n;
  if (choice.adapt_group) {
    if (std::optional<int64_t> g = adapted_group(opt.cfg.g, extent)) opt.cfg.g = *g;
  }
  Result<format::BcqMatrix> q = quant::quantize(w, n, k, opt, pool, importance);
  if (!q) return Status(q.status().code(), name + ": " + q.status().message());
  return q;
}

Result<Linear> Linear::quantized(const std::string& name, const float* w, int64_t n, int64_t k,
                                 const LinearChoice& choice, ThreadPool* pool) {
  if (!choice.quantize) return Status::invalid(name + ": layer choice is not quantized");
  if (choice.int8) {
    if (!(choice.int8_threshold > 0.0f)) return Status::invalid(name + ": int8 outlier threshold must be > 0");
    // LLM.int8() proper (a finite threshold): an fp16 copy for the outlier columns and zero-point
    // activations, the paper's best variant; plain int8: absmax, int8 codes only.
    Result<kernels::Int8Weights> q =
        kernels::quantize_int8(w, n, k, /*keep_fp16=*/std::isfinite(choice.int8_threshold));
    if (!q) return Status(q.status().code(), name + ": " + q.status().message());
    return from_int8(std::move(*q), choice.int8_threshold, choice.isa);
  }
  Result<format::BcqMatrix> q = quantize_weight(name, w, n, k, choice, pool);
  if (!q) return q.status();
  // Built in memory: checked here, once, before it is packed (from_bcq's precondition).
  if (Status s = format::validate_with_codes(*q); !s) return Status(s.code(), name + ": " + s.message());
  Result<Linear> layer = from_bcq(*q, choice.isa, choice.precision);
  if (!layer) return Status(layer.status().code(), name + ": " + layer.status().message());
  return layer;
}

Result<Linear> Linear::from_int8(kernels::Int8Weights w, float threshold, kernels::Isa isa) {
  if (!(threshold > 0.0f)) return Status::invalid("int8 outlier threshold must be > 0");
  const int64_t n = w.n;
  const int64_t k = w.k;
  Int8Form f{std::move(w), kernels::Int8Options{threshold, /*zeropoint=*/std::isfinite(threshold)},
             op_isa(isa, detect_cpu()).int8};
  return Linear(n, k, std::move(f));
}

Result<Linear> Linear::from_qmoe(std::shared_ptr<const format::QmoeMatrix> w, kernels::Isa isa,
                                 std::shared_ptr<const kernels::QmoeTable> table) {
  Result<kernels::QmoeWeights> q = kernels::make_qmoe_weights(std::move(w), std::move(table));
  if (!q) return q.status();
  const CpuFeatures cpu = detect_cpu();
  kernels::Isa run = kernels::Isa::kScalar;
  if ((isa == kernels::Isa::kAvx512 || isa == kernels::Isa::kCuda) && kernels::qmoe_available(kernels::Isa::kAvx512, cpu)) {
    run = kernels::Isa::kAvx512;
  } else if (isa != kernels::Isa::kRef && isa != kernels::Isa::kScalar && kernels::qmoe_available(kernels::Isa::kAvx2, cpu)) {
    run = kernels::Isa::kAvx2;
  }
  const int64_t n = q->n();
  const int64_t k = q->k();
  return Linear(n, k, QmoeForm{std::move(*q), run, cpu});
}

Result<Linear> Linear::from_bcq(const format::BcqMatrix& w, kernels::Isa isa, kernels::Precision precision) {
  Result<kernels::BcqLinear> lin = kernels::BcqLinear::create(w, isa, precision);
  if (!lin) return lin.status();
  std::string desc = std::string("bcq ") + kernels::isa_name(isa) + "/" + kernels::precision_name(precision) + " " +
                     format::describe(w);
  return Linear(w.n, w.k, BcqForm{std::move(*lin), std::move(desc)});
}

Status Linear::set_bias(std::vector<float> bias) {
  if (static_cast<int64_t>(bias.size()) != n_) {
    return Status::invalid("bias of " + std::to_string(bias.size()) + " values for a layer of " + std::to_string(n_) +
                           " outputs");
  }
  bias_ = std::move(bias);
  return Status::ok();
}

Status Linear::forward(const float* x, int64_t m, float* y, ThreadPool& pool) const {
  if (m < 1) return Status::invalid("forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("forward: null activation or output pointer");
  if (Status s = std::visit(FormForward{x, m, y, n_, k_, pool}, form_); !s) return s;
  add_bias(y, m);
  return Status::ok();
}

const Linear& Linear::adapted(int32_t a) const {
  const auto i = static_cast<size_t>(a) - 1;
  return a >= 1 && i < adapted_.size() && adapted_[i] != nullptr ? *adapted_[i] : *this;
}

Status Linear::set_adapted(int32_t a, Linear layer) {
  if (a < 1) return Status::invalid("set_adapted: adapter indices start at 1 (got " + std::to_string(a) + ")");
  if (layer.n_ != n_ || layer.k_ != k_) {
    return Status::invalid("set_adapted: a " + std::to_string(layer.n_) + "x" + std::to_string(layer.k_) +
                           " layer cannot stand in for a " + std::to_string(n_) + "x" + std::to_string(k_) + " one");
  }
  layer.bias_ = bias_;
  layer.adapted_.clear();
  if (adapted_.size() < static_cast<size_t>(a)) adapted_.resize(static_cast<size_t>(a));
  adapted_[static_cast<size_t>(a) - 1] = std::make_shared<const Linear>(std::move(layer));
  return Status::ok();
}

void Linear::add_bias(float* y, int64_t m) const {
  if (bias_.empty()) return;
  for (int64_t t = 0; t < m; ++t) add_inplace(y + t * n_, bias_.data(), n_);
}

Status Linear::forward_shared(std::span<const Linear* const> lins, const float* x, int64_t m,
                              std::span<float* const> ys, ThreadPool& pool) {
  if (lins.size() != ys.size()) return Status::invalid("forward_shared: one output per layer is needed");
  std::vector<const kernels::BcqLinear*> bcq;
  for (const Linear* l : lins) {
    if (l->bcq() == nullptr || l->k_ != lins[0]->k_) break;
    bcq.push_back(l->bcq());
  }
  if (bcq.size() < 2 || bcq.size() != lins.size()) {
    for (size_t j = 0; j < lins.size(); ++j) {
      if (Status s = lins[j]->forward(x, m, ys[j], pool); !s) return s;
    }
    return Status::ok();
  }
  if (m < 1) return Status::invalid("forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr) return Status::invalid("forward: null activation pointer");
  for (float* y : ys) {
    if (y == nullptr) return Status::invalid("forward: null output pointer");
  }
  if (Status s = kernels::BcqLinear::forward_shared(bcq, x, m, ys, pool); !s) return s;
  for (size_t j = 0; j < lins.size(); ++j) lins[j]->add_bias(ys[j], m);
  return Status::ok();
}

int64_t Linear::weight_bytes() const {
  return std::visit(FormBytes{n_, k_}, form_) + static_cast<int64_t>(bias_.size() * sizeof(float));
}

std::string Linear::describe() const {
  return std::visit(FormDescribe{n_, k_}, form_) + (bias_.empty() ? "" : " + bias");
}

const float* Linear::dense_data() const {
  const auto* f = std::get_if<DenseForm>(&form_);
  return f ? f->w->data() : nullptr;
}

const kernels::BcqLinear* Linear::bcq() const {
  const auto* f = std::get_if<BcqForm>(&form_);
  return f ? &f->lin : nullptr;
}

const kernels::Int8Weights* Linear::int8() const {
  const auto* f = std::get_if<Int8Form>(&form_);
  return f ? &f->w : nullptr;
}

const kernels::QmoeWeights* Linear::qmoe() const {
  const auto* f = std::get_if<QmoeForm>(&form_);
  return f ? &f->w : nullptr;
}

float Linear::int8_threshold() const {
  const auto* f = std::get_if<Int8Form>(&form_);
  return f ? f->options.threshold : 0.0f;
}

}  // namespace lutq::model
