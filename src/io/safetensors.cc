// SafetensorsFile: header parsing and validation, tensor lookup and fp32 conversion.
#include "io/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/fp16.h"

namespace lutq::io {
namespace {

// std::map-backed objects: ordered_json finds keys by linear search, quadratic on hostile headers.
// Tensors are put in data order afterwards instead.
using Json = nlohmann::json;

struct DtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  int size;
};

constexpr std::array<DtypeInfo, 15> kDtypes = {{
    {SafetensorsDtype::kBool, "BOOL", 1},   {SafetensorsDtype::kU8, "U8", 1},
    {SafetensorsDtype::kI8, "I8", 1},       {SafetensorsDtype::kF8E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::kF8E5M2, "F8_E5M2", 1}, {SafetensorsDtype::kI16, "I16", 2},
    {SafetensorsDtype::kU16, "U16", 2},     {SafetensorsDtype::kF16, "F16", 2},
    {SafetensorsDtype::kBF16, "BF16", 2},   {SafetensorsDtype::kI32, "I32", 4},
    {SafetensorsDtype::kU32, "U32", 4},     {SafetensorsDtype::kF32, "F32", 4},
    {SafetensorsDtype::kI64, "I64", 8},     {SafetensorsDtype::kU64, "U64", 8},
    {SafetensorsDtype::kF64, "F64", 8},
}};

// JSON nesting deeper than any valid header needs (object > tensor object > array); deeper input
// is refused while parsing so that hostile headers cannot build huge nested values.
constexpr int kMaxJsonDepth = 8;

// Thrown from the parser callback to stop parsing; caught in parse().
struct HeaderRejected : std::exception {
  explicit HeaderRejected(std::string m) : message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string message;
};

Status corrupt(const std::string& path, const std::string& msg) {
  return {StatusCode::kCorrupt, path + ": " + msg};
}

// Reads a non-negative JSON integer that fits int64 (uint64 for offsets).
bool as_u64(const Json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) return false;
  out = j.get<uint64_t>();
  return true;
}

// Parses `text` into `out`, rejecting duplicate keys in any object and nesting beyond
// kMaxJsonDepth. Returns an empty string on success, else the problem.
std::string parse_json_strict(std::string_view text, Json& out) {
  std::vector<std::set<std::string>> seen;  // keys of each open object
  const Json::parser_callback_t cb = [&seen](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) throw HeaderRejected("JSON nested deeper than " + std::to_string(kMaxJsonDepth));
    switch (event) {
      case Json::parse_event_t::object_start: seen.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!seen.empty()) seen.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!seen.empty() && parsed.is_string() && !seen.back().insert(parsed.get<std::string>()).second) {
          throw HeaderRejected("duplicate key '" + parsed.get<std::string>() + "'");
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    out = Json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
  } catch (const HeaderRejected& e) {
    return e.message;
  } catch (const std::exception& e) {
    return std::string("bad JSON: ") + e.what();
  }
  return {};
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.name.data();  // the literals are NUL-terminated
  }
  return "unknown";
}

int safetensors_dtype_size(SafetensorsDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 1;
}

std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

std::optional<GgmlType> safetensors_dtype_to_ggml(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::kF32: return GgmlType::F32;
    case SafetensorsDtype::kF16: return GgmlType::F16;
    case SafetensorsDtype::kBF16: return GgmlType::BF16;
    case SafetensorsDtype::kI8: return GgmlType::I8;
    case SafetensorsDtype::kI16: return GgmlType::I16;
    case SafetensorsDtype::kI32: return GgmlType::I32;
    case SafetensorsDtype::kI64: return GgmlType::I64;
    case SafetensorsDtype::kF64: return GgmlType::F64;
    default: return std::nullopt;
  }
}

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<int64_t>::max() / d)) return 0;  // not from a validated file
    n *= d;
  }
  return n;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  Result<MappedFile> m = MappedFile::open(path);
  if (!m) return m.status();
  SafetensorsFile f;
  f.path_ = path;
  f.mapped_ = std::move(*m);
  return parse(std::move(f));
}

Result<SafetensorsFile> SafetensorsFile::from_memory(std::vector<uint8_t> bytes, std::string name) {
  SafetensorsFile f;
  f.path_ = std::move(name);
  f.buffer_ = std::move(bytes);
  return parse(std::move(f));
}

Result<SafetensorsFile> SafetensorsFile::parse(SafetensorsFile f) {
  const std::span<const uint8_t> all = f.bytes();
  const std::string& path = f.path_;
  if (all.size() < 8) {
    return corrupt(path, "file of " + std::to_string(all.size()) +
                             " bytes is too short for a safetensors header (8-byte length + JSON)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | all[static_cast<size_t>(i)];
  if (n > kMaxHeaderBytes) {
    return corrupt(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                             std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
  }
  if (n < 2 || n > all.size() - 8) {
    return corrupt(path, "header length " + std::to_string(n) + " does not fit the file of " +
                             std::to_string(all.size()) + " bytes");
  }
  f.data_offset_ = 8 + n;
  const std::string_view text(reinterpret_cast<const char*>(all.data() + 8), static_cast<size_t>(n));
  if (text.front() != '{') return corrupt(path, "header does not start with '{' (not a safetensors file?)");

  Json header;
  if (std::string problem = parse_json_strict(text, header); !problem.empty()) {
    return corrupt(path, "header: " + problem);
  }
  if (!header.is_object()) return corrupt(path, "header is not a JSON object");

  const uint64_t data_size = all.size() - f.data_offset_;
  for (const auto& [name, entry] : header.items()) {
    const std::string what = "tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!entry.is_object()) return corrupt(path, "__metadata__ is not an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return corrupt(path, "__metadata__ value of '" + k + "' is not a string");
        f.metadata_.emplace(k, v.get<std::string>());
      }
      continue;
    }
    if (!entry.is_object()) return corrupt(path, what + ": entry is not an object");
    SafetensorsTensor t;
    t.name = name;

    const auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) return corrupt(path, what + ": missing string field 'dtype'");
    const std::optional<SafetensorsDtype> dtype = safetensors_dtype_from_name(dt->get<std::string>());
    if (!dtype) {
      return Status::unsupported(path + ": " + what + " has unsupported dtype '" + dt->get<std::string>() +
                                 "' (not a safetensors dtype)");
    }
    t.dtype = *dtype;

    const auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array()) return corrupt(path, what + ": missing array field 'shape'");
    uint64_t elements = 1;
    bool overflow = false;
    for (const Json& d : *sh) {
      uint64_t v = 0;
      if (!as_u64(d, v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return corrupt(path, what + ": shape " + sh->dump() + " holds a value that is not a non-negative integer");
      }
      t.shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && elements > std::numeric_limits<uint64_t>::max() / v) overflow = true;
      elements *= v;
    }
    if (overflow || elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      // A zero dim makes the product 0 whatever else overflowed.
      if (std::find(t.shape.begin(), t.shape.end(), 0) == t.shape.end()) {
        return corrupt(path, what + ": shape " + sh->dump() + " has too many elements");
      }
      elements = 0;
    }

    const auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], t.begin) ||
        !as_u64((*off)[1], t.end)) {
      return corrupt(path, what + ": 'data_offsets' must be an array of two non-negative integers");
    }
    if (t.end < t.begin) {
      return corrupt(path, what + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                               "] end before begin");
    }
    if (t.end > data_size) {
      return corrupt(path, what + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                               "] run past the data buffer of " + std::to_string(data_size) + " bytes");
    }
    const auto esize = static_cast<uint64_t>(safetensors_dtype_size(t.dtype));
    if (elements > std::numeric_limits<uint64_t>::max() / esize || elements * esize != t.size_bytes()) {
      return corrupt(path, what + ": data_offsets span " + std::to_string(t.size_bytes()) + " bytes but shape " +
                               sh->dump() + " of " + safetensors_dtype_name(t.dtype) + " needs " +
                               (elements > std::numeric_limits<uint64_t>::max() / esize
                                    ? std::string("more than 2^64")
                                    : std::to_string(elements * esize)) +
                               " bytes");
    }
    f.tensors_.push_back(std::move(t));
  }
  std::stable_sort(f.tensors_.begin(), f.tensors_.end(),
                   [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);

  // No two tensors may share bytes (empty tensors take none).
  std::vector<const SafetensorsTensor*> by_begin;
  for (const SafetensorsTensor& t : f.tensors_) {
    if (t.size_bytes() > 0) by_begin.push_back(&t);
  }
  std::sort(by_begin.begin(), by_begin.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    if (by_begin[i]->begin < by_begin[i - 1]->end) {
      return corrupt(path, "tensors '" + by_begin[i - 1]->name + "' and '" + by_begin[i]->name +
                               "' overlap in the data buffer");
    }
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsFile::data(const SafetensorsTensor& t) const {
  const std::span<const uint8_t> all = bytes();
  if (data_offset_ > all.size() || t.end < t.begin || t.end > all.size() - data_offset_) return {};
  return all.subspan(static_cast<size_t>(data_offset_ + t.begin), static_cast<size_t>(t.size_bytes()));
}

Result<std::vector<float>> SafetensorsFile::to_f32(const SafetensorsTensor& t) const {
  const std::string what = path_ + ": tensor '" + t.name + "'";
  if (t.dtype != SafetensorsDtype::kF32 && t.dtype != SafetensorsDtype::kF16 && t.dtype != SafetensorsDtype::kBF16) {
    return Status::unsupported(what + " has unsupported dtype " + safetensors_dtype_name(t.dtype) +
                               " (supported: F32, F16, BF16)");
  }
  const std::span<const uint8_t> src = data(t);
  const auto n = static_cast<uint64_t>(t.num_elements());
  if (src.size() != t.size_bytes() || n * static_cast<uint64_t>(safetensors_dtype_size(t.dtype)) != src.size()) {
    return Status::invalid(what + " does not describe data inside this file");
  }
  std::vector<float> out(static_cast<size_t>(n));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == SafetensorsDtype::kF32) {
      uint32_t bits = 0;
      for (int b = 3; b >= 0; --b) bits = (bits << 8) | src[4 * i + static_cast<size_t>(b)];
      out[i] = std::bit_cast<float>(bits);
    } else {
      const auto h = static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8));
      out[i] = t.dtype == SafetensorsDtype::kF16 ? fp16_to_fp32(h) : std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
    }
  }
  return out;
}

}  // namespace lutq::io
