#include "model/embedding.h"

#include <algorithm>
#include <optional>

#include "io/gguf_dequant.h"

namespace lutq::model {

Result<Embedding> Embedding::load(const io::Checkpoint& ckpt, const std::string& name, bool want_f32) {
  const io::TensorInfo* t = ckpt.find_tensor(name);
  if (t == nullptr) return Status::invalid(ckpt.path() + ": missing tensor '" + name + "'");
  Embedding e;
  e.n_embd_ = t->row_length();
  e.n_vocab_ = t->num_rows();
  const std::optional<io::GgmlTypeTraits> traits = io::ggml_type_traits(t->type);
  const bool compact = !want_f32 && t->type != io::GgmlType::F32 && io::dequantize_supported(t->type) && traits &&
                       traits->block_size > 0 && e.n_embd_ % traits->block_size == 0;
  if (!compact) {
    Result<std::vector<float>> w = ckpt.dequantize(*t);
    if (!w) return Status(w.status().code(), "tensor '" + name + "': " + w.status().message());
    e.f32_ = std::make_shared<const std::vector<float>>(std::move(*w));
    return e;
  }
  const std::span<const uint8_t> src = ckpt.tensor_bytes(*t);
  e.row_bytes_ = e.n_embd_ / traits->block_size * traits->type_size;
  if (static_cast<int64_t>(src.size()) < e.row_bytes_ * e.n_vocab_) {
    return Status::invalid(ckpt.path() + ": tensor '" + name + "' holds " + std::to_string(src.size()) +
                           " bytes, its shape needs " + std::to_string(e.row_bytes_ * e.n_vocab_));
  }
  e.type_ = t->type;
  e.packed_.assign(src.begin(), src.begin() + e.row_bytes_ * e.n_vocab_);
  // Row lookups cannot fail from here on: dequantize_row only refuses types and sizes, checked here.
  std::vector<float> probe(static_cast<size_t>(e.n_embd_));
  const Status s = io::dequantize_row(e.type_, e.packed_.data(), static_cast<size_t>(e.row_bytes_), probe.data(), e.n_embd_);
  if (!s) return Status(s.code(), ckpt.path() + ": tensor '" + name + "': " + s.message());
  return e;
}

void Embedding::row(int32_t token, float* out) const {
  if (f32_) {
    const float* src = f32_->data() + static_cast<int64_t>(token) * n_embd_;
    std::copy(src, src + n_embd_, out);
    return;
  }
  // Type and size were checked at load: nothing here can fail.
  (void)io::dequantize_row(type_, packed_.data() + static_cast<int64_t>(token) * row_bytes_,
                           static_cast<size_t>(row_bytes_), out, n_embd_);
}

int64_t Embedding::bytes() const {
  return f32_ ? static_cast<int64_t>(f32_->size() * sizeof(float)) : static_cast<int64_t>(packed_.size());
}

}  // namespace lutq::model
