#include "model/linear_layer.h"

#include <array>
#include <utility>

#include <cmath>

#include "core/cpu.h"
#include "kernels/dense/dense_gemm.h"

namespace lutq::model {
namespace {

std::string shape_string(int64_t n, int64_t k) { return std::to_string(n) + "x" + std::to_string(k); }

}  // namespace

std::optional<int64_t> adapted_group(int64_t requested, int64_t extent) {
  if (requested == extent || (requested > 0 && extent % requested == 0)) return requested;
  for (int64_t g : {256, 128, 64, 32}) {
    if (g < requested && extent % g == 0) return g;
  }
  return std::nullopt;
}

Result<LinearLayer> LinearLayer::dense(std::shared_ptr<const std::vector<float>> w, int64_t n, int64_t k,
                                       bool use_avx2) {
  if (n < 1 || k < 1) return Status::invalid("dense layer: bad shape " + shape_string(n, k));
  if (w == nullptr || static_cast<int64_t>(w->size()) < n * k) {
    return Status::invalid("dense layer " + shape_string(n, k) + ": weight buffer too small");
  }
  LinearLayer layer;
  layer.n_ = n;
  layer.k_ = k;
  layer.use_avx2_ = use_avx2;
  layer.dense_ = std::move(w);
  return layer;
}

Result<format::BcqMatrix> quantize_weight(const std::string& name, const float* w, int64_t n, int64_t k,
                                          const LinearChoice& choice, ThreadPool* pool,
                                          std::span<const double> importance) {
  if (!choice.quantize) return Status::invalid(name + ": layer choice is not quantized");
  if (choice.int8) return Status::invalid(name + ": an LLM.int8() layer has no BCQ form");
  if (choice.gptq || choice.adadim) {
    return Status::invalid(name + ": GPTQ and AdaDim need calibration statistics: use lutq quantize --calib");
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

Result<LinearLayer> LinearLayer::quantized(const std::string& name, const float* w, int64_t n, int64_t k,
                                           const LinearChoice& choice, ThreadPool* pool) {
  if (!choice.quantize) return Status::invalid(name + ": layer choice is not quantized");
  if (choice.int8) {
    if (!(choice.int8_threshold > 0.0f)) return Status::invalid(name + ": int8 outlier threshold must be > 0");
    // LLM.int8() proper (a finite threshold): an fp16 copy for the outlier columns and zero-point
    // activations, the paper's best variant; plain int8: absmax, int8 codes only.
    Result<kernels::Int8Weights> q =
        kernels::quantize_int8(w, n, k, /*keep_fp16=*/std::isfinite(choice.int8_threshold));
    if (!q) return Status(q.status().code(), name + ": " + q.status().message());
    return from_int8(std::move(*q), choice.int8_threshold,
                     choice.isa == kernels::Isa::kAvx2 && detect_cpu().avx2);
  }
  Result<format::BcqMatrix> q = quantize_weight(name, w, n, k, choice, pool);
  if (!q) return q.status();
  Result<LinearLayer> layer = from_bcq(*q, choice.isa, choice.precision);
  if (!layer) return Status(layer.status().code(), name + ": " + layer.status().message());
  return layer;
}

Result<LinearLayer> LinearLayer::from_int8(kernels::Int8Weights w, float threshold, bool use_avx2) {
  if (!(threshold > 0.0f)) return Status::invalid("int8 outlier threshold must be > 0");
  LinearLayer layer;
  layer.n_ = w.n;
  layer.k_ = w.k;
  layer.use_avx2_ = use_avx2;
  layer.int8_isa_ = use_avx2 ? kernels::int8_isas(detect_cpu()).back() : kernels::Int8Isa::kScalar;
  layer.int8_options_ = kernels::Int8Options{threshold, /*zeropoint=*/std::isfinite(threshold)};
  layer.int8_.emplace(std::move(w));
  return layer;
}

Result<LinearLayer> LinearLayer::from_bcq(const format::BcqMatrix& w, kernels::Isa isa, kernels::Precision precision) {
  Result<kernels::BcqLinear> lin = kernels::BcqLinear::create(w, isa, precision);
  if (!lin) return lin.status();
  LinearLayer layer;
  layer.n_ = w.n;
  layer.k_ = w.k;
  layer.bcq_desc_ = std::string("bcq ") + kernels::isa_name(isa) + "/" + kernels::precision_name(precision) + " " +
                    format::describe(w);
  layer.bcq_.emplace(std::move(*lin));
  return layer;
}

Status LinearLayer::forward(const float* x, int64_t m, float* y, ThreadPool& pool) const {
  if (bcq_) return bcq_->forward(x, m, y, pool);
  if (int8_) return kernels::int8_gemm(*int8_, x, m, y, int8_options_, pool, int8_isa_);
  if (m < 1) return Status::invalid("forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("forward: null activation or output pointer");
  kernels::dense_gemm(kernels::DenseWeights{dense_->data(), n_, k_}, x, m, y, pool, use_avx2_);
  return Status::ok();
}

int64_t LinearLayer::weight_bytes() const {
  if (bcq_) return bcq_->weight_bytes();
  // int8 codes, scales and row sums; the fp16 copy is read only at the outlier columns.
  if (int8_) return n_ * k_ + n_ * static_cast<int64_t>(sizeof(float) + sizeof(int32_t));
  return n_ * k_ * static_cast<int64_t>(sizeof(float));
}

std::string LinearLayer::describe() const {
  if (bcq_) return bcq_desc_;
  if (int8_) {
    const float t = int8_options_.threshold;
    return (std::isinf(t) ? std::string("int8 ") : "llm-int8 (outliers >= " + std::to_string(t) + ", fp16 copy) ") +
           shape_string(n_, k_) + " (" + kernels::int8_isa_name(int8_isa_) + ")";
  }
  return std::string("dense fp32 ") + shape_string(n_, k_) + (use_avx2_ ? " (avx2)" : " (scalar)");
}

}  // namespace lutq::model
