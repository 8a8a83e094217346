// libFuzzer target for the JSON Schema compiler and the grammar matcher (src/server/json_schema.cc,
// grammar.cc): input = schema text, a NUL byte, then choices. A schema that does not parse is
// skipped; compiling must never crash (deep nesting, $ref cycles and huge counts are errors) and
// an error must say why. A compiled schema then generates text: each choice byte picks one of the
// bytes the mask allows (a vocabulary of the 256 single bytes plus end of generation); whatever
// ends in an accepting state must parse as JSON and validate against the schema
// (tests/support/schema_check, a separate reading of the keywords).
//
//   bash scripts/fuzz.sh   (or: build-fuzz/json_schema_fuzz -dict=fuzz/json_schema.dict fuzz/corpus/json_schema)
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/grammar.h"
#include "server/json_schema.h"
#include "support/schema_check.h"

namespace {

void require(bool cond) {
  if (!cond) std::abort();
}

const lutq::server::TokenTable& byte_table() {
  static const lutq::server::TokenTable table = [] {
    lutq::server::TokenTable t;
    for (int b = 0; b < 256; ++b) {
      t.pieces.emplace_back(1, static_cast<char>(b));
      t.end_of_generation.push_back(false);
    }
    t.pieces.emplace_back();
    t.end_of_generation.push_back(true);
    return t;
  }();
  return table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using lutq::server::OJson;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t cut = in.find('\0');
  const std::string_view schema_text = in.substr(0, cut);
  // At most 48 generation steps: enough for nested values, and short enough that 10^6 inputs fit
  // in a CI run (the compile and the first steps are where the crashes would be).
  const std::string_view choices =
      cut == std::string_view::npos ? std::string_view() : in.substr(cut + 1, 48);
  const OJson schema = OJson::parse(schema_text.begin(), schema_text.end(), nullptr, false);
  if (schema.is_discarded()) return 0;
  const lutq::server::CompiledGrammar c = lutq::server::compile_json_schema(schema);
  if (!c.grammar) {
    require(!c.error.empty());
    return 0;
  }
  static const lutq::server::TokenTrie trie(byte_table());
  lutq::server::GrammarMatcher m(c.grammar);
  std::string text;
  std::vector<float> logits(byte_table().pieces.size());
  std::vector<size_t> open;
  for (const char choice : choices) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    m.mask(trie, logits);
    open.clear();
    for (size_t id = 0; id < logits.size(); ++id) {
      if (!std::isinf(logits[id])) open.push_back(id);
    }
    require(!open.empty());
    const size_t id = open[static_cast<unsigned char>(choice) % open.size()];
    if (id == 256) break;  // end of generation
    require(m.feed(static_cast<char>(id)));
    text += static_cast<char>(id);
  }
  if (m.can_end()) {
    const OJson v = OJson::parse(text, nullptr, false);
    require(!v.is_discarded());
    require(lutq::testing::schema_valid(v, schema, schema));
  }
  return 0;
}
