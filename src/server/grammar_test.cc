// GrammarMatcher's token mask: equal to trying every piece on a copy; random constrained
// generation always ends in JSON that validates against the schema (checked by a small
// validator of the subset, tests/support/schema_check); with LUTQ_MODEL_GGUF, the mask over SmolLM2's real
// 49k vocabulary, timed (structured_test.cc runs requests end to end).
#include "server/grammar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <algorithm>
#include <optional>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gen/tokenizer.h"
#include "io/gguf_file.h"
#include "model/model.h"
#include "server/api.h"
#include "server/json_schema.h"
#include "support/schema_check.h"

namespace lutq::server {
namespace {

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer"},
        "tags":{"type":"array","items":{"type":"string","enum":["red","green"]},"minItems":1,"maxItems":3},
        "score":{"type":["number","null"]},"ok":{"type":"boolean"}},"required":["name","age","tags"],
        "additionalProperties":false})",
    R"({"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
        "kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}}})",
    R"({"anyOf":[{"type":"string","minLength":2,"maxLength":4},{"const":{"a":[1,2]}},{"type":"null"}]})",
    R"({"type":"object","additionalProperties":{"type":"array","items":{"type":"integer"}}})",
    R"({"type":"array","items":{"type":"object","properties":{"x":{"type":"number"},"y":{"const":"n/a"}},
        "required":["y"]},"minItems":2,"maxItems":4})",
    R"({"type":"object","properties":{"any":true,"s":{"type":"string","format":"date"}},"required":["any","s"]})",
};

TokenTable small_vocab() {
  TokenTable t;
  for (const char* p : {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "a", "b", "x", "y", "v", "s", "1", "0", "12", "-",
                        ".", "e", "+", "true", "false", "null", "nu", "ll", "name", "age", "tags", "score", "ok", "kids",
                        "any", "red", "green", "n/a", "{\"", "\":", "\",", "\"}", "]}", "\\", "n", "u", "00e9", "\xc3",
                        "\xa9", "\xc3\xa9", "\xe2\x82\xac", "\"a\"", "  ", "1,", "},{"}) {
    t.pieces.emplace_back(p);
    t.end_of_generation.push_back(false);
  }
  for (char c = 'a'; c <= 'z'; ++c) {  // every key and enum value can be spelled, as with byte-level BPE
    t.pieces.emplace_back(1, c);
    t.end_of_generation.push_back(false);
  }
  for (const char* p : {"/", "2", "3", "4", "5", "6", "7", "8", "9", "A", "E", "-"}) {
    t.pieces.emplace_back(p);
    t.end_of_generation.push_back(false);
  }
  t.pieces.emplace_back("");  // a control token
  t.end_of_generation.push_back(false);
  t.pieces.emplace_back("");  // end of generation
  t.end_of_generation.push_back(true);
  return t;
}

// One constrained generation with random logits; "" when cut by the step bound.
std::string generate(GrammarMatcher m, const TokenTrie& trie, const TokenTable& table, std::mt19937& rng, bool check) {
  std::normal_distribution<float> noise(0.0f, 2.0f);
  std::string text;
  for (int step = 0; step < 3000; ++step) {
    std::vector<float> logits(table.pieces.size() + 2);  // a padded model vocabulary
    for (float& x : logits) x = noise(rng);
    if (check) {  // the trie walk agrees with trying every piece
      std::vector<float> copy = logits;
      m.mask(trie, copy);
      for (size_t id = 0; id < table.pieces.size(); ++id) {
        GrammarMatcher probe = m;
        const bool ok = table.end_of_generation[id] ? m.can_end() : !table.pieces[id].empty() && probe.feed(table.pieces[id]);
        EXPECT_EQ(ok, !std::isinf(copy[id])) << text << " + '" << table.pieces[id] << "'";
      }
    }
    m.mask(trie, logits);
    const size_t id = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_FALSE(std::isinf(logits[id]));
    EXPECT_LT(id, table.pieces.size());
    if (table.end_of_generation[id]) return text;
    EXPECT_TRUE(m.feed(table.pieces[id])) << text;
    text += table.pieces[id];
  }
  return "";
}

TEST(GrammarMask, RandomGenerationAlwaysValidates) {
  const TokenTable table = small_vocab();
  const TokenTrie trie(table);
  std::mt19937 rng(7);
  for (const char* source : kSchemas) {
    const OJson schema = OJson::parse(source);
    const CompiledGrammar c = compile_json_schema(schema);
    ASSERT_TRUE(c.grammar) << c.error;
    int finished = 0;
    for (int trial = 0; trial < 60; ++trial) {
      const std::string text = generate(GrammarMatcher(c.grammar), trie, table, rng, trial < 3);
      if (text.empty()) continue;
      ++finished;
      const OJson v = OJson::parse(text, nullptr, false);
      ASSERT_FALSE(v.is_discarded()) << source << "\n" << text;
      EXPECT_TRUE(testing::schema_valid(v, schema, schema)) << source << "\n" << text;
    }
    EXPECT_GT(finished, 10) << source;
  }
}

TEST(GrammarMask, DepthLimitForbidsDeeperNesting) {
  const CompiledGrammar c = compile_json_schema(OJson::parse(R"({"type":"array"})"));
  ASSERT_TRUE(c.grammar);
  GrammarMatcher m(c.grammar);
  int fed = 0;
  while (fed < 1000 && m.feed('[')) ++fed;
  EXPECT_LT(fed, 1000);  // the stack bound ends the nesting, not the text
  const TokenTable table = small_vocab();
  const TokenTrie trie(table);
  std::vector<float> logits(table.pieces.size(), 0.0f);
  m.mask(trie, logits);
  EXPECT_TRUE(std::isinf(logits[2]));   // "["
  EXPECT_FALSE(std::isinf(logits[3]));  // "]"
  for (int i = 0; i < fed; ++i) ASSERT_TRUE(m.feed(']'));
  EXPECT_TRUE(m.done());
}

std::optional<gen::Tokenizer> real_tokenizer(std::optional<io::GgufFile>& file, std::string& skip) {
  const char* env = std::getenv("LUTQ_MODEL_GGUF");
  if (env == nullptr || *env == '\0' || !std::filesystem::exists(env)) {
    skip = "LUTQ_MODEL_GGUF not set or missing (scripts/test.sh sets it when the model is fetched)";
    return std::nullopt;
  }
  Result<io::GgufFile> f = io::GgufFile::open(env);
  if (!f) return skip = f.status().message(), std::nullopt;
  file.emplace(std::move(*f));
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(*file);
  if (!tok) return skip = tok.status().message(), std::nullopt;
  return std::move(*tok);
}

// The per-token mask cost on the real vocabulary, printed (docs/server.md quotes it).
TEST(GrammarMask, RealVocabularyCost) {
  std::optional<io::GgufFile> file;
  std::string skip;
  std::optional<gen::Tokenizer> tok = real_tokenizer(file, skip);
  if (!tok) GTEST_SKIP() << skip;
  TokenTable table;
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    table.pieces.push_back(tok->token_to_piece(id));
    table.end_of_generation.push_back(tok->is_eog(id));
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  const TokenTrie trie(table);
  const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const OJson schema = OJson::parse(kSchemas[0]);
  const CompiledGrammar c = compile_json_schema(schema);
  ASSERT_TRUE(c.grammar);
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 2.0f);
  std::vector<double> first, all;
  for (int trial = 0; trial < 5; ++trial) {
    GrammarMatcher m(c.grammar);
    std::string text;
    for (int step = 0; step < 300; ++step) {
      std::vector<float> logits(table.pieces.size());
      for (float& x : logits) x = noise(rng);
      const Clock::time_point a = Clock::now();
      m.mask(trie, logits);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
      (trial == 0 ? first : all).push_back(ms);
      const size_t id = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (table.end_of_generation[id]) break;
      ASSERT_TRUE(m.feed(table.pieces[id]));
      text += table.pieces[id];
    }
    if (m.can_end()) {
      EXPECT_TRUE(testing::schema_valid(OJson::parse(text), schema, schema)) << text;
    }
  }
  const auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); };
  std::sort(all.begin(), all.end());
  std::printf("[ mask    ] vocab %zu: trie %.1f ms; first generation %.3f ms/token (max %.1f), "
              "later ones (cached states) %.3f ms/token (p50 %.3f, max %.2f) over %zu tokens\n",
              table.pieces.size(), build_ms, mean(first), *std::max_element(first.begin(), first.end()), mean(all),
              all[all.size() / 2], all.back(), all.size());
}

}  // namespace
}  // namespace lutq::server
