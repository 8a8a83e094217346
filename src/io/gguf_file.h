// GGUF (v2, v3; little-endian) checkpoint reader. open() maps the file read-only and validates
// the whole header, metadata and tensor directory up front, so that every accessor afterwards is
// safe on any input: sizes, offsets and counts are checked with overflow-safe arithmetic against
// the file size, and every error is a Status whose message names the file and the problem.
//
// File layout (all little-endian):
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count
//   kv_count × { string key, u32 value_type, value }      string = u64 length + bytes
//   tensor_count × { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
//   padding to general.alignment (default 32), then the data section; tensor offsets are
//   relative to its start and multiples of the alignment.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"
#include "io/gguf_types.h"
#include "io/mapped_file.h"

namespace lutq::io {

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr int kGgufMaxDims = 4;
// Deepest nesting of arrays inside arrays accepted in metadata (1 = plain array).
constexpr int kGgufMaxArrayDepth = 8;

class GgufFile final : public Checkpoint {
 public:
  // Maps `path` read-only and validates everything.
  static Result<GgufFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing); `name` stands for the path in messages.
  static Result<GgufFile> from_memory(std::vector<uint8_t> bytes, std::string name);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t file_size() const { return bytes().size(); }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section in the file

  const std::string& path() const override { return path_; }
  const char* format_name() const override { return "gguf"; }
  const GgufValue* find(std::string_view key) const override;
  std::vector<std::string> keys() const override;
  size_t num_keys() const { return kv_.size(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const override;
  // Empty when `info` does not describe a range inside this file's data section.
  std::span<const uint8_t> tensor_bytes(const TensorInfo& info) const override;
  Result<std::vector<float>> dequantize(const TensorInfo& info) const override;

 private:
  GgufFile() = default;
  static Result<GgufFile> parse(GgufFile file);
  std::span<const uint8_t> bytes() const { return mapped_.data() != nullptr ? mapped_.bytes() : buffer_; }

  std::string path_;
  MappedFile mapped_;
  std::vector<uint8_t> buffer_;  // from_memory()
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;        // file order
  std::map<std::string, size_t, std::less<>> kv_index_;      // key -> index into kv_
  std::vector<TensorInfo> tensors_;                          // file order
  std::map<std::string, size_t, std::less<>> tensor_index_;  // name -> index into tensors_
};

}  // namespace lutq::io
