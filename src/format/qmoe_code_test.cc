// QMoE code: dictionary build, encode/decode round trips, and validation of every kind of
// corrupt dictionary or code stream.
#include "format/qmoe_code.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/fp16.h"

namespace lutq::format {
namespace {

TernaryMatrix random_ternary(int64_t n, int64_t k, double zero_fraction, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  TernaryMatrix m{n, k, std::vector<int8_t>(static_cast<size_t>(n * k)), std::vector<uint16_t>(static_cast<size_t>(n))};
  for (int8_t& t : m.t) {
    const double x = u(rng);
    t = x < zero_fraction ? 0 : (x < zero_fraction + (1.0 - zero_fraction) / 2 ? 1 : -1);
  }
  for (int64_t r = 0; r < n; ++r) m.scale[static_cast<size_t>(r)] = fp32_to_fp16(0.01f * static_cast<float>(r + 1));
  return m;
}

std::shared_ptr<const QmoeDictionary> dictionary_for(const TernaryMatrix& m, int64_t max_entries = kQmoeMaxEntries) {
  const TernaryMatrix* mats[] = {&m};
  DictionaryOptions opt;
  opt.max_entries = max_entries;
  Result<QmoeDictionary> d = build_dictionary(mats, opt);
  EXPECT_TRUE(d) << d.status().message();
  return std::make_shared<const QmoeDictionary>(std::move(*d));
}

TEST(QmoeCode, RoundTripAcrossSparsities) {
  for (double zf : {0.0, 0.5, 0.9, 0.97, 1.0}) {
    const TernaryMatrix m = random_ternary(37, 301, zf, 1);
    auto dict = dictionary_for(m);
    ASSERT_TRUE(validate(*dict)) << validate(*dict).message();
    Result<QmoeMatrix> q = encode(m, dict);
    ASSERT_TRUE(q) << q.status().message();
    ASSERT_TRUE(validate(*q)) << validate(*q).message();
    Result<TernaryMatrix> back = decode(*q);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->t, m.t) << "zero fraction " << zf;
    EXPECT_EQ(back->scale, m.scale);
    // Sparse streams compress below 1 bit per symbol.
    if (zf >= 0.9) {
      EXPECT_LT(q->code_bits_per_weight(), 1.0) << zf;
    }
  }
}

TEST(QmoeCode, PairMergeDictionaryRoundTrips) {
  const TernaryMatrix m = random_ternary(20, 200, 0.9, 6);
  const TernaryMatrix* mats[] = {&m};
  DictionaryOptions opt;
  opt.method = DictionaryMethod::kPairMerge;
  Result<QmoeDictionary> d = build_dictionary(mats, opt);
  ASSERT_TRUE(d);
  Result<QmoeMatrix> q = encode(m, std::make_shared<const QmoeDictionary>(std::move(*d)));
  ASSERT_TRUE(q);
  Result<TernaryMatrix> back = decode(*q);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->t, m.t);
}

TEST(QmoeCode, SharedDictionaryCodesOtherMatrices) {
  const TernaryMatrix a = random_ternary(20, 128, 0.9, 2);
  const TernaryMatrix b = random_ternary(9, 77, 0.3, 3);  // other statistics: singles cover it
  auto dict = dictionary_for(a, 300);
  EXPECT_LE(dict->size(), 300);
  Result<QmoeMatrix> q = encode(b, dict);
  ASSERT_TRUE(q);
  Result<TernaryMatrix> back = decode(*q);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->t, b.t);
}

TEST(QmoeCode, DictionaryIsDeterministic) {
  const TernaryMatrix m = random_ternary(16, 200, 0.8, 4);
  auto d1 = dictionary_for(m);
  auto d2 = dictionary_for(m);
  EXPECT_EQ(d1->len, d2->len);
  EXPECT_EQ(d1->pos, d2->pos);
  EXPECT_EQ(d1->neg, d2->neg);
}

class QmoeCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = random_ternary(8, 64, 0.85, 5);
    Result<QmoeMatrix> q = encode(m_, dictionary_for(m_));
    ASSERT_TRUE(q);
    q_ = std::move(*q);
  }
  void expect_rejected(const QmoeMatrix& q, const std::string& what) {
    Status s = validate(q);
    EXPECT_FALSE(s);
    EXPECT_NE(s.message().find(what), std::string::npos) << s.message();
    EXPECT_FALSE(decode(q));
  }
  QmoeDictionary dict_copy() const { return *q_.dict; }
  TernaryMatrix m_;
  QmoeMatrix q_;
};

TEST_F(QmoeCorrupt, CodewordOutsideTheDictionary) {
  QmoeMatrix q = q_;
  q.codes[3] = static_cast<uint16_t>(q.dict->size());
  expect_rejected(q, "outside the dictionary");
}

TEST_F(QmoeCorrupt, RowDecodesToTheWrongLength) {
  QmoeMatrix q = q_;
  q.codes.push_back(0);
  ++q.row_offset.back();
  expect_rejected(q, "decodes to");
  QmoeMatrix shorter = q_;
  shorter.row_offset[1] -= 1;
  expect_rejected(shorter, "decodes to");
}

TEST_F(QmoeCorrupt, OffsetsOutOfOrderOrBounds) {
  QmoeMatrix q = q_;
  std::swap(q.row_offset[2], q.row_offset[3]);
  if (q.row_offset[2] == q.row_offset[3]) q.row_offset[2] += 1;
  expect_rejected(q, "row offsets");
  QmoeMatrix past = q_;
  past.row_offset.back() += 5;
  expect_rejected(past, "row offsets");
  QmoeMatrix truncated = q_;
  truncated.codes.resize(truncated.codes.size() / 2);
  expect_rejected(truncated, "row offsets");
  QmoeMatrix few = q_;
  few.row_offset.pop_back();
  expect_rejected(few, "row offsets");
}

TEST_F(QmoeCorrupt, BadDictionaryEntries) {
  struct Case {
    const char* what;
    void (*edit)(QmoeDictionary&);
  };
  const Case cases[] = {
      {"length", [](QmoeDictionary& d) { d.len[4] = 33; }},
      {"length", [](QmoeDictionary& d) { d.len[4] = 0; }},
      {"length", [](QmoeDictionary& d) { d.len[4] = 200; }},  // found by qmoe_code_fuzz: no shift by 200
      {"both", [](QmoeDictionary& d) { d.pos[5] |= 1u; d.neg[5] |= 1u; }},
      {"past its length", [](QmoeDictionary& d) { d.pos[6] |= 1u << (d.len[6] == 32 ? 0 : d.len[6]); if (d.len[6] == 32) d.len[6] = 0; }},
      {"duplicate", [](QmoeDictionary& d) { d.len.push_back(d.len[3]); d.pos.push_back(d.pos[3]); d.neg.push_back(d.neg[3]); }},
      {"differ in size", [](QmoeDictionary& d) { d.pos.pop_back(); }},
  };
  for (const Case& c : cases) {
    QmoeDictionary d = dict_copy();
    c.edit(d);
    QmoeMatrix q = q_;
    q.dict = std::make_shared<const QmoeDictionary>(d);
    Status s = validate(q);
    EXPECT_FALSE(s) << c.what;
  }
  QmoeMatrix none = q_;
  none.dict = nullptr;
  expect_rejected(none, "no dictionary");
}

TEST_F(QmoeCorrupt, NonFiniteScale) {
  QmoeMatrix q = q_;
  q.scale[1] = 0x7c00;
  expect_rejected(q, "scale of row 1");
}

}  // namespace
}  // namespace lutq::format
