// Tests of the safetensors reader: well-formed images, dtype decoding, every truncation of a
// valid file, and hand-made corrupt headers (each must be a clean error naming the file).
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "support/safetensors_writer.h"

namespace lutq::io {
namespace {

using testing::encode_floats;
using testing::rounded_floats;
using testing::safetensors_image;
using testing::safetensors_raw;
using testing::StTensor;

std::vector<uint8_t> valid_image() {
  return safetensors_image({{"a", "F32", {2, 3}, encode_floats({1, 2, 3, 4, 5, 6}, "F32")},
                            {"b", "F16", {4}, encode_floats({0.5f, -1.0f, 65504.0f, 1e-7f}, "F16")},
                            {"c", "BF16", {1, 2}, encode_floats({3.140625f, -2.0f}, "BF16")},
                            {"ids", "I64", {2}, std::vector<uint8_t>(16, 1)}},
                           {{"format", "pt"}});
}

// The error message of parsing `bytes`, or "(ok)".
std::string parse_error(const std::vector<uint8_t>& bytes) {
  Result<SafetensorsFile> f = SafetensorsFile::from_memory(bytes, "bad.safetensors");
  if (f) return "(ok)";
  EXPECT_EQ(f.status().message().rfind("bad.safetensors: ", 0), 0u) << f.status().message();
  return f.status().message();
}

std::string header_error(const std::string& header, size_t data_bytes = 64) {
  return parse_error(safetensors_raw(header, std::vector<uint8_t>(data_bytes, 0)));
}

TEST(Safetensors, ParsesTensorsMetadataAndDtypes) {
  Result<SafetensorsFile> f = SafetensorsFile::from_memory(valid_image(), "mem.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // data order
  EXPECT_EQ(f->tensors()[3].name, "ids");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensor* a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->num_elements(), 6);
  EXPECT_EQ(f->data(*a).size(), 24u);
  Result<std::vector<float>> av = f->to_f32(*a);
  ASSERT_TRUE(av.is_ok());
  EXPECT_EQ(*av, (std::vector<float>{1, 2, 3, 4, 5, 6}));

  const std::vector<float> b_in = {0.5f, -1.0f, 65504.0f, 1e-7f};
  Result<std::vector<float>> bv = f->to_f32(*f->find("b"));
  ASSERT_TRUE(bv.is_ok());
  EXPECT_EQ(*bv, rounded_floats(b_in, "F16"));
  EXPECT_GT((*bv)[3], 0.0f);  // a subnormal f16
  Result<std::vector<float>> cv = f->to_f32(*f->find("c"));
  ASSERT_TRUE(cv.is_ok());
  EXPECT_EQ(*cv, (std::vector<float>{3.140625f, -2.0f}));

  Result<std::vector<float>> iv = f->to_f32(*f->find("ids"));
  ASSERT_FALSE(iv.is_ok());
  EXPECT_EQ(iv.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(iv.status().message().find("tensor 'ids' has unsupported dtype I64"), std::string::npos)
      << iv.status().message();
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(Safetensors, Bf16RoundsToNearestEvenAndDecodesExactly) {
  std::vector<float> v;
  for (int i = 0; i < 200; ++i) v.push_back(std::ldexp(1.0f + static_cast<float>(i) / 173.0f, i % 40 - 20) * (i % 3 ? 1.0f : -1.0f));
  const auto img = safetensors_image({{"w", "BF16", {200}, encode_floats(v, "BF16")}});
  Result<SafetensorsFile> f = SafetensorsFile::from_memory(img, "bf16.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  Result<std::vector<float>> got = f->to_f32(f->tensors()[0]);
  ASSERT_TRUE(got.is_ok());
  const std::vector<float> want = rounded_floats(v, "BF16");
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ((*got)[i], want[i]) << "element " << i << " of " << v[i];
    ASSERT_LE(std::abs((*got)[i] - v[i]), std::abs(v[i]) * (1.0f / 256.0f)) << "element " << i;
  }
}

TEST(Safetensors, EmptyHeaderScalarsAndZeroSizedTensorsAreValid) {
  EXPECT_EQ(parse_error(safetensors_raw("{}")), "(ok)");
  EXPECT_EQ(parse_error(safetensors_raw("{}      ")), "(ok)");
  const auto img = safetensors_image({{"scalar", "F32", {}, encode_floats({7.0f}, "F32")},
                                      {"empty", "F16", {0, 5}, {}}});
  Result<SafetensorsFile> f = SafetensorsFile::from_memory(img, "mem");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->find("scalar")->num_elements(), 1);
  EXPECT_EQ(f->find("empty")->num_elements(), 0);
  EXPECT_EQ(f->to_f32(*f->find("scalar"))->at(0), 7.0f);
}

TEST(Safetensors, EveryTruncationIsACleanError) {
  const std::vector<uint8_t> full = valid_image();
  for (size_t n = 0; n < full.size(); ++n) {
    const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string msg = parse_error(cut);
    ASSERT_NE(msg, "(ok)") << "prefix of " << n << " of " << full.size() << " bytes parsed";
  }
}

TEST(Safetensors, CorruptHeadersAreCleanErrors) {
  // Header length.
  EXPECT_NE(parse_error({1, 2, 3}).find("too short"), std::string::npos);
  std::vector<uint8_t> huge(16, 0);
  huge[6] = 0x10;  // 2^52
  EXPECT_NE(parse_error(huge).find("exceeds the limit"), std::string::npos) << parse_error(huge);
  std::vector<uint8_t> past = safetensors_raw("{}");
  past[0] = 40;
  EXPECT_NE(parse_error(past).find("does not fit the file"), std::string::npos) << parse_error(past);

  // JSON syntax and types.
  EXPECT_NE(header_error("{\"a\": ").find("bad JSON"), std::string::npos) << header_error("{\"a\": ");
  EXPECT_NE(header_error("[1, 2]").find("does not start with '{'"), std::string::npos);
  EXPECT_NE(header_error("{\"a\": 1}").find("tensor 'a': entry is not an object"), std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}})").find("'dtype'"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})").find("shape [-1]"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})").find("non-negative"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 4]}})").find("'shape'"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})").find("data_offsets"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"__metadata__": {"k": 1}})").find("__metadata__ value of 'k'"), std::string::npos);
  EXPECT_NE(header_error(R"({"__metadata__": [1]})").find("__metadata__"), std::string::npos);
  EXPECT_NE(header_error(std::string(20, '[')).find("does not start with"), std::string::npos);
  EXPECT_NE(header_error("{\"a\":" + std::string(20, '[')).find("nested deeper"), std::string::npos)
      << header_error("{\"a\":" + std::string(20, '['));

  // Duplicates, at the top and inside an entry.
  const std::string dup =
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})";
  EXPECT_NE(header_error(dup).find("duplicate key 'a'"), std::string::npos) << header_error(dup);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 4]}})")
                .find("duplicate key 'dtype'"),
            std::string::npos);

  // Offsets and sizes.
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})").find("end before begin"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [60, 68]}})", 64)
                .find("run past the data buffer of 64 bytes"),
            std::string::npos);
  EXPECT_NE(header_error(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})")
                .find("span 8 bytes but shape [3] of F32 needs 12 bytes"),
            std::string::npos)
      << header_error(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})");
  const std::string overflow =
      R"({"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})";
  EXPECT_NE(header_error(overflow).find("too many elements"), std::string::npos) << header_error(overflow);
  const std::string overflow2 = R"({"a": {"dtype": "F64", "shape": [3037000499, 3037000499], "data_offsets": [0, 8]}})";
  EXPECT_NE(header_error(overflow2).find("needs more than 2^64"), std::string::npos) << header_error(overflow2);
  const std::string overlap =
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_NE(header_error(overlap).find("'a' and 'b' overlap"), std::string::npos) << header_error(overlap);
  const std::string u64_offset = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]}})";
  EXPECT_NE(header_error(u64_offset).find("run past"), std::string::npos) << header_error(u64_offset);

  // Dtypes.
  const std::string q = R"({"a": {"dtype": "Q4_0", "shape": [2], "data_offsets": [0, 2]}})";
  EXPECT_NE(header_error(q).find("tensor 'a' has unsupported dtype 'Q4_0'"), std::string::npos) << header_error(q);
}

TEST(Safetensors, OpenReadsFilesAndNamesMissingOnes) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "lutq_safetensors_test";
  std::filesystem::create_directories(dir);
  testing::write_bytes(dir / "x.safetensors", valid_image());
  Result<SafetensorsFile> f = SafetensorsFile::open((dir / "x.safetensors").string());
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->file_size(), valid_image().size());
  Result<SafetensorsFile> missing = SafetensorsFile::open((dir / "nope.safetensors").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope.safetensors"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lutq::io
