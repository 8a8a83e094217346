#include "model/loader.h"

#include <utility>

#include "io/checkpoint.h"
#include "lutqfile/adapter.h"
#include "lutqfile/lutq_file.h"

namespace lutq::model {

Result<std::vector<float>> LayerBuilder::vector(const std::string& name) const {
  const io::TensorInfo* t = ckpt_.find_tensor(name);
  if (t == nullptr) return Status::invalid(ckpt_.path() + ": missing tensor '" + name + "'");
  Result<std::vector<float>> w = ckpt_.dequantize(*t);
  if (!w) return Status(w.status().code(), "tensor '" + name + "': " + w.status().message());
  return w;
}

const std::string& LayerBuilder::path() const { return ckpt_.path(); }

bool LayerBuilder::has_weight(const std::string& name) const { return lutqfile::has_weight(ckpt_, name); }

Result<std::optional<Linear>> LayerBuilder::qmoe_linear(const std::string& name, const TensorSlice& slice) {
  Result<std::optional<format::QmoeMatrix>> m = lutqfile::read_qmoe(ckpt_, name, qmoe_dicts_);
  if (!m) return m.status();
  if (!m->has_value()) return std::optional<Linear>();
  if (slice.axis != SplitAxis::kNone) {
    return Status::unsupported(ckpt_.path() + ": " + name + ": QMoE matrices are not split for tensor parallelism");
  }
  auto matrix = std::make_shared<const format::QmoeMatrix>(std::move(**m));
  std::shared_ptr<const kernels::QmoeTable>& table = qmoe_tables_[matrix->dict.get()];
  if (table == nullptr) {
    Result<std::shared_ptr<const kernels::QmoeTable>> t = kernels::make_qmoe_table(matrix->dict);
    if (!t) return Status(t.status().code(), ckpt_.path() + ": " + name + ": " + t.status().message());
    table = std::move(*t);
  }
  Result<Linear> lin = Linear::from_qmoe(std::move(matrix), isa_, table);
  if (!lin) return Status(lin.status().code(), ckpt_.path() + ": " + name + ": " + lin.status().message());
  return std::optional<Linear>(std::move(*lin));
}

Result<Linear> LayerBuilder::linear(int64_t l, LinearRole role, bool bias) {
  const std::string prefix = "blk." + std::to_string(l) + "." + role_name(role);
  const TensorSlice slice = shard_ ? slice_for(*shard_, full_, role) : TensorSlice{};
  Result<Linear> lin = build(prefix + ".weight", prefix + ".weight", role, nullptr, slice);
  if (!lin || !bias) return lin;
  Result<std::vector<float>> b = vector(prefix + ".bias");
  if (!b) return b.status();
  std::vector<float> local_bias = slice_bias(std::move(*b), slice);
  if (local_bias.empty()) return lin;  // a row-split layer's bias: rank 0 adds it
  if (Status s = lin->set_bias(std::move(local_bias)); !s) {
    return Status(s.code(), ckpt_.path() + ": tensor '" + prefix + ".bias': " + s.message());
  }
  return lin;
}

Result<Linear> LayerBuilder::linear_from(const std::string& name, std::vector<float> w, int64_t n, int64_t k,
                                         LinearRole role) {
  if (static_cast<int64_t>(w.size()) != n * k) {
    return Status::invalid(ckpt_.path() + ": " + name + ": " + std::to_string(w.size()) + " weights for a " +
                           std::to_string(n) + "x" + std::to_string(k) + " layer");
  }
  const LinearChoice choice = options_.linear.resolve(name, role);
  Result<Linear> lin = choice.quantize ? Linear::quantized(name, w.data(), n, k, choice, &pool_)
                                       : Linear::dense(std::make_shared<const std::vector<float>>(std::move(w)), n, k, isa_);
  if (!lin) return Status(lin.status().code(), ckpt_.path() + ": " + lin.status().message());
  return lin;
}

Result<Linear> LayerBuilder::output(std::shared_ptr<const std::vector<float>> token_embd) {
  const bool tied = config_.tied_output;
  return build("output.weight", tied ? "token_embd.weight" : "output.weight", std::nullopt,
               tied ? std::move(token_embd) : nullptr, shard_ ? head_slice(*shard_) : TensorSlice{});
}

// The BCQ matrix a lutq file stores under `name`, else its int8 or QMoE entry, else the dense tensor
// `dense_name` (the embedding table for a tied head), quantized or kept dense as the spec says.
// `shared` reuses an already loaded fp32 copy when dense. `slice`: the rows or columns this rank
// holds under tensor parallelism (model/shard.h).
Result<Linear> LayerBuilder::build(const std::string& name, const std::string& dense_name,
                                   std::optional<LinearRole> role, std::shared_ptr<const std::vector<float>> shared,
                                   const TensorSlice& slice) {
  const auto prefixed = [&](const Status& s) { return Status(s.code(), ckpt_.path() + ": " + s.message()); };
  Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(ckpt_, name);
  if (!entry) return entry.status();
  if (entry->has_value()) {
    Result<format::BcqMatrix> full = lutqfile::read_bcq(ckpt_, name);
    if (!full) return full.status();
    if (options_.adapter != nullptr) {
      Result<bool> applied = options_.adapter->apply(name, *full);
      if (!applied) return applied.status();
      if (*applied) adapted_.push_back(name);
    }
    Result<format::BcqMatrix> w = slice_bcq(*full, slice, name);
    if (!w) return prefixed(w.status());
    Result<Linear> lin = Linear::from_bcq(*w, isa_, options_.precision);
    if (!lin) return prefixed(Status(lin.status().code(), name + ": " + lin.status().message()));
    return lin;
  }
  Result<std::optional<lutqfile::Int8Entry>> int8 = lutqfile::read_int8(ckpt_, name);
  if (!int8) return int8.status();
  if (int8->has_value()) {
    lutqfile::Int8Entry e = slice_int8(**int8, slice);
    Result<kernels::Int8Weights> w =
        kernels::int8_from_codes(e.n, e.k, std::move(e.q), std::move(e.scale), std::move(e.fp16));
    if (!w) return prefixed(Status(w.status().code(), name + ": " + w.status().message()));
    return Linear::from_int8(std::move(*w), e.threshold, isa_);
  }
  Result<std::optional<Linear>> qmoe = qmoe_linear(name, slice);
  if (!qmoe) return qmoe.status();
  if (qmoe->has_value()) return std::move(**qmoe);
  const LinearChoice choice = options_.linear.resolve(name, role);
  const io::TensorInfo* info = ckpt_.find_tensor(dense_name);
  if (info == nullptr) return Status::invalid(ckpt_.path() + ": missing tensor '" + dense_name + "'");
  int64_t k = info->dims[0];
  int64_t n = info->num_elements() / k;
  if (shared == nullptr && slice.axis != SplitAxis::kNone && info->dims.size() == 2) {
    // A shard: only its rows or columns are dequantized (row by row), never the whole matrix.
    const bool rows = slice.axis == SplitAxis::kRows;
    Result<std::vector<float>> part = ckpt_.dequantize_part(*info, rows ? slice.begin : 0, rows ? slice.end : n,
                                                            rows ? 0 : slice.begin, rows ? k : slice.end);
    if (!part) return part.status();
    shared = std::make_shared<const std::vector<float>>(std::move(*part));
    (rows ? n : k) = slice.end - slice.begin;
  } else {
    if (shared == nullptr) {
      Result<std::vector<float>> w = vector(dense_name);
      if (!w) return w.status();
      shared = std::make_shared<const std::vector<float>>(std::move(*w));
    }
    if (slice.axis != SplitAxis::kNone) {  // a matrix shared with another use (tied head): cut a copy
      shared = std::make_shared<const std::vector<float>>(slice_dense(*shared, n, k, slice));
      (slice.axis == SplitAxis::kRows ? n : k) = slice.end - slice.begin;
    }
  }
  Result<Linear> lin = choice.quantize ? Linear::quantized(name, shared->data(), n, k, choice, &pool_)
                                       : Linear::dense(std::move(shared), n, k, isa_);
  if (!lin) return prefixed(lin.status());
  return lin;
}

}  // namespace lutq::model
