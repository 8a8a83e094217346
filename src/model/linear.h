// Linear: one linear map y[m,n] = x[m,k] · W[n,k]^T (+ bias[n]) of a model, over one of the
// weight forms below. A new weight form is one more struct with forward / weight_bytes /
// describe and one more alternative of Form; nothing else changes. LinearSpec chooses the form
// per layer (model/linear_spec.h).
//   dense  fp32 weights kept as given, kernels::dense_gemm
//   bcq    a BCQ matrix on a LUT-GEMM backend (kernels::BcqLinear)
//   int8   LLM.int8() or plain int8 (kernels::int8_gemm)
//   qmoe   a QMoE-coded ternary matrix decoded inside the GEMV/GEMM (kernels::qmoe_gemm)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/int8/int8_gemm.h"
#include "kernels/linear.h"
#include "kernels/qmoe/qmoe_gemm.h"
#include "model/linear_spec.h"
#include "model/ops.h"
#include "quant/quantize.h"

namespace lutq::model {

struct DenseForm {
  std::shared_ptr<const std::vector<float>> w;  // [n][k], shared so a tied head reuses the embedding
  bool avx2 = false;
};
struct BcqForm {
  kernels::BcqLinear lin;
  std::string desc;
};
struct Int8Form {
  kernels::Int8Weights w;
  kernels::Int8Options options;
  kernels::Int8Isa isa = kernels::Int8Isa::kScalar;
};

struct QmoeForm {
  kernels::QmoeWeights w;
  kernels::Isa isa = kernels::Isa::kScalar;  // the kernel run: scalar, avx2 or avx512
  CpuFeatures cpu;  // detect_cpu() at load, so that no call asks again
};

class Linear {
 public:
  using Form = std::variant<DenseForm, BcqForm, Int8Form, QmoeForm>;

  // Dense fp32 layer over a shared row-major W[n,k]; `isa` is the model's one backend choice
  // (scalar or AVX2 loops follow from it, model/ops.h).
  static Result<Linear> dense(std::shared_ptr<const std::vector<float>> w, int64_t n, int64_t k, kernels::Isa isa);
  // Quantizes W[n,k] per `choice` (choice.quantize must be true) and repacks for choice.isa.
  // `name` (the tensor name) prefixes errors.
  static Result<Linear> quantized(const std::string& name, const float* w, int64_t n, int64_t k,
                                  const LinearChoice& choice, ThreadPool* pool);
  // From an already quantized matrix (e.g. a lutq BCQ file). Precondition: w is valid, codes
  // included (format::validate_with_codes; lutqfile::read_bcq checks a file's).
  static Result<Linear> from_bcq(const format::BcqMatrix& w, kernels::Isa isa, kernels::Precision precision);
  // An int8 layer (quantized here or read from a lutq file): LLM.int8() with a finite threshold
  // (zero-point activations; w should carry its fp16 copy), plain absmax int8 with +inf.
  static Result<Linear> from_int8(kernels::Int8Weights w, float threshold, kernels::Isa isa);
  // A QMoE-coded layer. Precondition: w is valid (format::validate; lutqfile::read_qmoe checks
  // a file's, kernels::make_qmoe_weights only what is cheap). `table`: the runtime table of w's dictionary when other
  // layers share it (kernels::make_qmoe_table), null to make one. `isa` is the model's backend
  // choice: ref/scalar run the scalar kernel, avx2 and avx512 theirs, cuda the best CPU kernel.
  static Result<Linear> from_qmoe(std::shared_ptr<const format::QmoeMatrix> w, kernels::Isa isa,
                                  std::shared_ptr<const kernels::QmoeTable> table = nullptr);

  // Adds bias[n] to every output row (q/k/v of qwen2). Error: wrong length.
  Status set_bias(std::vector<float> bias);
  const std::vector<float>& bias() const { return bias_; }

  // y[m,n] = x[m,k] · W^T (+ bias); x rows have stride k, y rows stride n; m >= 1.
  Status forward(const float* x, int64_t m, float* y, ThreadPool& pool) const;
  // ys[j] = x · W_j^T (+ bias_j) for layers that read the same x[m][k] (q/k/v, gate/up): BCQ
  // layers go through kernels::BcqLinear::forward_shared (one table build and tile queue where
  // they allow it); any other mix runs forward() on each. Equal to forward() bit for bit.
  static Status forward_shared(std::span<const Linear* const> lins, const float* x, int64_t m,
                               std::span<float* const> ys, ThreadPool& pool);

  // Per-request scale adapters (Model::add_adapter): adapter a's version of this layer, or this
  // layer itself where a is 0 or the adapter leaves it alone.
  const Linear& adapted(int32_t a) const;
  bool has_adapters() const { return !adapted_.empty(); }
  // Holds `layer` as adapter a's version (a >= 1; same shape; this layer's bias is copied onto it).
  Status set_adapted(int32_t a, Linear layer);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  bool is_quantized() const { return !std::holds_alternative<DenseForm>(form_); }
  // Bytes a forward pass streams for the weights (and bias).
  int64_t weight_bytes() const;
  // "dense fp32 576x1536 (avx2)" or "bcq avx2/fast 576x1536 q=3 g=64 per-OC (3.25 bpw)", "+ bias".
  std::string describe() const;

  // The fp32 weights (dense only), the BCQ layer (bcq only), the int8 weights (int8 only).
  const float* dense_data() const;
  const kernels::BcqLinear* bcq() const;
  const kernels::Int8Weights* int8() const;
  const kernels::QmoeWeights* qmoe() const;  // qmoe only
  float int8_threshold() const;

 private:
  Linear(int64_t n, int64_t k, Form form) : n_(n), k_(k), form_(std::move(form)) {}
  // y[m][n] += bias on every row (nothing without a bias).
  void add_bias(float* y, int64_t m) const;

  int64_t n_ = 0;
  int64_t k_ = 0;
  Form form_;
  std::vector<float> bias_;  // empty: none
  std::vector<std::shared_ptr<const Linear>> adapted_;  // [a - 1]; null: adapter a leaves this layer
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
