// Checkpoint's shared accessors: typed metadata getters and dequantization of ggml-typed bytes.
#include "io/checkpoint.h"

#include <algorithm>
#include <limits>

#include "io/gguf_dequant.h"

namespace lutq::io {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

}  // namespace

int64_t TensorInfo::num_elements() const {
  if (dims.empty()) return 0;
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d <= 0 || n > std::numeric_limits<int64_t>::max() / d) return 0;  // not from a validated file
    n *= d;
  }
  return n;
}

int64_t TensorInfo::num_rows() const {
  const int64_t row = row_length();
  return row > 0 ? num_elements() / row : 0;
}

Status Checkpoint::key_error(std::string_view key, const GgufValue* v, const char* expected) const {
  const std::string prefix = path() + ": metadata key '" + std::string(key) + "'";
  if (v == nullptr) return {StatusCode::kInvalidArgument, prefix + " not found"};
  return {StatusCode::kInvalidArgument, prefix + " is " + v->type_description() + ", expected " + expected};
}

Result<std::string> Checkpoint::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type != GgufValueType::STRING) return key_error(key, v, "string");
  return v->str;
}

Result<int64_t> Checkpoint::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !gguf_is_integer(v->type)) return key_error(key, v, "integer");
  if (gguf_is_signed(v->type)) return v->i64;
  if (v->u64 > kInt64Max) {
    return Status::invalid(path() + ": metadata key '" + std::string(key) + "' value " + std::to_string(v->u64) +
                           " does not fit int64");
  }
  return static_cast<int64_t>(v->u64);
}

Result<double> Checkpoint::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !(gguf_is_float(v->type) || gguf_is_integer(v->type))) return key_error(key, v, "float");
  if (gguf_is_float(v->type)) return v->f64;
  if (gguf_is_signed(v->type)) return static_cast<double>(v->i64);
  return static_cast<double>(v->u64);
}

Result<bool> Checkpoint::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type != GgufValueType::BOOL) return key_error(key, v, "bool");
  return v->u64 != 0;
}

Result<std::vector<std::string>> Checkpoint::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !v->is_array() || v->elem_type != GgufValueType::STRING) {
    return key_error(key, v, "array of string");
  }
  return v->strings;
}

Result<std::vector<int64_t>> Checkpoint::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !v->is_array() || !gguf_is_integer(v->elem_type)) return key_error(key, v, "array of integer");
  std::vector<int64_t> out;
  out.reserve(v->count);  // count was bounded by the file when parsed
  for (uint64_t i = 0; i < v->count; ++i) {
    if (v->elem_type == GgufValueType::UINT64 && v->element_u64(i) > kInt64Max) {
      return Status::invalid(path() + ": metadata key '" + std::string(key) + "' element " + std::to_string(i) +
                             " value " + std::to_string(v->element_u64(i)) + " does not fit int64");
    }
    out.push_back(v->element_i64(i));
  }
  return out;
}

Result<std::vector<float>> Checkpoint::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !v->is_array() || !(gguf_is_float(v->elem_type) || gguf_is_integer(v->elem_type))) {
    return key_error(key, v, "array of float");
  }
  std::vector<float> out;
  out.reserve(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out.push_back(static_cast<float>(v->element_f64(i)));
  return out;
}

Result<std::vector<float>> Checkpoint::dequantize_part(const TensorInfo& info, int64_t row_begin, int64_t row_end,
                                                       int64_t col_begin, int64_t col_end) const {
  const std::string what = path() + ": tensor '" + info.name + "'";
  if (info.dims.size() != 2) return Status::invalid(what + ": a part of a tensor needs 2 dimensions");
  const int64_t k = info.dims[0];
  const int64_t n = info.dims[1];
  if (row_begin < 0 || row_end > n || row_begin >= row_end || col_begin < 0 || col_end > k || col_begin >= col_end) {
    return Status::invalid(what + ": rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                           ") x columns [" + std::to_string(col_begin) + ", " + std::to_string(col_end) +
                           ") is not a part of its " + std::to_string(n) + " x " + std::to_string(k));
  }
  const int64_t cols = col_end - col_begin;
  std::vector<float> out(static_cast<size_t>((row_end - row_begin) * cols));
  const std::span<const uint8_t> bytes = tensor_bytes(info);
  if (bytes.empty()) {  // a computed layout: whole, then cut
    Result<std::vector<float>> whole = dequantize(info);
    if (!whole) return whole.status();
    for (int64_t r = row_begin; r < row_end; ++r) {
      const float* src = whole->data() + r * k + col_begin;
      std::copy(src, src + cols, out.data() + (r - row_begin) * cols);
    }
    return out;
  }
  // The whole tensor's size, place in the file and type are checked as dequantize_bytes() does.
  Result<uint64_t> expected = ggml_tensor_bytes(info.type, info.dims);
  if (!expected) return Status(expected.status().code(), what + " " + expected.status().message());
  if (*expected != info.size_bytes || bytes.size() != info.size_bytes) {
    return Status::invalid(what + " size " + std::to_string(info.size_bytes) + " does not match its dims and type (" +
                           std::to_string(*expected) + " bytes) or its place in the file");
  }
  if (!dequantize_supported(info.type)) {
    return Status::unsupported(what + ": dequantization of " + ggml_type_name(info.type) + " is not supported");
  }
  const size_t row_bytes = static_cast<size_t>(info.size_bytes / static_cast<uint64_t>(n));
  std::vector<float> row(cols == k ? 0 : static_cast<size_t>(k));
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* dst = cols == k ? out.data() + (r - row_begin) * k : row.data();
    Status s = dequantize_row(info.type, bytes.data() + static_cast<size_t>(r) * row_bytes, row_bytes, dst, k);
    if (!s) return Status(s.code(), what + ": " + s.message());
    if (cols != k) std::copy(row.begin() + col_begin, row.begin() + col_end, out.data() + (r - row_begin) * cols);
  }
  return out;
}

Result<std::vector<float>> Checkpoint::dequantize_bytes(const TensorInfo& info, std::span<const uint8_t> src) const {
  const std::string what = path() + ": tensor '" + info.name + "'";
  Result<uint64_t> expected = ggml_tensor_bytes(info.type, info.dims);
  if (!expected) return Status(expected.status().code(), what + " " + expected.status().message());
  if (*expected != info.size_bytes) {
    return Status::invalid(what + " size " + std::to_string(info.size_bytes) + " does not match its dims and type (" +
                           std::to_string(*expected) + " bytes)");
  }
  if (src.size() != info.size_bytes) {
    return Status::invalid(what + " (offset " + std::to_string(info.offset) + ", size " +
                           std::to_string(info.size_bytes) + ") is not inside the data section of this file");
  }
  if (!dequantize_supported(info.type)) {
    return Status::unsupported(what + ": dequantization of " + ggml_type_name(info.type) + " is not supported");
  }
  std::vector<float> out(static_cast<size_t>(info.num_elements()));
  Status s = dequantize_row(info.type, src.data(), src.size(), out.data(), info.num_elements());
  if (!s) return Status(s.code(), what + ": " + s.message());
  return out;
}

}  // namespace lutq::io
