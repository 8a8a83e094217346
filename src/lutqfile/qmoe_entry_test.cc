// QMoE entries of the lutq file: two matrices sharing one dictionary round trip through a GGUF
// image (and share it in memory when read), and damaged entries are rejected naming the tensor.
#include "lutqfile/qmoe_entry.h"

#include <gtest/gtest.h>

#include <random>

#include "io/gguf_file.h"
#include "support/gguf_image.h"
#include "lutqfile/lutq_file.h"

namespace lutq::lutqfile {
namespace {

format::TernaryMatrix random_ternary(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, 9);
  format::TernaryMatrix m{n, k, std::vector<int8_t>(static_cast<size_t>(n * k)), std::vector<uint16_t>(static_cast<size_t>(n), 0x3c00)};
  for (int8_t& t : m.t) {
    const int x = u(rng);
    t = x < 8 ? 0 : (x == 8 ? 1 : -1);
  }
  return m;
}

struct Coded {
  std::shared_ptr<const format::QmoeDictionary> dict;
  format::QmoeMatrix a, b;
};

Coded make_coded() {
  const format::TernaryMatrix ta = random_ternary(12, 96, 1);
  const format::TernaryMatrix tb = random_ternary(96, 12, 2);
  const format::TernaryMatrix* mats[] = {&ta, &tb};
  Result<format::QmoeDictionary> d = format::build_dictionary(mats, format::DictionaryOptions{});
  EXPECT_TRUE(d);
  Coded c;
  c.dict = std::make_shared<const format::QmoeDictionary>(std::move(*d));
  c.a = std::move(*format::encode(ta, c.dict));
  c.b = std::move(*format::encode(tb, c.dict));
  return c;
}

using testing::open_image;

TEST(LutqFileQmoe, RoundTripWithASharedDictionary) {
  const Coded c = make_coded();
  io::GgufWriter w;
  ASSERT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersion));
  ASSERT_TRUE(add_qmoe_dictionary(w, "ffn", *c.dict));
  ASSERT_TRUE(add_qmoe(w, "blk.0.ffn_up.weight", c.a, "ffn"));
  ASSERT_TRUE(add_qmoe(w, "blk.0.ffn_down.weight", c.b, "ffn"));
  const io::GgufFile f = open_image(w);
  QmoeDictionaries dicts;
  Result<std::optional<format::QmoeMatrix>> a = read_qmoe(f, "blk.0.ffn_up.weight", dicts);
  Result<std::optional<format::QmoeMatrix>> b = read_qmoe(f, "blk.0.ffn_down.weight", dicts);
  ASSERT_TRUE(a && b) << (a ? b.status().message() : a.status().message());
  ASSERT_TRUE(a->has_value() && b->has_value());
  EXPECT_EQ((*a)->codes, c.a.codes);
  EXPECT_EQ((*a)->row_offset, c.a.row_offset);
  EXPECT_EQ((*a)->scale, c.a.scale);
  EXPECT_EQ((*b)->codes, c.b.codes);
  EXPECT_EQ((*a)->dict, (*b)->dict);  // read once, shared
  EXPECT_EQ((*a)->dict->pos, c.dict->pos);
  EXPECT_TRUE(has_qmoe(f, "blk.0.ffn_up.weight"));
  Result<std::optional<format::QmoeMatrix>> none = read_qmoe(f, "blk.1.ffn_up.weight", dicts);
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

// Writes c.a under `name` with its tensors as given (no validation), to plant damage.
io::GgufFile damaged(const Coded& c, const std::vector<uint16_t>& codes, const std::vector<uint32_t>& off,
                     const std::string& dict = "ffn", bool with_dict = true) {
  io::GgufWriter w;
  EXPECT_TRUE(w.add_uint32(std::string(kVersionKey), kFormatVersion));
  if (with_dict) {
    EXPECT_TRUE(add_qmoe_dictionary(w, "ffn", *c.dict));
  }
  const std::string name = "blk.3.ffn_gate.weight";
  const std::vector<int64_t> desc = {c.a.n, c.a.k, static_cast<int64_t>(codes.size())};
  EXPECT_TRUE(w.add("lutq.qmoe." + name, io::GgufValue::make_int_array(io::GgufValueType::INT64, desc)));
  EXPECT_TRUE(w.add_string("lutq.qmoe." + name + ".dict", dict));
  auto bytes = [](const auto& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
  };
  EXPECT_TRUE(w.add_tensor(name + ".qmoe_scale", {c.a.n}, io::GgmlType::F16, bytes(c.a.scale)));
  EXPECT_TRUE(w.add_tensor(name + ".qmoe_offsets", {static_cast<int64_t>(off.size())}, io::GgmlType::I32, bytes(off)));
  EXPECT_TRUE(w.add_tensor(name + ".qmoe_codes", {static_cast<int64_t>(codes.size())}, io::GgmlType::I16, bytes(codes)));
  return open_image(w);
}

void expect_rejected(const io::GgufFile& f, const std::string& what) {
  QmoeDictionaries dicts;
  Result<std::optional<format::QmoeMatrix>> r = read_qmoe(f, "blk.3.ffn_gate.weight", dicts);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("blk.3.ffn_gate.weight"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
}

TEST(LutqFileQmoe, CorruptEntriesAreRejectedNamingTheTensor) {
  const Coded c = make_coded();
  QmoeDictionaries fresh;
  EXPECT_TRUE(read_qmoe(damaged(c, c.a.codes, c.a.row_offset), "blk.3.ffn_gate.weight", fresh));
  std::vector<uint16_t> bad_code = c.a.codes;
  bad_code[2] = 0xffff;
  expect_rejected(damaged(c, bad_code, c.a.row_offset), "outside the dictionary");
  std::vector<uint16_t> truncated(c.a.codes.begin(), c.a.codes.end() - 3);
  expect_rejected(damaged(c, truncated, c.a.row_offset), "row offsets");
  std::vector<uint32_t> off = c.a.row_offset;
  std::swap(off[1], off[2]);
  expect_rejected(damaged(c, c.a.codes, off), "row offsets");
  std::vector<uint32_t> short_off(c.a.row_offset.begin(), c.a.row_offset.end() - 1);
  expect_rejected(damaged(c, c.a.codes, short_off), "qmoe_offsets");
  expect_rejected(damaged(c, c.a.codes, c.a.row_offset, "attn"), "dictionary 'attn'");
  expect_rejected(damaged(c, c.a.codes, c.a.row_offset, "ffn", false), "dictionary 'ffn'");
}

}  // namespace
}  // namespace lutq::lutqfile
