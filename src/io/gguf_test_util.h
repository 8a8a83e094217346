// Test support for the GGUF tests (header only, not part of the library): a little-endian byte
// builder for hand-made (and deliberately malformed) GGUF images, and the lookup of the shared
// data folder.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/gguf_types.h"

namespace lutq::io::test_support {

class Bytes {
 public:
  Bytes& u8(uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  Bytes& u16(uint16_t v) { return le(v, 2); }
  Bytes& u32(uint32_t v) { return le(v, 4); }
  Bytes& u64(uint64_t v) { return le(v, 8); }
  Bytes& raw(std::string_view s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& zeros(size_t n) {
    b_.insert(b_.end(), n, 0);
    return *this;
  }
  Bytes& pad_to(size_t alignment) {
    while (b_.size() % alignment != 0) b_.push_back(0);
    return *this;
  }
  // "GGUF", version, tensor count, kv count.
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  Bytes& kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(GgufValueType::UINT32)).u32(v);
  }
  Bytes& kv_string(std::string_view key, std::string_view v) {
    return str(key).u32(static_cast<uint32_t>(GgufValueType::STRING)).str(v);
  }
  Bytes& tensor_info(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }

  size_t size() const { return b_.size(); }
  const std::vector<uint8_t>& bytes() const { return b_; }
  std::vector<uint8_t> take() { return std::move(b_); }

 private:
  Bytes& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<uint8_t> b_;
};

// The shared data folder: $LUTQ_SHARED_DIR, else ../shared or /work/shared, whichever holds
// data/tokenizer. nullopt when none does (tests then skip).
inline std::optional<std::filesystem::path> shared_dir() {
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("LUTQ_SHARED_DIR"); env != nullptr && *env != '\0') candidates.emplace_back(env);
  candidates.emplace_back("../shared");
  candidates.emplace_back("/work/shared");
  for (const auto& c : candidates) {
    std::error_code ec;
    if (std::filesystem::is_directory(c / "data" / "tokenizer", ec)) return c;
  }
  return std::nullopt;
}

}  // namespace lutq::io::test_support
