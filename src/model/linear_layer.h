// LinearLayer: one linear map y[m,n] = x[m,k] · W[n,k]^T of a model, either dense fp32 (the
// weights kept as given, multiplied by kernels::dense_gemm) or BCQ (quantized with
// quant::quantize, multiplied by a kernels::BcqLinear LUT-GEMM backend). LinearSpec chooses the
// form per layer (model/linear_spec.h).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/int8/int8_gemm.h"
#include "kernels/linear.h"
#include "model/linear_spec.h"
#include "quant/quantize.h"

namespace lutq::model {

class LinearLayer {
 public:
  // Dense fp32 layer over a shared row-major W[n,k] (shared so a tied output head can reuse the
  // embedding table). use_avx2: the caller checked detect_cpu().avx2.
  static Result<LinearLayer> dense(std::shared_ptr<const std::vector<float>> w, int64_t n, int64_t k, bool use_avx2);
  // Quantizes W[n,k] per `choice` (choice.quantize must be true) and repacks for its backend.
  // `name` (the tensor name) prefixes errors.
  static Result<LinearLayer> quantized(const std::string& name, const float* w, int64_t n, int64_t k,
                                       const LinearChoice& choice, ThreadPool* pool);
  // From an already quantized matrix (e.g. a lutq BCQ file).
  static Result<LinearLayer> from_bcq(const format::BcqMatrix& w, kernels::Isa isa, kernels::Precision precision);
  // An int8 layer (quantized here or read from a lutq file): LLM.int8() with a finite threshold
  // (zero-point activations; w should carry its fp16 copy), plain absmax int8 with +inf.
  static Result<LinearLayer> from_int8(kernels::Int8Weights w, float threshold, bool use_avx2);
  // The int8 weights and threshold (int8 layers only, else nullptr).
  const kernels::Int8Weights* int8() const { return int8_ ? &*int8_ : nullptr; }
  float int8_threshold() const { return int8_options_.threshold; }

  // y[m,n] = x[m,k] · W^T; x rows have stride k, y rows stride n; m >= 1.
  Status forward(const float* x, int64_t m, float* y, ThreadPool& pool) const;

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  bool is_quantized() const { return bcq_.has_value() || int8_.has_value(); }
  // Bytes a forward pass streams for the weights.
  int64_t weight_bytes() const;
  // "dense fp32 576x1536" or "bcq avx2/fast 576x1536 q=3 g=64 per-OC (3.25 bpw)".
  std::string describe() const;

  // The fp32 weights (dense layers only, else nullptr) and the BCQ layer (quantized only).
  const float* dense_data() const { return dense_ ? dense_->data() : nullptr; }
  const kernels::BcqLinear* bcq() const { return bcq_ ? &*bcq_ : nullptr; }

 private:
  LinearLayer() = default;

  int64_t n_ = 0;
  int64_t k_ = 0;
  bool use_avx2_ = false;
  std::shared_ptr<const std::vector<float>> dense_;
  std::optional<kernels::BcqLinear> bcq_;
  std::string bcq_desc_;
  std::optional<kernels::Int8Weights> int8_;
  kernels::Int8Isa int8_isa_ = kernels::Int8Isa::kScalar;  // the fastest the CPU runs, or scalar
  kernels::Int8Options int8_options_;
};

// Quantizes W[n,k] per `choice` (choice.quantize must be true), adapting the group size as
// choice.adapt_group says. `name` prefixes errors. importance: empty or k input-channel weights
// for the fits (quant::quantize).
Result<format::BcqMatrix> quantize_weight(const std::string& name, const float* w, int64_t n, int64_t k,
                                          const LinearChoice& choice, ThreadPool* pool,
                                          std::span<const double> importance = {});

// The group size LinearChoice::adapt_group settles on for a grouped extent, or nullopt when
// no standard size (32..256, at most the requested one) nor the full extent divides it.
std::optional<int64_t> adapted_group(int64_t requested, int64_t extent);

}  // namespace lutq::model
