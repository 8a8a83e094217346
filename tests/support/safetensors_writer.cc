// Safetensors images for tests (see safetensors_writer.h).
#include "support/safetensors_writer.h"

#include <bit>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/fp16.h"

namespace lutq::testing {
namespace {

uint16_t to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace

std::vector<uint8_t> safetensors_image(const std::vector<StTensor>& tensors,
                                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<uint8_t> data;
  for (const StTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';  // the padding writers use
  return safetensors_raw(text, data);
}

std::vector<uint8_t> safetensors_raw(std::string_view header, std::span<const uint8_t> data) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> encode_floats(const std::vector<float>& v, std::string_view dtype) {
  std::vector<uint8_t> out;
  for (float f : v) {
    if (dtype == "F32") {
      const uint32_t x = std::bit_cast<uint32_t>(f);
      for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(x >> (8 * i)));
    } else {
      const uint16_t h = dtype == "F16" ? fp32_to_fp16(f) : to_bf16(f);
      out.push_back(static_cast<uint8_t>(h));
      out.push_back(static_cast<uint8_t>(h >> 8));
    }
  }
  if (dtype != "F32" && dtype != "F16" && dtype != "BF16") throw std::invalid_argument("encode_floats: dtype");
  return out;
}

std::vector<float> rounded_floats(const std::vector<float>& v, std::string_view dtype) {
  std::vector<float> out;
  for (float f : v) {
    if (dtype == "F16") {
      out.push_back(fp16_to_fp32(fp32_to_fp16(f)));
    } else if (dtype == "BF16") {
      out.push_back(std::bit_cast<float>(static_cast<uint32_t>(to_bf16(f)) << 16));
    } else {
      out.push_back(f);
    }
  }
  return out;
}

void write_bytes(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_text(const std::filesystem::path& path, std::string_view text) {
  write_bytes(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace lutq::testing
