// GGUF reader: metadata round trips, tensor directory, files on disk, the shared vocabulary files
// and (when LUTQ_MODEL_GGUF points at one) a real model. Dequantization: gguf_dequant_test.cc;
// malformed inputs: gguf_corrupt_test.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "io/gguf_file.h"
#include "io/gguf_test_util.h"
#include "io/gguf_writer.h"

namespace lutq::io {
namespace {

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

std::vector<uint8_t> f32_bytes(std::initializer_list<float> values) {
  std::vector<uint8_t> out;
  for (float v : values) {
    const auto bits = std::bit_cast<uint32_t>(v);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(bits >> (8 * i)));
  }
  return out;
}

// A writer holding one metadata value of every type (scalars, arrays, a nested array).
GgufWriter all_types_writer(uint32_t version) {
  GgufWriter w(version);
  using T = GgufValueType;
  EXPECT_TRUE(w.add("u8", GgufValue::make_uint(T::UINT8, 200)).is_ok());
  EXPECT_TRUE(w.add("i8", GgufValue::make_int(T::INT8, -5)).is_ok());
  EXPECT_TRUE(w.add("u16", GgufValue::make_uint(T::UINT16, 60000)).is_ok());
  EXPECT_TRUE(w.add("i16", GgufValue::make_int(T::INT16, -30000)).is_ok());
  EXPECT_TRUE(w.add_uint32("u32", 4000000000u).is_ok());
  EXPECT_TRUE(w.add_int32("i32", -2000000000).is_ok());
  EXPECT_TRUE(w.add_float32("f32", 1.5f).is_ok());
  EXPECT_TRUE(w.add_bool("flag", true).is_ok());
  EXPECT_TRUE(w.add_string("name", "h\xc3\xa9llo").is_ok());
  EXPECT_TRUE(w.add("u64_max", GgufValue::make_uint(T::UINT64, std::numeric_limits<uint64_t>::max())).is_ok());
  EXPECT_TRUE(w.add("u64", GgufValue::make_uint(T::UINT64, uint64_t{1} << 40)).is_ok());
  EXPECT_TRUE(w.add("i64", GgufValue::make_int(T::INT64, std::numeric_limits<int64_t>::min())).is_ok());
  EXPECT_TRUE(w.add("f64", GgufValue::make_float64(3.141592653589793)).is_ok());
  EXPECT_TRUE(w.add_string("empty", "").is_ok());
  const std::vector<int64_t> ints = {-1, 0, 7, 2147483647};
  EXPECT_TRUE(w.add("arr.i32", GgufValue::make_int_array(T::INT32, ints)).is_ok());
  const std::vector<int64_t> bytes = {0, 255, 17};
  EXPECT_TRUE(w.add("arr.u8", GgufValue::make_int_array(T::UINT8, bytes)).is_ok());
  const std::vector<int64_t> bools = {1, 0, 1};
  EXPECT_TRUE(w.add("arr.bool", GgufValue::make_int_array(T::BOOL, bools)).is_ok());
  const std::vector<int64_t> big = {5, -1};  // -1 as uint64 is 2^64 - 1
  EXPECT_TRUE(w.add("arr.u64", GgufValue::make_int_array(T::UINT64, big)).is_ok());
  const std::vector<float> floats = {0.5f, -2.25f, 1e-7f};
  EXPECT_TRUE(w.add("arr.f32", GgufValue::make_float32_array(floats)).is_ok());
  const std::vector<double> doubles = {0.1, -1e300};
  EXPECT_TRUE(w.add("arr.f64", GgufValue::make_float64_array(doubles)).is_ok());
  EXPECT_TRUE(w.add("arr.str", GgufValue::make_string_array({"a", "", "\xe4\xbd\xa0\xe5\xa5\xbd"})).is_ok());
  EXPECT_TRUE(w.add("arr.empty", GgufValue::make_string_array({})).is_ok());
  const std::vector<int64_t> row0 = {1, 2};
  const std::vector<int64_t> row1 = {3};
  EXPECT_TRUE(w.add("arr.nested", GgufValue::make_array_array({GgufValue::make_int_array(T::INT16, row0),
                                                               GgufValue::make_int_array(T::INT16, row1)}))
                  .is_ok());
  return w;
}

void expect_all_types(const GgufFile& f) {
  EXPECT_EQ(f.get_int("u8").value(), 200);
  EXPECT_EQ(f.get_int("i8").value(), -5);
  EXPECT_EQ(f.get_int("u16").value(), 60000);
  EXPECT_EQ(f.get_int("i16").value(), -30000);
  EXPECT_EQ(f.get_int("u32").value(), 4000000000LL);
  EXPECT_EQ(f.get_int("i32").value(), -2000000000);
  EXPECT_EQ(f.get_float("f32").value(), 1.5);
  EXPECT_EQ(f.get_bool("flag").value(), true);
  EXPECT_EQ(f.get_string("name").value(), "h\xc3\xa9llo");
  EXPECT_EQ(f.find("u64_max")->u64, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_int("u64").value(), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("i64").value(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_float("f64").value(), 3.141592653589793);
  EXPECT_EQ(f.get_string("empty").value(), "");
  EXPECT_EQ(f.get_int_array("arr.i32").value(), (std::vector<int64_t>{-1, 0, 7, 2147483647}));
  EXPECT_EQ(f.get_int_array("arr.u8").value(), (std::vector<int64_t>{0, 255, 17}));
  EXPECT_EQ(f.find("arr.bool")->elem_type, GgufValueType::BOOL);
  EXPECT_EQ(f.find("arr.bool")->element_u64(0), 1u);
  EXPECT_EQ(f.find("arr.bool")->element_u64(1), 0u);
  EXPECT_EQ(f.find("arr.u64")->element_u64(1), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_float_array("arr.f32").value(), (std::vector<float>{0.5f, -2.25f, 1e-7f}));
  EXPECT_EQ(f.find("arr.f64")->element_f64(1), -1e300);
  EXPECT_EQ(f.get_string_array("arr.str").value(), (std::vector<std::string>{"a", "", "\xe4\xbd\xa0\xe5\xa5\xbd"}));
  EXPECT_TRUE(f.get_string_array("arr.empty").value().empty());
  const GgufValue* nested = f.find("arr.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type_description(), "array of array of int16");
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].count, 2u);
  EXPECT_EQ(nested->items[0].element_i64(1), 2);
  EXPECT_EQ(nested->items[1].element_i64(0), 3);
}

TEST(GgufMetadata, RoundTripsEveryValueTypeV3AndV2) {
  for (uint32_t version : {3u, 2u}) {
    Result<GgufFile> f = GgufFile::from_memory(all_types_writer(version).to_bytes(), "meta.gguf");
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->path(), "meta.gguf");
    EXPECT_TRUE(f->tensors().empty());
    expect_all_types(*f);
    const std::vector<std::string> keys = f->keys();
    ASSERT_EQ(keys.size(), 23u);
    EXPECT_EQ(keys.front(), "u8");  // file order
    EXPECT_EQ(keys.back(), "arr.nested");
    EXPECT_TRUE(f->has("flag"));
    EXPECT_FALSE(f->has("fla"));
    EXPECT_EQ(f->find("nope"), nullptr);
  }
}

TEST(GgufMetadata, GetterErrorsNameFileKeyAndTypes) {
  Result<GgufFile> f = GgufFile::from_memory(all_types_writer(3).to_bytes(), "model.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->get_string("x").status().message(), "model.gguf: metadata key 'x' not found");
  EXPECT_EQ(f->get_string("u32").status().message(), "model.gguf: metadata key 'u32' is uint32, expected string");
  EXPECT_EQ(f->get_int("name").status().message(), "model.gguf: metadata key 'name' is string, expected integer");
  EXPECT_TRUE(contains(f->get_int("flag").status().message(), "is bool, expected integer"));
  EXPECT_TRUE(contains(f->get_int("f32").status().message(), "is float32, expected integer"));
  EXPECT_TRUE(contains(f->get_int("u64_max").status().message(), "does not fit int64"));
  EXPECT_TRUE(contains(f->get_bool("u8").status().message(), "is uint8, expected bool"));
  EXPECT_TRUE(contains(f->get_float("name").status().message(), "is string, expected float"));
  EXPECT_EQ(f->get_float("i16").value(), -30000.0);  // integers read as floats
  EXPECT_TRUE(contains(f->get_string_array("arr.i32").status().message(),
                       "'arr.i32' is array of int32, expected array of string"));
  EXPECT_TRUE(
      contains(f->get_int_array("arr.str").status().message(), "is array of string, expected array of integer"));
  EXPECT_TRUE(contains(f->get_int_array("arr.u64").status().message(), "element 1 value 18446744073709551615"));
  EXPECT_TRUE(contains(f->get_int_array("u32").status().message(), "is uint32, expected array of integer"));
  EXPECT_TRUE(contains(f->get_float_array("arr.str").status().message(), "expected array of float"));
  EXPECT_EQ(f->get_float_array("arr.i32").value()[0], -1.0f);  // integer arrays read as floats
  EXPECT_TRUE(contains(f->get_string("arr.nested").status().message(), "is array of array of int16"));
}

TEST(GgufWriterTest, RejectsBadInput) {
  EXPECT_EQ(GgufWriter().to_bytes().size(), 24u);  // header only: no padding without tensors
  GgufWriter w;
  ASSERT_TRUE(w.add_uint32("a", 1).is_ok());
  EXPECT_TRUE(contains(w.add_uint32("a", 2).message(), "duplicate metadata key 'a'"));
  EXPECT_FALSE(w.add_uint32("general.alignment", 48).is_ok());
  EXPECT_FALSE(w.add_int32("general.alignment", 64).is_ok());  // must be uint32
  GgufValue bad = GgufValue::make_int_array(GgufValueType::INT32, std::vector<int64_t>{1, 2});
  bad.count = 3;
  EXPECT_FALSE(w.add("bad", bad).is_ok());
  const std::vector<uint8_t> eight_floats(32);
  EXPECT_TRUE(w.add_tensor("t", {8}, GgmlType::F32, eight_floats).is_ok());
  EXPECT_TRUE(contains(w.add_tensor("t", {8}, GgmlType::F32, eight_floats).message(), "duplicate tensor name"));
  EXPECT_TRUE(contains(w.add_tensor("u", {4}, GgmlType::F32, eight_floats).message(), "needs 16 bytes, got 32"));
  EXPECT_TRUE(contains(w.add_tensor("v", {16}, GgmlType::Q4_0, eight_floats).message(), "not a multiple"));
}

TEST(GgufTensors, DirectoryOffsetsAlignmentAndBytes) {
  for (uint32_t alignment : {32u, 64u, 1u}) {
    GgufWriter w;
    ASSERT_TRUE(w.add_uint32("general.alignment", alignment).is_ok());
    ASSERT_TRUE(w.add_string("general.architecture", "test").is_ok());
    const std::vector<uint8_t> a = f32_bytes({1, 2, 3, 4, 5, 6});
    ASSERT_TRUE(w.add_tensor("a", {3, 2}, GgmlType::F32, a).is_ok());
    std::vector<uint8_t> q(2 * 18, 0);  // two q4_0 blocks: d = 1.0, all nibbles 8 -> zeros
    q[0] = 0x00;
    q[1] = 0x3c;
    std::fill(q.begin() + 2, q.begin() + 18, uint8_t{0x88});
    ASSERT_TRUE(w.add_tensor("blk.0.w", {32, 1, 2}, GgmlType::Q4_0, q).is_ok());
    const std::vector<uint8_t> h = {0x00, 0x3c, 0x00, 0xc0};  // f16 1.0, -2.0
    ASSERT_TRUE(w.add_tensor("h", {2}, GgmlType::F16, h).is_ok());

    Result<GgufFile> f = GgufFile::from_memory(w.to_bytes(), "t.gguf");
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    ASSERT_EQ(f->tensors().size(), 3u);
    const TensorInfo* t = f->find_tensor("blk.0.w");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims, (std::vector<int64_t>{32, 1, 2}));
    EXPECT_EQ(t->type, GgmlType::Q4_0);
    EXPECT_EQ(t->num_elements(), 64);
    EXPECT_EQ(t->num_rows(), 2);
    EXPECT_EQ(t->size_bytes, 36u);
    EXPECT_EQ(t->offset % alignment, 0u);
    EXPECT_EQ(f->tensor_bytes(*t).size(), 36u);
    EXPECT_EQ(f->tensor_bytes(*t)[2], 0x88);
    EXPECT_EQ(f->find_tensor("nope"), nullptr);
    EXPECT_EQ(f->tensors()[0].name, "a");  // file order
    EXPECT_EQ(f->dequantize(f->tensors()[0]).value(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(f->dequantize(*t).value(), std::vector<float>(64, 0.0f));
    EXPECT_EQ(f->dequantize(*f->find_tensor("h")).value(), (std::vector<float>{1.0f, -2.0f}));

    // An info that does not describe this file is refused, not read out of bounds.
    TensorInfo forged = *t;
    forged.offset = uint64_t{1} << 62;
    EXPECT_TRUE(f->tensor_bytes(forged).empty());
    EXPECT_FALSE(f->dequantize(forged).is_ok());
    forged = *t;
    forged.size_bytes = 1000;
    EXPECT_TRUE(contains(f->dequantize(forged).status().message(), "does not match its dims and type"));
  }
}

// A part (rows x columns) dequantized row by row equals the same part cut from the whole, for a
// block type whose blocks a column cut splits (q8_0, 32 per block; columns 20..50 cross two) and
// for f32; bad ranges and non-2-D tensors are refused.
TEST(GgufTensors, PartEqualsTheCutWhole) {
  GgufWriter w;
  std::mt19937 rng(5);
  std::vector<uint8_t> q(5 * 2 * 34);  // 5 rows of 64: two q8_0 blocks (fp16 d, 32 int8) each
  for (size_t b = 0; b < q.size(); b += 34) {
    q[b] = 0x00;
    q[b + 1] = 0x2c;  // d = 2^-4
    for (size_t i = 2; i < 34; ++i) q[b + i] = static_cast<uint8_t>(rng());
  }
  ASSERT_TRUE(w.add_tensor("q", {64, 5}, GgmlType::Q8_0, q).is_ok());
  ASSERT_TRUE(w.add_tensor("f", {3, 2}, GgmlType::F32, f32_bytes({1, 2, 3, 4, 5, 6})).is_ok());
  ASSERT_TRUE(w.add_tensor("v", {32}, GgmlType::Q8_0, std::span<const uint8_t>(q.data(), 34)).is_ok());
  Result<GgufFile> f = GgufFile::from_memory(w.to_bytes(), "p.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  const TensorInfo& t = *f->find_tensor("q");
  const std::vector<float> whole = f->dequantize(t).value();
  const std::vector<float> part = f->dequantize_part(t, 1, 4, 20, 50).value();
  ASSERT_EQ(part.size(), 3u * 30u);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 30; ++c) EXPECT_EQ(part[r * 30 + c], whole[(r + 1) * 64 + 20 + c]) << r << "," << c;
  }
  const std::vector<float> rows = f->dequantize_part(t, 2, 5, 0, 64).value();
  EXPECT_EQ(rows, std::vector<float>(whole.begin() + 128, whole.end()));
  EXPECT_EQ(f->dequantize_part(*f->find_tensor("f"), 1, 2, 1, 3).value(), (std::vector<float>{5, 6}));
  EXPECT_TRUE(contains(f->dequantize_part(t, 0, 6, 0, 64).status().message(), "is not a part of its 5 x 64"));
  EXPECT_TRUE(contains(f->dequantize_part(t, 2, 2, 0, 64).status().message(), "is not a part"));
  EXPECT_TRUE(contains(f->dequantize_part(t, 0, 1, -1, 3).status().message(), "is not a part"));
  EXPECT_TRUE(contains(f->dequantize_part(*f->find_tensor("v"), 0, 1, 0, 3).status().message(), "2 dimensions"));
}

TEST(GgufTensors, UnsupportedDequantizationNamesTheType) {
  GgufWriter w;
  const std::vector<uint8_t> block(66, 0);
  ASSERT_TRUE(w.add_tensor("iq", {256}, GgmlType::IQ2_XXS, block).is_ok());
  Result<GgufFile> f = GgufFile::from_memory(w.to_bytes(), "m.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().message();  // the directory still parses
  const Result<std::vector<float>> d = f->dequantize(f->tensors()[0]);
  EXPECT_EQ(d.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(contains(d.status().message(), "m.gguf: tensor 'iq'"));
  EXPECT_TRUE(contains(d.status().message(), "iq2_xxs is not supported"));
}

TEST(GgufFileOnDisk, OpensMapsAndMoves) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / ("lutq_gguf_test_" + std::to_string(::getpid()) + ".gguf")).string();
  GgufWriter w;
  ASSERT_TRUE(w.add_string("general.architecture", "llama").is_ok());
  ASSERT_TRUE(w.add_tensor("x", {4}, GgmlType::F32, f32_bytes({1.0f, -1.0f, 0.5f, 8.0f})).is_ok());
  ASSERT_TRUE(w.write_file(path).is_ok());
  {
    Result<GgufFile> f = GgufFile::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->path(), path);
    GgufFile moved = std::move(f).value();  // the mapping moves with the object
    EXPECT_EQ(moved.get_string("general.architecture").value(), "llama");
    EXPECT_EQ(moved.dequantize(moved.tensors()[0]).value(), (std::vector<float>{1.0f, -1.0f, 0.5f, 8.0f}));
    GgufFile other = GgufFile::from_memory(GgufWriter().to_bytes(), "empty.gguf").value();
    other = std::move(moved);
    EXPECT_EQ(other.tensors().size(), 1u);
    EXPECT_EQ(other.tensor_bytes(other.tensors()[0]).size(), 16u);
  }
  std::filesystem::remove(path);

  const Result<GgufFile> missing = GgufFile::open(path);
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(contains(missing.status().message(), path + ": cannot open"));
  std::FILE* empty = std::fopen(path.c_str(), "wb");
  ASSERT_NE(empty, nullptr);
  std::fclose(empty);
  EXPECT_TRUE(contains(GgufFile::open(path).status().message(), "file is empty"));
  std::filesystem::remove(path);
  EXPECT_TRUE(contains(GgufFile::open(dir.string()).status().message(), "not a regular file"));
}

struct VocabCase {
  const char* file;
  size_t tokens;
  size_t merges;  // 0: none
  int64_t bos;
  const char* first_token;
};

TEST(GgufSharedVocab, OpensTheReferenceVocabularies) {
  const std::optional<std::filesystem::path> shared = test_support::shared_dir();
  if (!shared) GTEST_SKIP() << "shared data folder not found (set LUTQ_SHARED_DIR)";
  const VocabCase cases[] = {
      {"ggml-vocab-gpt-2.gguf", 50257, 50000, 50256, "!"},
      {"ggml-vocab-llama-bpe.gguf", 128256, 280147, 128000, "!"},
      {"ggml-vocab-llama-spm.gguf", 32000, 0, 1, "<unk>"},
      {"ggml-vocab-qwen2.gguf", 151936, 151387, 151643, "!"},
  };
  for (const VocabCase& c : cases) {
    SCOPED_TRACE(c.file);
    const std::filesystem::path p = *shared / "data" / "tokenizer" / c.file;
    if (!std::filesystem::exists(p)) continue;
    Result<GgufFile> f = GgufFile::open(p.string());
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->version(), 3u);
    EXPECT_TRUE(f->tensors().empty());
    EXPECT_GT(f->data_offset(), f->file_size());  // unpadded: the (empty) data section starts past the end
    const Result<std::vector<std::string>> tokens = f->get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens.is_ok()) << tokens.status().message();
    EXPECT_EQ(tokens->size(), c.tokens);
    EXPECT_EQ(tokens->front(), c.first_token);
    EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type").value().size(), c.tokens);
    EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id").value(), c.bos);
    if (c.merges != 0) {
      EXPECT_EQ(f->get_string_array("tokenizer.ggml.merges").value().size(), c.merges);
    } else {
      const std::vector<float> scores = f->get_float_array("tokenizer.ggml.scores").value();
      ASSERT_EQ(scores.size(), c.tokens);
      EXPECT_EQ(scores.back(), -31740.0f);
      EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token").value());
    }
    EXPECT_TRUE(f->get_string("general.architecture").is_ok());
  }
}

// A real checkpoint, when LUTQ_MODEL_GGUF names one: every tensor dequantizes to finite values
// of plausible magnitude.
TEST(GgufRealModel, DequantizesEveryTensor) {
  const char* path = std::getenv("LUTQ_MODEL_GGUF");
  if (path == nullptr || *path == '\0') GTEST_SKIP() << "LUTQ_MODEL_GGUF not set";
  Result<GgufFile> f = GgufFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  const std::string arch = f->get_string("general.architecture").value();
  EXPECT_TRUE(f->get_int(arch + ".block_count").is_ok());
  EXPECT_GT(f->tensors().size(), 0u);
  for (const TensorInfo& t : f->tensors()) {
    SCOPED_TRACE(t.name);
    const Result<std::vector<float>> d = f->dequantize(t);
    if (d.status().code() == StatusCode::kUnsupported) continue;
    ASSERT_TRUE(d.is_ok()) << d.status().message();
    ASSERT_EQ(d->size(), static_cast<size_t>(t.num_elements()));
    float max_abs = 0.0f;
    for (float x : *d) {
      ASSERT_TRUE(std::isfinite(x));
      max_abs = std::max(max_abs, std::fabs(x));
    }
    EXPECT_LT(max_abs, 1000.0f);
    EXPECT_GT(max_abs, 0.0f);
  }
}

}  // namespace
}  // namespace lutq::io
