// Builds GGUF v3 (or v2) images in memory: metadata in insertion order, then the tensor
// directory, then the tensor data, each tensor at a multiple of the alignment (general.alignment
// when set, else 32). Used by tests and fuzz seeds, and for writing lutq's own GGUF files.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "io/gguf_types.h"

namespace lutq::io {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  // Adds a metadata pair. Errors: duplicate key, a malformed value (array payload size not
  // matching its count), general.alignment that is not a uint32 power of two.
  Status add(std::string key, GgufValue value);
  Status add_string(std::string key, std::string v) {
    return add(std::move(key), GgufValue::make_string(std::move(v)));
  }
  Status add_uint32(std::string key, uint32_t v) {
    return add(std::move(key), GgufValue::make_uint(GgufValueType::UINT32, v));
  }
  Status add_int32(std::string key, int32_t v) {
    return add(std::move(key), GgufValue::make_int(GgufValueType::INT32, v));
  }
  Status add_float32(std::string key, float v) { return add(std::move(key), GgufValue::make_float32(v)); }
  Status add_bool(std::string key, bool v) { return add(std::move(key), GgufValue::make_bool(v)); }
  // Replaces the value of metadata key `key`, keeping its place; false when there is no such key
  // or the value is malformed (general.alignment cannot be replaced).
  bool replace(const std::string& key, GgufValue value);
  // The value of metadata key `key`, null when there is none.
  const GgufValue* find(const std::string& key) const;

  // Adds a tensor; `data` must hold exactly ggml_tensor_bytes(type, dims) bytes.
  Status add_tensor(std::string name, std::vector<int64_t> dims, GgmlType type, std::span<const uint8_t> data);

  uint32_t alignment() const { return alignment_; }
  size_t num_tensors() const { return tensors_.size(); }

  // The complete file image (without tensors it ends right after the metadata, unpadded).
  std::vector<uint8_t> to_bytes() const;
  // Writes the image to `path` (errors name the path).
  Status write_file(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    std::vector<int64_t> dims;
    GgmlType type;
    std::vector<uint8_t> data;
  };

  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace lutq::io
