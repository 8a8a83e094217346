// Uniform scales in the lutq file (docs/format.md, "Uniform scales"): RTN fits, with fp16 or
// compressed scales, are stored once per scale set and read back to the same matrix; the file is
// then version 3; non-uniform scales are stored in full; damaged uniform entries give clear errors.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "format/scale_codes.h"
#include "io/gguf_file.h"
#include "lutqfile/lutq_file.h"
#include "quant/quantize.h"
#include "quant/scale_fit.h"
#include "support/gguf_image.h"
#include "support/random_bcq.h"

namespace lutq::lutqfile {
namespace {

using testing::open_image;

std::vector<float> gaussian(int64_t n, int64_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = d(rng);
  return w;
}

// An RTN fit of Gaussian weights, with `bits`-bit compressed scales when bits > 0.
format::BcqMatrix rtn(int64_t n, int64_t k, const format::BcqConfig& cfg, int bits, uint64_t seed) {
  const std::vector<float> w = gaussian(n, k, seed);
  quant::QuantOptions opt;
  opt.method = quant::Method::kRtn;
  opt.cfg = cfg;
  Result<format::BcqMatrix> m = quant::quantize(w.data(), n, k, opt);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  if (bits > 0) {
    EXPECT_TRUE(quant::compress_scales(w.data(), {}, bits, *m).is_ok());
  }
  return std::move(m).value();
}

TEST(LutqFileUniform, RtnScalesAreStoredOncePerSet) {
  const uint64_t seed = testing::test_seed();
  const std::vector<std::pair<format::BcqConfig, int>> cases = {
      {{4, 32, format::Orientation::kPerOC, true}, 0},
      {{3, 64, format::Orientation::kPerIC, true}, 0},
      {{4, 32, format::Orientation::kPerOC, true}, 8},
      {{2, 32, format::Orientation::kPerIC, true}, 6},
  };
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersionPlain).is_ok());
  std::vector<format::BcqMatrix> mats;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [cfg, bits] = cases[i];
    mats.push_back(rtn(64, 96, cfg, bits, seed + i));
    const format::BcqMatrix& m = mats.back();
    ASSERT_TRUE(format::has_uniform_scales(m)) << format::describe(m);
    // q planes of scales cost 16·q/g (or bits·q/g); uniform ones 16/g (bits/g), plus the offsets.
    const double scale_bits = bits > 0 ? bits : 16;
    const double lines = cfg.orientation == format::Orientation::kPerOC ? 64 : 96;
    const double expect = cfg.q + scale_bits * 2 / static_cast<double>(cfg.g) +
                          (bits > 0 ? 16.0 * 3 * lines / (64.0 * 96.0) : 0.0);
    EXPECT_NEAR(m.bits_per_weight(), expect, 0.02) << format::describe(m);
    ASSERT_TRUE(add_bcq(w, "m" + std::to_string(i), m, "rtn", 0.1).is_ok());
  }
  const io::GgufFile f = open_image(w);
  EXPECT_EQ(*f.get_int(kVersionKey), kFormatVersionUniform);
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string name = "m" + std::to_string(i);
    Result<format::BcqMatrix> r = read_bcq(f, name);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    testing::expect_same_bcq(*r, mats[i]);
    EXPECT_TRUE((*find_bcq(f, name))->uniform);
    const io::TensorInfo* t = f.find_tensor(name + (cases[i].second > 0 ? ".bcq_alpha_super" : ".bcq_alpha"));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims.front(), 1);
  }
}

TEST(LutqFileUniform, OtherScalesAreStoredInFull) {
  std::mt19937_64 rng(testing::test_seed());
  format::BcqMatrix m = testing::random_bcq(16, 64, {3, 32, format::Orientation::kPerOC, true}, rng);
  ASSERT_FALSE(format::has_uniform_scales(m));
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersionPlain).is_ok());
  ASSERT_TRUE(add_bcq(w, "m", m, "", -1.0).is_ok());
  const io::GgufFile f = open_image(w);
  EXPECT_EQ(*f.get_int(kVersionKey), kFormatVersionPlain);
  EXPECT_FALSE((*find_bcq(f, "m"))->uniform);
  testing::expect_same_bcq(*read_bcq(f, "m"), m);
}

// Rewrites a good uniform entry (fp16 scales) with key `key` set to `value`, or with its alpha
// tensor's values replaced by `alpha0`; returns read_bcq's status.
Status read_damaged(const std::string& key, int64_t value, uint16_t alpha0 = 0) {
  const format::BcqMatrix m = rtn(8, 64, {4, 32, format::Orientation::kPerOC, true}, 0, 5);
  io::GgufWriter good;
  EXPECT_TRUE(good.add_uint32(std::string(kVersionKey), kFormatVersionPlain).is_ok());
  EXPECT_TRUE(add_bcq(good, "m", m, "", -1.0).is_ok());
  const io::GgufFile src = open_image(good);
  io::GgufWriter w;
  for (const std::string& k : src.keys()) {
    const io::GgufValue v = k == key ? io::GgufValue::make_int(io::GgufValueType::INT32, value) : *src.find(k);
    EXPECT_TRUE(w.add(k, v).is_ok());
  }
  for (const io::TensorInfo& t : src.tensors()) {
    std::vector<uint8_t> bytes(src.tensor_bytes(t).begin(), src.tensor_bytes(t).end());
    if (alpha0 != 0 && t.name == "m.bcq_alpha") {
      for (size_t j = 0; j + 1 < bytes.size(); j += 2) {
        bytes[j] = static_cast<uint8_t>(alpha0 & 0xff);
        bytes[j + 1] = static_cast<uint8_t>(alpha0 >> 8);
      }
    }
    EXPECT_TRUE(w.add_tensor(t.name, t.dims, t.type, bytes).is_ok());
  }
  const io::GgufFile f = open_image(w);
  return read_bcq(f, "m").status();
}

TEST(LutqFileUniform, DamagedEntriesGiveClearErrors) {
  ASSERT_TRUE(read_damaged("", 0).is_ok());
  const std::vector<std::pair<Status, std::string>> cases = {
      {read_damaged("lutq.bcq.m.uniform", 2), "uniform 2 (0 or 1)"},
      // Claimed non-uniform: the one-plane alpha tensor is not the q-plane one the entry implies.
      {read_damaged("lutq.bcq.m.uniform", 0), "m.bcq_alpha"},
      // 60000·2^3 is beyond fp16.
      {read_damaged("", 0, 0x7b53), "not a finite fp16"},
  };
  for (const auto& [s, expect] : cases) {
    ASSERT_FALSE(s.is_ok()) << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace lutq::lutqfile
