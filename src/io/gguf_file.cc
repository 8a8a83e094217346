// GgufFile accessors: metadata and tensor lookup, tensor bytes. Parsing and validation live in
// gguf_parse.cc; typed getters and dequantization in checkpoint.cc.
#include "io/gguf_file.h"

namespace lutq::io {

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> out;
  out.reserve(kv_.size());
  for (const auto& kv : kv_) out.push_back(kv.first);
  return out;
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::tensor_bytes(const TensorInfo& info) const {
  const std::span<const uint8_t> all = bytes();
  const uint64_t size = all.size();
  if (data_offset_ > size || info.offset > size - data_offset_ || info.size_bytes > size - data_offset_ - info.offset) {
    return {};
  }
  return all.subspan(data_offset_ + info.offset, info.size_bytes);
}

Result<std::vector<float>> GgufFile::dequantize(const TensorInfo& info) const {
  return dequantize_bytes(info, tensor_bytes(info));
}

}  // namespace lutq::io
