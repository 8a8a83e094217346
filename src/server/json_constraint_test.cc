// JsonAcceptor on its own (valid and invalid texts, every prefix of a valid text accepted) and
// the logit mask over a small vocabulary (every byte a valid text may need has a token, as in
// byte-level vocabularies): random sampling under the mask always yields a JSON object that
// nlohmann parses.
#include "server/json_constraint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace lutq::server {
namespace {

bool accepts(std::string_view text, bool* done = nullptr) {
  JsonAcceptor a;
  const bool ok = a.feed(text);
  if (done != nullptr) *done = ok && a.done();
  return ok;
}

TEST(JsonAcceptor, AcceptsObjectsAndEveryPrefix) {
  const std::vector<std::string> good = {
      R"({})",
      R"({"a":1})",
      R"({ "a" : [1, -2.5e+3, 0, 0.25, true, false, null, "x\"\\\u00e9\n"], "b": {"c": []}})",
      "{\"k\":\"caf\xC3\xA9\",\"n\":-0.0E-1}",
      R"({"e":"\ud83d\ude00 \u00E9"})",
      "{\"u\":\"\xF0\x9F\x98\x80\xE2\x82\xAC\"}",
  };
  for (const std::string& text : good) {
    bool done = false;
    EXPECT_TRUE(accepts(text, &done)) << text;
    EXPECT_TRUE(done) << text;
    EXPECT_TRUE(nlohmann::json::accept(text)) << text;
    for (size_t n = 0; n < text.size(); ++n) {
      EXPECT_TRUE(accepts(text.substr(0, n), &done)) << text.substr(0, n);
      EXPECT_FALSE(done) << text.substr(0, n);
    }
  }
}

TEST(JsonAcceptor, RejectsWhatIsNotAnObject) {
  for (const char* text : {"[]", "1", "\"s\"", "{]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1.}",
                           "{\"a\":-}", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}",
                           "{} ", "{}{}", "{\"a\":1]", "{'a':1}", "{\"a\":1e}", "{a:1}",
                           "{\"a\":\"\\ud83d\"}", "{\"a\":\"\\ude00\"}", "{\"a\":\"\\ud83d\\u0041\"}",
                           "{\"a\":\"\xff\"}", "{\"a\":\"\xC3\"}", "{\"a\":\"\xC0\xAF\"}", "{\"a\":\"\xED\xA0\x80\"}"}) {
    bool done = false;
    (void)accepts(text, &done);
    EXPECT_FALSE(done) << text;
  }
  // Bounded whitespace, depth and number digits (every accepted number fits a double).
  EXPECT_FALSE(accepts("{\"a\":1234567890123456"));
  EXPECT_FALSE(accepts("{\"a\":1e100"));
  EXPECT_TRUE(accepts("{\"a\":-123456789012345.123456789012345e-99}"));
  EXPECT_FALSE(accepts("{      \"a\":1}"));
  EXPECT_FALSE(accepts("{\"a\":" + std::string(40, '[')));
}

TEST(JsonMask, SampledTextIsAlwaysAJsonObject) {
  TokenTable table;
  for (const char* piece : {"{", "}", "[", "]", "\"", ":", ",", " ", "a", "b\"", "1", "0", ".", "-", "e", "true",
                            "nul", "l", "u", "\\", "n", "x}", "\"}", "{\"", "\":", "\n", "}\n"}) {
    table.pieces.push_back(piece);
    table.end_of_generation.push_back(false);
  }
  table.pieces.push_back("");  // a control token: never allowed inside
  table.end_of_generation.push_back(false);
  table.pieces.push_back("");  // end of generation
  table.end_of_generation.push_back(true);
  std::mt19937 rng(11);
  int finished = 0;
  for (int trial = 0; trial < 200; ++trial) {
    JsonAcceptor state;
    std::string text;
    bool ended = false;
    for (int step = 0; step < 400 && !ended; ++step) {
      std::vector<float> logits(table.pieces.size() + 3, 0.0f);  // a padded model vocabulary
      mask_json_logits(state, table, logits);
      std::vector<size_t> open;
      for (size_t id = 0; id < logits.size(); ++id) {
        if (!std::isinf(logits[id])) open.push_back(id);
      }
      ASSERT_FALSE(open.empty());
      const size_t id = open[std::uniform_int_distribution<size_t>(0, open.size() - 1)(rng)];
      ASSERT_LT(id, table.pieces.size());
      if (table.end_of_generation[id]) {
        ended = true;
        break;
      }
      ASSERT_TRUE(state.feed(table.pieces[id])) << text << " + " << table.pieces[id];
      text += table.pieces[id];
    }
    if (!ended) continue;  // cut by the step bound, like max_tokens
    ++finished;
    EXPECT_TRUE(state.done());
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(text)) << text;
    EXPECT_TRUE(j.is_object()) << text;
  }
  EXPECT_GT(finished, 0);
}

}  // namespace
}  // namespace lutq::server
