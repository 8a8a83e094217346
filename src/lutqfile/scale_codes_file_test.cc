// Compressed scales in the lutq file: the round trip (codes, decoded scales, bits), the format
// version (2 only with a compressed entry), and clear errors for every damage a compressed entry
// can carry (truncated codes, wrong dims, set padding bits, bad scale_bits, a newer version).
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "format/scale_codes.h"
#include "io/gguf_file.h"
#include "support/gguf_image.h"
#include "lutqfile/lutq_file.h"
#include "support/random_bcq.h"

namespace lutq::lutqfile {
namespace {

using testing::open_image;

format::BcqMatrix coded(int64_t n, int64_t k, const format::BcqConfig& cfg, int bits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Result<format::BcqMatrix> e = format::encode_scales(testing::random_bcq(n, k, cfg, rng), bits);
  EXPECT_TRUE(e.is_ok()) << e.status().message();
  return std::move(e).value();
}

TEST(LutqFileScaleCodes, RoundTripAndVersion) {
  const uint64_t seed = testing::test_seed();
  const std::vector<std::pair<format::BcqConfig, int>> cases = {
      {{3, 32, format::Orientation::kPerOC, false}, 8},
      {{4, 32, format::Orientation::kPerOC, true}, 6},
      {{2, 32, format::Orientation::kPerIC, true}, 5},
      {{1, 96, format::Orientation::kPerOC, true}, 4},  // g = k
  };
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersionPlain).is_ok());
  std::vector<format::BcqMatrix> mats;
  for (size_t i = 0; i < cases.size(); ++i) {
    mats.push_back(coded(64, 96, cases[i].first, cases[i].second, seed + i));
    ASSERT_TRUE(add_bcq(w, "m" + std::to_string(i), mats.back(), "rtn", 0.5).is_ok());
  }
  const io::GgufFile f = open_image(w);
  EXPECT_EQ(*f.get_int(kVersionKey), 2);
  ASSERT_TRUE(*is_lutq_file(f));
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string name = "m" + std::to_string(i);
    Result<format::BcqMatrix> r = read_bcq(f, name);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    testing::expect_same_bcq(*r, mats[i]);
    EXPECT_EQ((*find_bcq(f, name))->scale_bits, cases[i].second);
    EXPECT_EQ(f.find_tensor(name + ".bcq_alpha"), nullptr);
    EXPECT_NE(f.find_tensor(name + ".bcq_alpha_code"), nullptr);
  }
  // A file without compressed entries stays version 1.
  io::GgufWriter plain;
  ASSERT_TRUE(plain.add_uint32(std::string(kVersionKey), kFormatVersionPlain).is_ok());
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(add_bcq(plain, "p", testing::random_bcq(8, 64, {2, 32, format::Orientation::kPerOC, false}, rng), "", -1.0).is_ok());
  EXPECT_EQ(*open_image(plain).get_int(kVersionKey), 1);
}

TEST(LutqFileScaleCodes, StaleScalesAreNotWritten) {
  format::BcqMatrix m = coded(8, 64, {2, 32, format::Orientation::kPerOC, true}, 6, 3);
  m.alpha[2] ^= 1u;
  io::GgufWriter w;
  const Status s = add_bcq(w, "m", m, "", -1.0);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("decoding of their codes"), std::string::npos) << s.message();
}

// Rewrites a good one-matrix file (per-OC q=3 g=32 offset, 5-bit codes, 16x64) through `edit`,
// which may change a tensor's dims/bytes (return false to drop it) or a key; returns read_bcq's status.
using TensorEdit = std::function<bool(const std::string&, std::vector<int64_t>&, std::vector<uint8_t>&)>;
Status read_damaged(const TensorEdit& edit, int64_t scale_bits_key = 5, uint32_t version = 2) {
  const format::BcqMatrix m = coded(16, 64, {3, 32, format::Orientation::kPerOC, true}, 5, 11);
  io::GgufWriter good;
  EXPECT_TRUE(add_bcq(good, "m", m, "", -1.0).is_ok());
  const io::GgufFile src = open_image(good);
  io::GgufWriter w;
  EXPECT_TRUE(w.add_uint32(std::string(kVersionKey), version).is_ok());
  for (const std::string& key : src.keys()) {
    if (key == "lutq.bcq.m.scale_bits") {
      EXPECT_TRUE(w.add(key, io::GgufValue::make_int(io::GgufValueType::INT32, scale_bits_key)).is_ok());
    } else {
      EXPECT_TRUE(w.add(key, *src.find(key)).is_ok());
    }
  }
  for (const io::TensorInfo& t : src.tensors()) {
    std::vector<int64_t> dims = t.dims;
    const std::span<const uint8_t> b = src.tensor_bytes(t);
    std::vector<uint8_t> bytes(b.begin(), b.end());
    if (!edit(t.name, dims, bytes)) continue;
    EXPECT_TRUE(w.add_tensor(t.name, dims, t.type, bytes).is_ok()) << t.name;
  }
  Result<io::GgufFile> f = io::GgufFile::from_memory(w.to_bytes(), "test.lutq");
  if (!f) return f.status();
  if (Result<bool> v = is_lutq_file(*f); !v) return v.status();
  Result<format::BcqMatrix> r = read_bcq(*f, "m");
  return r.is_ok() ? Status::ok() : r.status();
}

TEST(LutqFileScaleCodes, DamagedEntriesGiveClearErrors) {
  const auto keep = [](const std::string&, std::vector<int64_t>&, std::vector<uint8_t>&) { return true; };
  ASSERT_TRUE(read_damaged(keep).is_ok()) << read_damaged(keep).message();
  const auto truncate = [](const std::string& which) {
    return [which](const std::string& name, std::vector<int64_t>& dims, std::vector<uint8_t>& bytes) {
      if (name == which) {
        bytes.pop_back();
        dims[0] -= 1;
      }
      return true;
    };
  };
  const auto drop = [](const std::string& which) {
    return [which](const std::string& name, std::vector<int64_t>&, std::vector<uint8_t>&) { return name != which; };
  };
  const auto redim = [](const std::string& which) {
    return [which](const std::string& name, std::vector<int64_t>& dims, std::vector<uint8_t>&) {
      if (name == which) std::swap(dims[0], dims[1]);
      return true;
    };
  };
  // 16 rows · 2 groups · 3 planes = 96 codes of 5 bits: 60 bytes, no padding. The offsets:
  // 32 codes, 20 bytes. Setting the top bit of the last alpha-code byte makes code 95 = 16..31
  // (valid): damage the offset range instead to reach the value checks.
  const auto bad_range = [](const std::string& name, std::vector<int64_t>&, std::vector<uint8_t>& bytes) {
    if (name == "m.bcq_offset_range") {
      bytes[0] = 0x00;
      bytes[1] = 0x7c;  // zmin = +inf
    }
    return true;
  };
  const std::vector<std::pair<Status, std::string>> cases = {
      {read_damaged(truncate("m.bcq_alpha_code")), "m.bcq_alpha_code"},
      {read_damaged(truncate("m.bcq_offset_code")), "m.bcq_offset_code"},
      {read_damaged(drop("m.bcq_alpha_super")), "missing tensor 'm.bcq_alpha_super'"},
      {read_damaged(drop("m.bcq_offset_range")), "missing tensor 'm.bcq_offset_range'"},
      {read_damaged(redim("m.bcq_alpha_super")), "m.bcq_alpha_super"},
      {read_damaged(redim("m.bcq_offset_range")), "m.bcq_offset_range"},
      {read_damaged(bad_range), "offset range of line 0"},
      {read_damaged(keep, 3), "scale_bits: 3 outside 4..8"},
      {read_damaged(keep, 9), "scale_bits: 9 outside 4..8"},
      {read_damaged(keep, 6), "m.bcq_alpha_code"},  // 6-bit codes do not fit the 5-bit tensor
      {read_damaged(keep, 5, 4), "version 4"},
  };
  for (const auto& [s, expect] : cases) {
    ASSERT_FALSE(s.is_ok()) << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("test.lutq"), std::string::npos) << s.message();
  }
}

TEST(LutqFileScaleCodes, SetPaddingBitsAreRefused) {
  // 8 rows · 2 groups · 1 plane = 16 codes of 5 bits: 80 bits, no padding; with offsets of 16
  // codes the same. Use 3 rows with g = k: 3 codes of 5 bits = 15 bits in 2 bytes.
  std::mt19937_64 rng(5);
  Result<format::BcqMatrix> m = format::encode_scales(testing::random_bcq(3, 64, {1, 64, format::Orientation::kPerOC, false}, rng), 5);
  ASSERT_TRUE(m.is_ok());
  io::GgufWriter good;
  ASSERT_TRUE(add_bcq(good, "m", *m, "", -1.0).is_ok());
  const io::GgufFile src = open_image(good);
  io::GgufWriter w;
  for (const std::string& key : src.keys()) ASSERT_TRUE(w.add(key, *src.find(key)).is_ok());
  for (const io::TensorInfo& t : src.tensors()) {
    const std::span<const uint8_t> b = src.tensor_bytes(t);
    std::vector<uint8_t> bytes(b.begin(), b.end());
    if (t.name == "m.bcq_alpha_code") bytes.back() |= 0x80u;
    ASSERT_TRUE(w.add_tensor(t.name, t.dims, t.type, bytes).is_ok());
  }
  Result<format::BcqMatrix> r = read_bcq(open_image(w), "m");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("padding bits"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("m.bcq_alpha_code"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace lutq::lutqfile
