// Checkpoint: what the model layer reads from a model file, whatever its format. Metadata is
// spoken in GGUF's key vocabulary (llama.cpp names: general.*, {arch}.*, tokenizer.ggml.*) and
// tensors by their GGUF names with ggml dims; each format's reader (GgufFile, the Hugging Face
// safetensors reader) maps its own file onto that. Every accessor is safe on any input: a reader
// validates its file up front, and errors name the file and the problem.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "io/gguf_types.h"

namespace lutq::io {

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) length; 1..4 dims, all > 0
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // format-specific position of the data (GGUF: relative to the data section)
  uint64_t size_bytes = 0;

  int64_t num_elements() const;
  int64_t row_length() const { return dims.empty() ? 0 : dims[0]; }
  int64_t num_rows() const;  // num_elements() / row_length()
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;

  // The file (or folder) this came from; prefixes every error message.
  virtual const std::string& path() const = 0;
  // Short name of the file format: "gguf", "safetensors".
  virtual const char* format_name() const = 0;

  // Metadata: nullptr when the key is absent. keys() lists them in file order.
  virtual const GgufValue* find(std::string_view key) const = 0;
  virtual std::vector<std::string> keys() const = 0;

  // Tensors in file order, lookup by GGUF name.
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  virtual const TensorInfo* find_tensor(std::string_view name) const = 0;
  // The tensor's stored bytes (valid while this object lives); empty when `info` is not one of
  // this checkpoint's tensors, and for tensors whose GGUF layout is computed when dequantized
  // (HfCheckpoint's attn_q/attn_k: permuted rows). Use dequantize() for values.
  virtual std::span<const uint8_t> tensor_bytes(const TensorInfo& info) const = 0;
  // Dequantizes to fp32 in ggml order (num_elements() values, dims[0] fastest). Errors for
  // types without a dequantizer and for an `info` that does not fit this checkpoint.
  virtual Result<std::vector<float>> dequantize(const TensorInfo& info) const = 0;
  // Rows [row_begin, row_end) and columns [col_begin, col_end) of a 2-D tensor (a row: dims[0]
  // values), row-major, dequantized one row at a time so that only the part is ever held in fp32:
  // a tensor-parallel shard of a large matrix. Tensors without stored bytes (layouts computed in
  // dequantize()) are dequantized whole and cut. Errors: not 2-D, an empty or outside range.
  Result<std::vector<float>> dequantize_part(const TensorInfo& info, int64_t row_begin, int64_t row_end,
                                             int64_t col_begin, int64_t col_end) const;

  // Typed getters; errors: "<path>: metadata key 'k' not found", "... is uint32, expected string".
  bool has(std::string_view key) const { return find(key) != nullptr; }
  Result<std::string> get_string(std::string_view key) const;
  Result<int64_t> get_int(std::string_view key) const;   // any integer type (uint64 > INT64_MAX is an error)
  Result<double> get_float(std::string_view key) const;  // float32/float64 and integers
  Result<bool> get_bool(std::string_view key) const;
  Result<std::vector<std::string>> get_string_array(std::string_view key) const;
  Result<std::vector<int64_t>> get_int_array(std::string_view key) const;  // integer or bool elements
  Result<std::vector<float>> get_float_array(std::string_view key) const;  // float32/64 or integer elements

 protected:
  Checkpoint() = default;
  Checkpoint(const Checkpoint&) = default;
  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(const Checkpoint&) = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  // Dequantizes ggml-typed bytes `src` described by `info` (size checked against dims and type).
  Result<std::vector<float>> dequantize_bytes(const TensorInfo& info, std::span<const uint8_t> src) const;

 private:
  Status key_error(std::string_view key, const GgufValue* v, const char* expected) const;
};

}  // namespace lutq::io

namespace lutq::io {

// Opens a model file by content: a GGUF file (lutq's own files are GGUF too), or a Hugging Face
// checkpoint (a folder, a .safetensors file or a .safetensors.index.json; HfCheckpoint). Errors
// name the path and, for an unknown format, what was expected.
Result<std::unique_ptr<Checkpoint>> open_checkpoint(const std::string& path);

}  // namespace lutq::io
