// The lutq file's BCQ entries: round trips through a GGUF image and clear errors for every kind of
// damage a file can carry (bad entry metadata, missing or mis-shaped tensors, newer versions).
#include "lutqfile/lutq_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "io/gguf_file.h"
#include "support/gguf_image.h"
#include "support/random_bcq.h"

namespace lutq::lutqfile {
namespace {

using testing::open_image;

TEST(LutqFile, BcqMatricesRoundTrip) {
  std::mt19937_64 rng(testing::test_seed());
  const std::vector<format::BcqConfig> cfgs = {
      {3, 32, format::Orientation::kPerOC, false},
      {4, 32, format::Orientation::kPerOC, true},
      {2, 32, format::Orientation::kPerIC, true},
      {1, 96, format::Orientation::kPerOC, false},  // g = k
  };
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersion).is_ok());
  std::vector<format::BcqMatrix> mats;
  for (size_t i = 0; i < cfgs.size(); ++i) {
    mats.push_back(testing::random_bcq(64, 96, cfgs[i], rng));
    ASSERT_TRUE(add_bcq(w, "blk." + std::to_string(i) + ".attn_q.weight", mats.back(), "rtn", 0.125 * i).is_ok());
  }
  const io::GgufFile f = open_image(w);
  ASSERT_TRUE(*is_lutq_file(f));
  for (size_t i = 0; i < cfgs.size(); ++i) {
    const std::string name = "blk." + std::to_string(i) + ".attn_q.weight";
    Result<format::BcqMatrix> r = read_bcq(f, name);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    testing::expect_same_bcq(*r, mats[i]);
    Result<std::optional<BcqEntry>> e = find_bcq(f, name);
    ASSERT_TRUE(e.is_ok() && e->has_value());
    EXPECT_EQ((*e)->method, "rtn");
    EXPECT_FLOAT_EQ(static_cast<float>((*e)->rel_error), static_cast<float>(0.125 * i));
    EXPECT_TRUE(has_weight(f, name));
    EXPECT_EQ(*weight_dims(f, name), (std::vector<int64_t>{96, 64}));
  }
  EXPECT_FALSE(has_weight(f, "output.weight"));
  EXPECT_FALSE(find_bcq(f, "output.weight")->has_value());
}

TEST(LutqFile, PlainGgufIsNotALutqFile) {
  io::GgufWriter w;
  ASSERT_TRUE(w.add_string("general.architecture", "llama").is_ok());
  EXPECT_FALSE(*is_lutq_file(open_image(w)));
}

TEST(LutqFile, NewerVersionIsRejected) {
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersion + 1).is_ok());
  Result<bool> r = is_lutq_file(open_image(w));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("version"), std::string::npos) << r.status().message();
}

// A file whose entry for "w" says `desc` while its tensors hold a valid 64x64 q=2 g=32 matrix.
Status read_with_entry(const std::vector<int64_t>& desc, bool drop_alpha = false) {
  std::mt19937_64 rng(1);
  const format::BcqMatrix m = testing::random_bcq(64, 64, {2, 32, format::Orientation::kPerOC, false}, rng);
  io::GgufWriter good;
  EXPECT_TRUE(add_bcq(good, "w", m, "", -1.0).is_ok());
  const io::GgufFile src = open_image(good);
  io::GgufWriter w;
  EXPECT_TRUE(w.add("lutq.bcq.w", io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)).is_ok());
  for (const io::TensorInfo& t : src.tensors()) {
    if (drop_alpha && t.name == "w.bcq_alpha") continue;
    EXPECT_TRUE(w.add_tensor(t.name, t.dims, t.type, src.tensor_bytes(t)).is_ok());
  }
  Result<format::BcqMatrix> r = read_bcq(open_image(w), "w");
  return r.is_ok() ? Status::ok() : r.status();
}

TEST(LutqFile, DamagedEntriesGiveClearErrors) {
  EXPECT_TRUE(read_with_entry({64, 64, 2, 32, 0, 0}).is_ok());
  const std::vector<std::pair<std::vector<int64_t>, std::string>> cases = {
      {{64, 64, 2, 32, 0}, "expected 6 values"},
      {{0, 64, 2, 32, 0, 0}, "bad shape"},
      {{64, 64, 9, 32, 0, 0}, "outside 1..8"},
      {{64, 64, 2, 32, 2, 0}, "orientation"},
      {{64, 64, 2, 32, 0, 5}, "has_offset"},
      {{64, 64, 2, 48, 0, 0}, "g"},                  // not a valid group size
      {{64, 64, 3, 32, 0, 0}, "w.bcq_bits"},         // planes disagree with the tensor
      {{64, 64, 2, 64, 0, 0}, "w.bcq_alpha"},        // groups disagree with the tensor
      {{64, 64, 2, 32, 0, 1}, "missing tensor 'w.bcq_offset'"},
  };
  for (const auto& [desc, expect] : cases) {
    const Status s = read_with_entry(desc);
    ASSERT_FALSE(s.is_ok()) << "entry accepted: " << desc[2];
    EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("test.lutq"), std::string::npos) << s.message();
  }
  const Status s = read_with_entry({64, 64, 2, 32, 0, 0}, /*drop_alpha=*/true);
  EXPECT_NE(s.message().find("missing tensor 'w.bcq_alpha'"), std::string::npos) << s.message();
}

TEST(LutqFile, InvalidMatrixIsNotWritten) {
  format::BcqMatrix m;
  m.n = 64;
  m.k = 64;
  io::GgufWriter w;
  EXPECT_FALSE(add_bcq(w, "w", m, "", -1.0).is_ok());
  EXPECT_EQ(w.num_tensors(), 0u);
}

// int8 layers: LLM.int8() (with its fp16 copy) and plain int8 round trip; damaged entries and
// tensors are refused with the file and layer named; an invalid entry is not written.
Int8Entry small_int8(float threshold) {
  Int8Entry e;
  e.n = 3;
  e.k = 5;
  e.threshold = threshold;
  for (int i = 0; i < 15; ++i) e.q.push_back(static_cast<int8_t>(i * 17 % 255 - 127));
  e.scale = {0.5f, 0.0f, 2.0f};
  if (std::isfinite(threshold)) {
    for (int i = 0; i < 15; ++i) e.fp16.push_back(static_cast<uint16_t>(0x3c00 + i));
  }
  return e;
}

TEST(LutqFile, Int8LayersRoundTripAndDamageIsRefused) {
  const float inf = std::numeric_limits<float>::infinity();
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersion).is_ok());
  ASSERT_TRUE(add_int8(w, "a.weight", small_int8(6.0f)).is_ok());
  ASSERT_TRUE(add_int8(w, "b.weight", small_int8(inf)).is_ok());
  const io::GgufFile f = open_image(w);
  for (const auto& [name, threshold] : {std::pair{"a.weight", 6.0f}, std::pair{"b.weight", inf}}) {
    Result<std::optional<Int8Entry>> r = read_int8(f, name);
    ASSERT_TRUE(r.is_ok() && r->has_value()) << r.status().message();
    const Int8Entry want = small_int8(threshold);
    EXPECT_EQ((*r)->q, want.q);
    EXPECT_EQ((*r)->scale, want.scale);
    EXPECT_EQ((*r)->fp16, want.fp16);
    EXPECT_EQ((*r)->threshold, threshold);
    EXPECT_TRUE(has_weight(f, name));
    EXPECT_EQ(*weight_dims(f, name), (std::vector<int64_t>{5, 3}));
  }
  EXPECT_FALSE(read_int8(f, "c.weight")->has_value());

  // Invalid entries are not written.
  const std::vector<std::pair<std::string, std::function<void(Int8Entry&)>>> bad = {
      {"code -128", [](Int8Entry& e) { e.q[4] = -128; }},
      {"scale of row 1", [](Int8Entry& e) { e.scale[1] = std::nanf(""); }},
      {"without its fp16 copy", [](Int8Entry& e) { e.fp16.clear(); }},
      {"not finite", [](Int8Entry& e) { e.fp16[2] = 0x7c00; }},
      {"threshold", [](Int8Entry& e) { e.threshold = 0.0f; }},
      {"buffer sizes", [](Int8Entry& e) { e.q.pop_back(); }},
  };
  for (const auto& [expect, damage] : bad) {
    Int8Entry e = small_int8(6.0f);
    damage(e);
    io::GgufWriter v;
    const Status s = add_int8(v, "x.weight", e);
    ASSERT_FALSE(s.is_ok()) << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
    EXPECT_EQ(v.num_tensors(), 0u);
  }
  // Written around the checks: a stored code of -128, a tensor of the wrong shape, a missing copy.
  const auto read_raw = [](const Int8Entry& e, bool drop_copy, int64_t scale_len) {
    io::GgufWriter v;
    EXPECT_TRUE(v.add_uint32(std::string(kVersionKey), kFormatVersion).is_ok());
    const std::vector<int64_t> desc = {e.n, e.k};
    EXPECT_TRUE(v.add("lutq.int8.x.weight", io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)).is_ok());
    EXPECT_TRUE(v.add_float32("lutq.int8.x.weight.threshold", e.threshold).is_ok());
    EXPECT_TRUE(v.add_tensor("x.weight.int8_q", {e.k, e.n}, io::GgmlType::I8,
                             {reinterpret_cast<const uint8_t*>(e.q.data()), e.q.size()}).is_ok());
    std::vector<float> scale(static_cast<size_t>(scale_len), 1.0f);
    EXPECT_TRUE(v.add_tensor("x.weight.int8_scale", {scale_len}, io::GgmlType::F32,
                             {reinterpret_cast<const uint8_t*>(scale.data()), scale.size() * 4}).is_ok());
    if (!drop_copy) {
      EXPECT_TRUE(v.add_tensor("x.weight.int8_fp16", {e.k, e.n}, io::GgmlType::F16,
                               {reinterpret_cast<const uint8_t*>(e.fp16.data()), e.fp16.size() * 2}).is_ok());
    }
    Result<io::GgufFile> g = io::GgufFile::from_memory(v.to_bytes(), "test.lutq");
    EXPECT_TRUE(g.is_ok());
    Result<std::optional<Int8Entry>> r = read_int8(*g, "x.weight");
    return r.is_ok() ? Status::ok() : r.status();
  };
  Int8Entry e = small_int8(6.0f);
  EXPECT_TRUE(read_raw(e, false, 3).is_ok());
  e.q[0] = -128;
  const std::vector<std::pair<Status, std::string>> damaged = {
      {read_raw(e, false, 3), "code -128"},
      {read_raw(small_int8(6.0f), false, 4), "x.weight.int8_scale"},
      {read_raw(small_int8(6.0f), true, 3), "missing tensor 'x.weight.int8_fp16'"},
  };
  for (const auto& [s, expect] : damaged) {
    ASSERT_FALSE(s.is_ok()) << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("test.lutq"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace lutq::lutqfile
