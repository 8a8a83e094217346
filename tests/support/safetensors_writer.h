// Test support: builds safetensors images in memory (well-formed from a tensor list, or with a
// hand-written header for corrupt-file tests) and encodes floats as F32/F16/BF16 bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lutq::testing {

struct StTensor {
  std::string name;
  std::string dtype;            // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;   // row-major
  std::vector<uint8_t> data;
};

// Tensors laid out back to back in list order; the header lists them in that order.
std::vector<uint8_t> safetensors_image(const std::vector<StTensor>& tensors,
                                       const std::map<std::string, std::string>& metadata = {});
// u64 length of `header`, the header as given, then `data`.
std::vector<uint8_t> safetensors_raw(std::string_view header, std::span<const uint8_t> data = {});

// Little-endian encodings; F16/BF16 round to nearest even.
std::vector<uint8_t> encode_floats(const std::vector<float>& v, std::string_view dtype);
// The values a reader must decode from encode_floats(v, dtype).
std::vector<float> rounded_floats(const std::vector<float>& v, std::string_view dtype);

void write_bytes(const std::filesystem::path& path, std::span<const uint8_t> bytes);
void write_text(const std::filesystem::path& path, std::string_view text);

}  // namespace lutq::testing
