#include "io/gguf_types.h"

#include <bit>
#include <limits>

namespace lutq::io {
namespace {

struct TypeEntry {
  GgmlType type;
  const char* name;
  int64_t block_size;
  int64_t type_size;
};

// Block geometry as in ggml's type_traits (QK_K = 256).
constexpr TypeEntry kTypeTable[] = {
    {GgmlType::F32, "f32", 1, 4},
    {GgmlType::F16, "f16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 2 + 16},
    {GgmlType::Q4_1, "q4_1", 32, 2 + 2 + 16},
    {GgmlType::Q5_0, "q5_0", 32, 2 + 4 + 16},
    {GgmlType::Q5_1, "q5_1", 32, 2 + 2 + 4 + 16},
    {GgmlType::Q8_0, "q8_0", 32, 2 + 32},
    {GgmlType::Q8_1, "q8_1", 32, 2 + 2 + 32},
    {GgmlType::Q2_K, "q2_K", 256, 2 + 2 + 16 + 64},
    {GgmlType::Q3_K, "q3_K", 256, 2 + 64 + 32 + 12},
    {GgmlType::Q4_K, "q4_K", 256, 2 + 2 + 12 + 128},
    {GgmlType::Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128},
    {GgmlType::Q6_K, "q6_K", 256, 128 + 64 + 16 + 2},
    {GgmlType::Q8_K, "q8_K", 256, 4 + 256 + 32},
    {GgmlType::IQ2_XXS, "iq2_xxs", 256, 2 + 64},
    {GgmlType::IQ2_XS, "iq2_xs", 256, 2 + 64 + 8},
    {GgmlType::IQ3_XXS, "iq3_xxs", 256, 2 + 64 + 32},
    {GgmlType::IQ1_S, "iq1_s", 256, 2 + 32 + 16},
    {GgmlType::IQ4_NL, "iq4_nl", 32, 2 + 16},
    {GgmlType::IQ3_S, "iq3_s", 256, 2 + 64 + 32 + 8 + 4},
    {GgmlType::IQ2_S, "iq2_s", 256, 2 + 64 + 16},
    {GgmlType::IQ4_XS, "iq4_xs", 256, 2 + 2 + 128 + 4},
    {GgmlType::I8, "i8", 1, 1},
    {GgmlType::I16, "i16", 1, 2},
    {GgmlType::I32, "i32", 1, 4},
    {GgmlType::I64, "i64", 1, 8},
    {GgmlType::F64, "f64", 1, 8},
    {GgmlType::IQ1_M, "iq1_m", 256, 32 + 16 + 8},
    {GgmlType::BF16, "bf16", 1, 2},
    {GgmlType::TQ1_0, "tq1_0", 256, 2 + 52},
    {GgmlType::TQ2_0, "tq2_0", 256, 2 + 64},
    {GgmlType::MXFP4, "mxfp4", 32, 1 + 16},
};

const TypeEntry* find_type(GgmlType type) {
  for (const TypeEntry& e : kTypeTable) {
    if (e.type == type) return &e;
  }
  return nullptr;
}

std::string dims_string(std::span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

uint64_t load_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void store_le(std::vector<uint8_t>& out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

const char* ggml_type_name(GgmlType type) {
  const TypeEntry* e = find_type(type);
  return e != nullptr ? e->name : "unknown";
}

std::optional<GgmlTypeTraits> ggml_type_traits(GgmlType type) {
  const TypeEntry* e = find_type(type);
  if (e == nullptr) return std::nullopt;
  return GgmlTypeTraits{e->block_size, e->type_size};
}

Result<uint64_t> ggml_tensor_bytes(GgmlType type, std::span<const int64_t> dims) {
  const TypeEntry* e = find_type(type);
  if (e == nullptr) {
    return Status(StatusCode::kUnsupported, "unknown ggml type " + std::to_string(static_cast<uint32_t>(type)));
  }
  if (dims.empty() || dims.size() > 4) {
    return Status::invalid("has " + std::to_string(dims.size()) + " dimensions (must be 1..4)");
  }
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t elements = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] <= 0) {
      return Status::invalid("dimension " + std::to_string(i) + " is " + std::to_string(dims[i]) +
                             " (must be > 0), dims " + dims_string(dims));
    }
    if (elements > kMax / dims[i]) {
      return Status::invalid("number of elements overflows int64, dims " + dims_string(dims));
    }
    elements *= dims[i];
  }
  if (dims[0] % e->block_size != 0) {
    return Status::invalid("row length " + std::to_string(dims[0]) + " is not a multiple of the " + e->name +
                           " block size " + std::to_string(e->block_size));
  }
  // (elements / block_size) * type_size, overflow-checked.
  const int64_t blocks = elements / e->block_size;
  if (blocks > kMax / e->type_size) {
    return Status::invalid("byte size overflows int64, dims " + dims_string(dims) + " of " + e->name);
  }
  return static_cast<uint64_t>(blocks * e->type_size);
}

const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: return "uint8";
    case GgufValueType::INT8: return "int8";
    case GgufValueType::UINT16: return "uint16";
    case GgufValueType::INT16: return "int16";
    case GgufValueType::UINT32: return "uint32";
    case GgufValueType::INT32: return "int32";
    case GgufValueType::FLOAT32: return "float32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::UINT64: return "uint64";
    case GgufValueType::INT64: return "int64";
    case GgufValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

bool gguf_value_type_known(uint32_t code) { return code <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

bool gguf_is_unsigned(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

bool gguf_is_signed(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

bool gguf_is_integer(GgufValueType t) { return gguf_is_unsigned(t) || gguf_is_signed(t); }

bool gguf_is_float(GgufValueType t) { return t == GgufValueType::FLOAT32 || t == GgufValueType::FLOAT64; }

size_t gguf_scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY: return 0;
  }
  return 0;
}

std::string GgufValue::type_description() const {
  if (!is_array()) return gguf_value_type_name(type);
  std::string s = "array of ";
  if (elem_type != GgufValueType::ARRAY) return s + gguf_value_type_name(elem_type);
  // Nested: describe by the first item when there is one.
  if (items.empty()) return s + "array";
  return s + items.front().type_description();
}

uint64_t GgufValue::element_u64(uint64_t i) const {
  const size_t n = gguf_scalar_size(elem_type);
  if (!is_array() || n == 0 || i >= count || (i + 1) * n > raw.size()) return 0;
  return load_le(raw.data() + i * n, n);
}

int64_t GgufValue::element_i64(uint64_t i) const {
  const uint64_t bits = element_u64(i);
  switch (elem_type) {
    case GgufValueType::INT8: return static_cast<int8_t>(bits);
    case GgufValueType::INT16: return static_cast<int16_t>(bits);
    case GgufValueType::INT32: return static_cast<int32_t>(bits);
    case GgufValueType::INT64: return static_cast<int64_t>(bits);
    default: return static_cast<int64_t>(bits);
  }
}

double GgufValue::element_f64(uint64_t i) const {
  const uint64_t bits = element_u64(i);
  switch (elem_type) {
    case GgufValueType::FLOAT32: return std::bit_cast<float>(static_cast<uint32_t>(bits));
    case GgufValueType::FLOAT64: return std::bit_cast<double>(bits);
    case GgufValueType::INT8:
    case GgufValueType::INT16:
    case GgufValueType::INT32:
    case GgufValueType::INT64: return static_cast<double>(element_i64(i));
    default: return static_cast<double>(bits);
  }
}

GgufValue GgufValue::make_uint(GgufValueType type, uint64_t v) {
  GgufValue g;
  g.type = type;
  const size_t n = gguf_scalar_size(type);
  g.u64 = n >= 8 ? v : (v & ((uint64_t{1} << (8 * n)) - 1));
  return g;
}

GgufValue GgufValue::make_int(GgufValueType type, int64_t v) {
  GgufValue g;
  g.type = type;
  switch (type) {
    case GgufValueType::INT8: g.i64 = static_cast<int8_t>(v); break;
    case GgufValueType::INT16: g.i64 = static_cast<int16_t>(v); break;
    case GgufValueType::INT32: g.i64 = static_cast<int32_t>(v); break;
    default: g.i64 = v; break;
  }
  return g;
}

GgufValue GgufValue::make_float32(float v) {
  GgufValue g;
  g.type = GgufValueType::FLOAT32;
  g.f64 = v;
  return g;
}

GgufValue GgufValue::make_float64(double v) {
  GgufValue g;
  g.type = GgufValueType::FLOAT64;
  g.f64 = v;
  return g;
}

GgufValue GgufValue::make_bool(bool v) {
  GgufValue g;
  g.type = GgufValueType::BOOL;
  g.u64 = v ? 1 : 0;
  return g;
}

GgufValue GgufValue::make_string(std::string v) {
  GgufValue g;
  g.type = GgufValueType::STRING;
  g.str = std::move(v);
  return g;
}

GgufValue GgufValue::make_int_array(GgufValueType elem_type, std::span<const int64_t> values) {
  GgufValue g;
  g.type = GgufValueType::ARRAY;
  g.elem_type = elem_type;
  g.count = values.size();
  const size_t n = gguf_scalar_size(elem_type);
  g.raw.reserve(values.size() * n);
  for (int64_t v : values) store_le(g.raw, static_cast<uint64_t>(v), n);
  return g;
}

GgufValue GgufValue::make_float32_array(std::span<const float> values) {
  GgufValue g;
  g.type = GgufValueType::ARRAY;
  g.elem_type = GgufValueType::FLOAT32;
  g.count = values.size();
  g.raw.reserve(values.size() * 4);
  for (float v : values) store_le(g.raw, std::bit_cast<uint32_t>(v), 4);
  return g;
}

GgufValue GgufValue::make_float64_array(std::span<const double> values) {
  GgufValue g;
  g.type = GgufValueType::ARRAY;
  g.elem_type = GgufValueType::FLOAT64;
  g.count = values.size();
  g.raw.reserve(values.size() * 8);
  for (double v : values) store_le(g.raw, std::bit_cast<uint64_t>(v), 8);
  return g;
}

GgufValue GgufValue::make_string_array(std::vector<std::string> values) {
  GgufValue g;
  g.type = GgufValueType::ARRAY;
  g.elem_type = GgufValueType::STRING;
  g.count = values.size();
  g.strings = std::move(values);
  return g;
}

GgufValue GgufValue::make_array_array(std::vector<GgufValue> items) {
  GgufValue g;
  g.type = GgufValueType::ARRAY;
  g.elem_type = GgufValueType::ARRAY;
  g.count = items.size();
  g.items = std::move(items);
  return g;
}

}  // namespace lutq::io
