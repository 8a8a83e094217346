// Reader of one safetensors file (the Hugging Face tensor container), validated up front like
// GgufFile: open() maps the file read-only and checks the whole header before anything is read.
//
// File layout: u64 little-endian N, then N bytes of UTF-8 JSON (possibly padded with spaces),
// then the data buffer. The JSON is an object: "__metadata__" (optional) maps strings to strings;
// every other key is a tensor name mapped to
//   {"dtype": "F32"|"F16"|"BF16"|..., "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// with row-major shapes (d0 slowest) and offsets relative to the data buffer.
//
// Checked: N against a cap and the file size, the JSON's syntax and types, duplicate keys, known
// dtype names, offsets inside the data buffer with end >= begin, end - begin equal to
// product(shape) * dtype size (overflow-safe), tensors not overlapping. Unused gaps between
// tensors are allowed. Every error names the file and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "io/gguf_types.h"
#include "io/mapped_file.h"

namespace lutq::io {

// The dtypes safetensors defines. Only F32, F16 and BF16 convert to fp32 here; the others are
// recognised (so their sizes are validated) and refused by to_f32 with "unsupported dtype".
enum class SafetensorsDtype {
  kBool, kU8, kI8, kF8E4M3, kF8E5M2, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kI64, kU64, kF64,
};

// "F32", "BF16", ... as written in the header.
const char* safetensors_dtype_name(SafetensorsDtype dtype);
// Bytes per element (1..8).
int safetensors_dtype_size(SafetensorsDtype dtype);
// The header spelling -> dtype; nullopt for names safetensors does not define.
std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name);
// The ggml element type with the same encoding (F32, F16, BF16, I8, I16, I32, I64, F64), if any.
std::optional<GgmlType> safetensors_dtype_to_ggml(SafetensorsDtype dtype);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first; may be empty (a scalar) or hold 0s
  uint64_t begin = 0;          // [begin, end) relative to the data buffer
  uint64_t end = 0;

  uint64_t size_bytes() const { return end - begin; }
  int64_t num_elements() const;  // product of shape (1 for a scalar); validated not to overflow
};

class SafetensorsFile {
 public:
  // Largest accepted JSON header (real ones are well under 1 MB even for 100k-tensor files).
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

  // Maps `path` read-only and validates everything.
  static Result<SafetensorsFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing); `name` stands for the path in messages.
  static Result<SafetensorsFile> from_memory(std::vector<uint8_t> bytes, std::string name);

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return bytes().size(); }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length

  // Tensors in data order (by begin offset, then name); lookup by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  // "__metadata__" string pairs (empty when absent).
  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

  // The tensor's bytes; empty when `t` does not describe a range inside this file's data buffer.
  std::span<const uint8_t> data(const SafetensorsTensor& t) const;
  // Converts an F32/F16/BF16 tensor to fp32 (row-major, as stored). Other dtypes: kUnsupported
  // "<path>: tensor 'name' has unsupported dtype I64 (supported: F32, F16, BF16)".
  Result<std::vector<float>> to_f32(const SafetensorsTensor& t) const;

 private:
  SafetensorsFile() = default;
  static Result<SafetensorsFile> parse(SafetensorsFile file);
  std::span<const uint8_t> bytes() const { return mapped_.data() != nullptr ? mapped_.bytes() : buffer_; }

  std::string path_;
  MappedFile mapped_;
  std::vector<uint8_t> buffer_;  // from_memory()
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> index into tensors_
  std::map<std::string, std::string, std::less<>> metadata_;
};

}  // namespace lutq::io
