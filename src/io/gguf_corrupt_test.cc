// Malformed GGUF inputs: each must come back as a non-ok Status naming the file and the problem,
// never a crash, an out-of-bounds read or an allocation sized by an unchecked count.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf_file.h"
#include "io/gguf_test_util.h"
#include "io/gguf_writer.h"

namespace lutq::io {
namespace {

using test_support::Bytes;
using T = GgufValueType;

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ4_0 = 2;

// Parses `bytes` as "bad.gguf": success when it fails with a message that starts with the file
// name and contains `fragment`.
::testing::AssertionResult fails_with(std::vector<uint8_t> bytes, std::string_view fragment) {
  Result<GgufFile> f = GgufFile::from_memory(std::move(bytes), "bad.gguf");
  if (f.is_ok()) return ::testing::AssertionFailure() << "parsed, expected an error containing '" << fragment << "'";
  const std::string& msg = f.status().message();
  if (msg.rfind("bad.gguf: ", 0) != 0) return ::testing::AssertionFailure() << "message lacks the file name: " << msg;
  if (msg.find(fragment) == std::string::npos) {
    return ::testing::AssertionFailure() << "message '" << msg << "' lacks '" << fragment << "'";
  }
  return ::testing::AssertionSuccess();
}

bool parses(std::vector<uint8_t> bytes) { return GgufFile::from_memory(std::move(bytes), "ok.gguf").is_ok(); }

// A file with the given tensor infos, padded to 32, then `data_bytes` zero bytes.
std::vector<uint8_t> tensor_file(const std::vector<std::pair<std::string, std::vector<uint64_t>>>& names_dims,
                                 uint32_t type, const std::vector<uint64_t>& offsets, size_t data_bytes) {
  Bytes b;
  b.header(names_dims.size(), 0);
  for (size_t i = 0; i < names_dims.size(); ++i) {
    b.tensor_info(names_dims[i].first, names_dims[i].second, type, offsets[i]);
  }
  b.pad_to(32).zeros(data_bytes);
  return b.take();
}

// A small valid file exercising every section; its last tensor ends exactly at the end.
std::vector<uint8_t> small_valid_file() {
  GgufWriter w;
  EXPECT_TRUE(w.add_string("general.architecture", "llama").is_ok());
  EXPECT_TRUE(w.add_uint32("general.alignment", 32).is_ok());
  const std::vector<int64_t> ids = {1, 2, 3};
  EXPECT_TRUE(w.add("ids", GgufValue::make_int_array(T::INT32, ids)).is_ok());
  EXPECT_TRUE(w.add("toks", GgufValue::make_string_array({"<s>", "ab"})).is_ok());
  EXPECT_TRUE(w.add("nested", GgufValue::make_array_array({GgufValue::make_string_array({"x"})})).is_ok());
  EXPECT_TRUE(w.add_bool("b", true).is_ok());
  EXPECT_TRUE(w.add("f64", GgufValue::make_float64(2.5)).is_ok());
  EXPECT_TRUE(w.add_tensor("a", {8}, GgmlType::F32, std::vector<uint8_t>(32, 1)).is_ok());
  EXPECT_TRUE(w.add_tensor("b", {32}, GgmlType::Q4_0, std::vector<uint8_t>(18, 2)).is_ok());
  EXPECT_TRUE(w.add_tensor("c", {4, 2}, GgmlType::F32, std::vector<uint8_t>(32, 3)).is_ok());
  return w.to_bytes();
}

TEST(GgufCorrupt, EveryTruncationFails) {
  const std::vector<uint8_t> full = small_valid_file();
  Result<GgufFile> ok = GgufFile::from_memory(full, "bad.gguf");
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  const TensorInfo& last = ok->tensors().back();
  ASSERT_EQ(ok->data_offset() + last.offset + last.size_bytes, full.size());
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_TRUE(fails_with(std::vector<uint8_t>(full.begin(), full.begin() + static_cast<ptrdiff_t>(n)), ""))
        << "prefix of " << n << " bytes";
  }
  EXPECT_TRUE(fails_with({}, "unexpected end of file reading magic at offset 0"));
}

TEST(GgufCorrupt, HeaderMagicVersionEndianness) {
  EXPECT_TRUE(fails_with(Bytes().raw("GGUX").u32(3).u64(0).u64(0).take(), "not a GGUF file (bad magic 'GGUX'"));
  EXPECT_TRUE(fails_with(Bytes().raw("\177ELF").u32(3).take(), "not a GGUF file"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 0, 1).take(), "GGUF version 1 is not supported"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 0, 4).take(), "unsupported GGUF version 4"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 0, 0).take(), "unsupported GGUF version 0"));
  EXPECT_TRUE(
      fails_with(Bytes().raw("GGUF").u32(0x03000000).u64(0).u64(0).take(), "big-endian GGUF files are not supported"));
  EXPECT_TRUE(
      fails_with(Bytes().raw("GGUF").u32(3).u64(0).take(), "unexpected end of file reading metadata key/value count"));
  EXPECT_TRUE(parses(Bytes().header(0, 0).take()));  // the smallest valid file
}

TEST(GgufCorrupt, HugeCounts) {
  EXPECT_TRUE(fails_with(Bytes().header(0, uint64_t{1} << 60).take(),
                         "metadata key/value count 1152921504606846976 cannot fit"));
  EXPECT_TRUE(fails_with(Bytes().header(uint64_t{1} << 62, 0).take(), "tensor count 4611686018427387904 cannot fit"));
  EXPECT_TRUE(fails_with(Bytes().header(~uint64_t{0}, ~uint64_t{0}).take(), "cannot fit"));
  EXPECT_TRUE(fails_with(Bytes().header(1, 0).zeros(20).take(), "tensor count 1 cannot fit"));
  // Array lengths are bounded by the bytes left, per element kind.
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("k").u32(9).u32(5).u64(uint64_t{1} << 61).take(),
                         "metadata key 'k' array of 2305843009213693952 int32 elements"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("k").u32(9).u32(8).u64(3).u64(0).u64(0).take(),
                         "cannot fit in the 16 bytes"));
  EXPECT_TRUE(
      fails_with(Bytes().header(0, 1).str("k").u32(9).u32(9).u64(~uint64_t{0}).zeros(64).take(), "array elements"));
}

TEST(GgufCorrupt, StringLengthsPastTheEnd) {
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).u64(1000).raw("abcdefghijklm").take(),
                         "metadata key #0 length 1000 at offset 24 runs past the end of the file (13 bytes left)"));
  EXPECT_TRUE(
      fails_with(Bytes().header(0, 1).str("k").u32(8).u64(uint64_t{1} << 63).take(), "metadata key 'k' string length"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("k").u32(9).u32(8).u64(1).u64(~uint64_t{0}).take(),
                         "metadata key 'k' string element length 18446744073709551615"));
  EXPECT_TRUE(
      fails_with(Bytes().header(1, 0).u64(uint64_t{1} << 40).zeros(40).take(), "tensor #0 name length 1099511627776"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str(std::string(70000, 'k')).u32(0).u8(0).take(),
                         "exceeds the maximum of 65535"));
}

TEST(GgufCorrupt, BadValues) {
  EXPECT_TRUE(
      fails_with(Bytes().header(0, 1).str("k").u32(13).u32(0).take(), "metadata key 'k' has unknown value type 13"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("k").u32(9).u32(77).u64(0).take(), "unknown array element type 77"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("k").u32(7).u8(2).take(), "metadata key 'k' bool value 2"));
  EXPECT_TRUE(
      fails_with(Bytes().header(0, 1).str("k").u32(9).u32(7).u64(2).u8(1).u8(9).take(), "bool array element 1 is 9"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).take(), "duplicate metadata key 'k'"));
  // Nesting: kGgufMaxArrayDepth levels parse, one more fails.
  auto nested = [](int levels) {
    Bytes b;
    b.header(0, 1).str("deep").u32(9);
    for (int i = 1; i < levels; ++i) b.u32(9).u64(1);
    b.u32(4).u64(1).u32(7);
    return b.take();
  };
  EXPECT_TRUE(parses(nested(kGgufMaxArrayDepth)));
  EXPECT_TRUE(fails_with(nested(kGgufMaxArrayDepth + 1), "metadata key 'deep' nests arrays deeper than 8 levels"));
}

TEST(GgufCorrupt, Alignment) {
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).kv_u32("general.alignment", 0).take(),
                         "general.alignment 0 is not a nonzero power of two"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).kv_u32("general.alignment", 3).take(),
                         "general.alignment 3 is not a nonzero power of two"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).kv_string("general.alignment", "32").take(),
                         "general.alignment is string, expected uint32"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("general.alignment").u32(11).u64(uint64_t{1} << 40).take(),
                         "is not a nonzero power"));
  EXPECT_TRUE(fails_with(Bytes().header(0, 1).str("general.alignment").u32(5).u32(0xffffffe0u).take(),
                         "-32 is not a nonzero power"));
  EXPECT_TRUE(parses(Bytes().header(0, 1).kv_u32("general.alignment", 64).take()));
}

TEST(GgufCorrupt, TensorPlacement) {
  EXPECT_TRUE(
      fails_with(tensor_file({{"blk.0.attn_q.weight", {32}}}, kF32, {0}, 64),
                 "bad.gguf: tensor 'blk.0.attn_q.weight' extends past the end of the file (offset 0 in the data "
                 "section at 96, size 128, file 160 bytes)"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {8}}}, kF32, {uint64_t{1} << 63}, 64),
                         "tensor 't' extends past the end of the file"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {8}}}, kF32, {~uint64_t{0} - 31}, 64), "extends past the end of the file"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {8}}}, kF32, {8}, 64),
                         "tensor 't' offset 8 is not a multiple of the alignment 32"));
  EXPECT_TRUE(fails_with(tensor_file({{"a", {16}}, {"b", {8}}}, kF32, {0, 32}, 128), "tensors 'a' and 'b' overlap"));
  EXPECT_TRUE(fails_with(tensor_file({{"a", {8}}, {"a", {8}}}, kF32, {0, 32}, 64), "duplicate tensor name 'a'"));
  EXPECT_TRUE(parses(tensor_file({{"a", {8}}, {"b", {8}}}, kF32, {32, 0}, 64)));  // any order
  // The data section needs its alignment padding too.
  Bytes b;
  b.header(1, 0).tensor_info("t", {1}, kF32, 0).zeros(4);
  EXPECT_TRUE(fails_with(b.take(), "extends past the end of the file"));
}

TEST(GgufCorrupt, TensorShapesAndTypes) {
  EXPECT_TRUE(fails_with(tensor_file({{"t", {uint64_t{1} << 32, uint64_t{1} << 32}}}, kF32, {0}, 0),
                         "tensor 't' number of elements overflows int64"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {uint64_t{1} << 62}}}, kF32, {0}, 0), "tensor 't' byte size overflows"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {3, 5, 7, uint64_t{1} << 61}}}, kF32, {0}, 0), "overflows int64"));
  EXPECT_TRUE(
      fails_with(tensor_file({{"t", {uint64_t{1} << 63}}}, kF32, {0}, 0), "dimension 0 is 9223372036854775808"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {4, 0}}}, kF32, {0}, 64), "tensor 't' dimension 1 is 0 (must be > 0"));
  EXPECT_TRUE(
      fails_with(tensor_file({{"t", {1, 1, 1, 1, 1}}}, kF32, {0}, 64), "tensor 't' has 5 dimensions (must be 1..4)"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {}}}, kF32, {0}, 64), "tensor 't' has 0 dimensions"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {8}}}, 99, {0}, 64), "tensor 't' has unknown ggml type 99"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {8}}}, 4, {0}, 64), "unknown ggml type 4"));
  EXPECT_TRUE(fails_with(tensor_file({{"t", {16}}}, kQ4_0, {0}, 64),
                         "row length 16 is not a multiple of the q4_0 block size 32"));
  EXPECT_TRUE(fails_with(Bytes().header(1, 0).str(std::string(20, 't')).u32(2).u64(4).take(), "dimensions at offset"));
}

TEST(GgufCorrupt, CorruptionsOfAValidFileNeverCrash) {
  // Flip every byte of the directory region (a cheap, deterministic stand-in for the fuzzer):
  // whatever parses must still be internally consistent.
  const std::vector<uint8_t> full = small_valid_file();
  const uint64_t header_end = GgufFile::from_memory(full, "x").value().data_offset();
  for (size_t i = 0; i < header_end; ++i) {
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::vector<uint8_t> bytes = full;
      bytes[i] ^= x;
      Result<GgufFile> f = GgufFile::from_memory(std::move(bytes), "bad.gguf");
      if (!f.is_ok()) continue;
      for (const TensorInfo& t : f->tensors()) {
        EXPECT_EQ(f->tensor_bytes(t).size(), t.size_bytes);
        const Result<std::vector<float>> d = f->dequantize(t);
        if (d.is_ok()) {
          EXPECT_EQ(d->size(), static_cast<size_t>(t.num_elements()));
        }
      }
    }
  }
}

}  // namespace
}  // namespace lutq::io
