#include "io/gguf_writer.h"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lutq::io {
namespace {

void put(std::vector<uint8_t>& out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put(out, s.size(), 8);
  out.insert(out.end(), s.begin(), s.end());
}

void pad_to(std::vector<uint8_t>& out, uint64_t alignment) {
  while (out.size() % alignment != 0) out.push_back(0);
}

Status check_value(const GgufValue& v, int depth) {
  if (!gguf_value_type_known(static_cast<uint32_t>(v.type))) return Status::invalid("unknown value type");
  if (!v.is_array()) return Status::ok();
  if (depth > 8) return Status::invalid("arrays nested too deep");
  const size_t scalar = gguf_scalar_size(v.elem_type);
  if (!gguf_value_type_known(static_cast<uint32_t>(v.elem_type))) return Status::invalid("unknown element type");
  if (scalar != 0 && v.raw.size() != v.count * scalar) {
    return Status::invalid("array of " + std::to_string(v.count) + " " + gguf_value_type_name(v.elem_type) + " holds " +
                           std::to_string(v.raw.size()) + " bytes");
  }
  if (v.elem_type == GgufValueType::STRING && v.strings.size() != v.count) {
    return Status::invalid("string array count does not match its elements");
  }
  if (v.elem_type == GgufValueType::ARRAY) {
    if (v.items.size() != v.count) return Status::invalid("nested array count does not match its items");
    for (const GgufValue& item : v.items) {
      if (!item.is_array()) return Status::invalid("an element of an array of arrays is not an array");
      if (Status s = check_value(item, depth + 1); !s) return s;
    }
  }
  return Status::ok();
}

void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::STRING: put_string(out, v.str); return;
    case GgufValueType::ARRAY:
      put(out, static_cast<uint32_t>(v.elem_type), 4);
      put(out, v.count, 8);
      if (v.elem_type == GgufValueType::STRING) {
        for (const std::string& s : v.strings) put_string(out, s);
      } else if (v.elem_type == GgufValueType::ARRAY) {
        for (const GgufValue& item : v.items) put_value(out, item);
      } else {
        out.insert(out.end(), v.raw.begin(), v.raw.end());
      }
      return;
    case GgufValueType::FLOAT32: put(out, std::bit_cast<uint32_t>(static_cast<float>(v.f64)), 4); return;
    case GgufValueType::FLOAT64: put(out, std::bit_cast<uint64_t>(v.f64), 8); return;
    case GgufValueType::INT8:
    case GgufValueType::INT16:
    case GgufValueType::INT32:
    case GgufValueType::INT64: put(out, static_cast<uint64_t>(v.i64), gguf_scalar_size(v.type)); return;
    default: put(out, v.u64, gguf_scalar_size(v.type)); return;
  }
}

}  // namespace

bool GgufWriter::replace(const std::string& key, GgufValue value) {
  if (key == "general.alignment" || !check_value(value, 1)) return false;
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return true;
    }
  }
  return false;
}

const GgufValue* GgufWriter::find(const std::string& key) const {
  for (const auto& kv : kv_) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

Status GgufWriter::add(std::string key, GgufValue value) {
  for (const auto& kv : kv_) {
    if (kv.first == key) return Status::invalid("GGUF writer: duplicate metadata key '" + key + "'");
  }
  if (Status s = check_value(value, 1); !s) return Status::invalid("GGUF writer: key '" + key + "': " + s.message());
  if (key == "general.alignment") {
    if (value.type != GgufValueType::UINT32 || value.u64 == 0 || !std::has_single_bit(value.u64)) {
      return Status::invalid("GGUF writer: general.alignment must be a uint32 power of two");
    }
    if (!tensors_.empty()) return Status::invalid("GGUF writer: set general.alignment before adding tensors");
    alignment_ = static_cast<uint32_t>(value.u64);
  }
  kv_.emplace_back(std::move(key), std::move(value));
  return Status::ok();
}

Status GgufWriter::add_tensor(std::string name, std::vector<int64_t> dims, GgmlType type,
                              std::span<const uint8_t> data) {
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) return Status::invalid("GGUF writer: duplicate tensor name '" + name + "'");
  }
  Result<uint64_t> bytes = ggml_tensor_bytes(type, dims);
  if (!bytes) return Status::invalid("GGUF writer: tensor '" + name + "' " + bytes.status().message());
  if (*bytes != data.size()) {
    return Status::invalid("GGUF writer: tensor '" + name + "' needs " + std::to_string(*bytes) + " bytes, got " +
                           std::to_string(data.size()));
  }
  tensors_.push_back({std::move(name), std::move(dims), type, std::vector<uint8_t>(data.begin(), data.end())});
  return Status::ok();
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  put(out, 0x46554747u, 4);  // "GGUF"
  put(out, version_, 4);
  put(out, tensors_.size(), 8);
  put(out, kv_.size(), 8);
  for (const auto& [key, value] : kv_) {
    put_string(out, key);
    put(out, static_cast<uint32_t>(value.type), 4);
    put_value(out, value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    put_string(out, t.name);
    put(out, t.dims.size(), 4);
    for (int64_t d : t.dims) put(out, static_cast<uint64_t>(d), 8);
    put(out, static_cast<uint32_t>(t.type), 4);
    put(out, offset, 8);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  if (tensors_.empty()) return out;  // no data section: no padding (as llama.cpp's vocab files)
  pad_to(out, alignment_);
  for (const PendingTensor& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    pad_to(out, alignment_);
  }
  return out;
}

Status GgufWriter::write_file(const std::string& path) const {
  // Written beside the target and renamed over it only when complete, so a failed write never
  // leaves a truncated file under `path` nor destroys what was there.
  const std::vector<uint8_t> bytes = to_bytes();
  const std::string tmp = path + ".partial";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return {StatusCode::kIoError, tmp + ": cannot open for writing: " + std::strerror(errno)};
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int write_err = written == bytes.size() ? 0 : errno;
  if (std::fclose(f) != 0 || write_err != 0) {
    const int err = write_err != 0 ? write_err : errno;
    std::remove(tmp.c_str());
    return {StatusCode::kIoError, path + ": write failed: " + std::strerror(err)};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return {StatusCode::kIoError, path + ": cannot rename " + tmp + " into place: " + std::strerror(err)};
  }
  return Status::ok();
}

}  // namespace lutq::io
