// GGUF / ggml type vocabulary: tensor element types (with their block geometry), metadata value
// types, and the metadata value itself. Layouts follow ggml (ggml-common.h) and the GGUF spec.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq::io {

// ggml tensor element types; the numeric values are the on-disk codes.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// ggml's name for the type ("f32", "q4_0", "q4_K", "bf16", ...), "unknown" for other codes.
const char* ggml_type_name(GgmlType type);

// Block geometry of a type: `block_size` elements are stored in `type_size` bytes.
struct GgmlTypeTraits {
  int64_t block_size = 0;
  int64_t type_size = 0;
};

// Geometry of a known type code, nullopt for codes this reader does not know.
std::optional<GgmlTypeTraits> ggml_type_traits(GgmlType type);

// Bytes of a tensor of `type` with ggml-order dims (dims[0] contiguous), checked: every dim > 0,
// at most 4 dims, dims[0] a multiple of the block size, no int64 overflow. The message says what
// is wrong without naming a file or tensor (callers add that).
Result<uint64_t> ggml_tensor_bytes(GgmlType type, std::span<const int64_t> dims);

// GGUF metadata value types; the numeric values are the on-disk codes.
enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// "uint8", "int32", "float32", "bool", "string", "array", ... ("unknown" for other codes).
const char* gguf_value_type_name(GgufValueType type);
bool gguf_value_type_known(uint32_t code);
bool gguf_is_unsigned(GgufValueType type);  // UINT8..UINT64
bool gguf_is_signed(GgufValueType type);    // INT8..INT64
bool gguf_is_integer(GgufValueType type);   // either of the above (not BOOL)
bool gguf_is_float(GgufValueType type);     // FLOAT32, FLOAT64
// Encoded size of one scalar of a fixed-size type (1..8), 0 for STRING and ARRAY.
size_t gguf_scalar_size(GgufValueType type);

// One metadata value. Scalars are held widened and exact; arrays keep numeric elements as their
// stored little-endian bytes (compact for the big tokenizer arrays) and decode on access.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;

  uint64_t u64 = 0;  // UINT8/16/32/64 and BOOL (0 or 1)
  int64_t i64 = 0;   // INT8/16/32/64
  double f64 = 0.0;  // FLOAT32 (widened exactly) and FLOAT64
  std::string str;   // STRING

  // type == ARRAY: the element type and the elements in the member that matches it.
  GgufValueType elem_type = GgufValueType::UINT8;
  uint64_t count = 0;                // number of elements
  std::vector<uint8_t> raw;          // fixed-size elements, count * gguf_scalar_size(elem_type) bytes
  std::vector<std::string> strings;  // STRING elements
  std::vector<GgufValue> items;      // ARRAY elements (nested arrays)

  bool is_array() const { return type == GgufValueType::ARRAY; }
  // "uint32", "string", "array of int32", "array of array of string", ...
  std::string type_description() const;

  // Element i of a fixed-size numeric/bool array, widened; 0 when i >= count or for string and
  // nested arrays. element_i64: integers and bools sign/zero-extended (a uint64 above INT64_MAX
  // wraps: check element_u64); element_u64: the raw bits zero-extended; element_f64: the value
  // as double (integers converted).
  int64_t element_i64(uint64_t i) const;
  uint64_t element_u64(uint64_t i) const;
  double element_f64(uint64_t i) const;

  static GgufValue make_uint(GgufValueType type, uint64_t v);  // UINT8..UINT64 (truncated to width)
  static GgufValue make_int(GgufValueType type, int64_t v);    // INT8..INT64 (truncated to width)
  static GgufValue make_float32(float v);
  static GgufValue make_float64(double v);
  static GgufValue make_bool(bool v);
  static GgufValue make_string(std::string v);
  // Arrays of integers (elem_type UINT8..INT64 or BOOL), each value truncated to the width.
  static GgufValue make_int_array(GgufValueType elem_type, std::span<const int64_t> values);
  static GgufValue make_float32_array(std::span<const float> values);
  static GgufValue make_float64_array(std::span<const double> values);
  static GgufValue make_string_array(std::vector<std::string> values);
  // Array of arrays (elem_type ARRAY); every item must itself be an array.
  static GgufValue make_array_array(std::vector<GgufValue> items);
};

}  // namespace lutq::io
