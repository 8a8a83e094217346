// A JSON Schema subset compiled to a Grammar (grammar.h) whose sentences are JSON texts valid
// against the schema: response_format {"type": "json_schema"} and the arguments of tool calls.
//
// Supported (docs/server.md "Structured output"):
//  * type: object, array, string, number, integer, boolean, null, or a list of them;
//  * object: properties (written in the schema's order), required, additionalProperties
//    (false, true, or a schema for an object without properties: a map); undeclared properties
//    are never generated, which is valid whatever additionalProperties says;
//  * array: items, minItems, maxItems; string: minLength, maxLength;
//  * enum, const (any JSON values, written as nlohmann dumps them); anyOf; allOf of one schema;
//  * $ref to "#", "#/$defs/..", "#/definitions/.." or any other local JSON pointer; recursion
//    works (output depth is bounded by the matcher); a schema that admits no finite value
//    (a required self-reference) is an error;
//  * true / {} (any JSON value).
// Ignored: format, title, description, default, examples and other annotations, and keywords
// this subset does not know. Refused with an error naming the keyword: assertions it cannot
// enforce (pattern, minimum, maximum, multipleOf, oneOf, not, if, prefixItems, uniqueItems, ...).
// Numbers are limited as in JsonAcceptor (15 integer and 15 fraction digits, a 2-digit exponent);
// at most kMaxSpaces whitespace bytes between tokens; no whitespace before or after the value.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "server/grammar.h"

namespace lutq::server {

using OJson = nlohmann::ordered_json;

class SchemaCompiler {
 public:
  static constexpr int kMaxDepth = 24;        // nested sub-schemas
  static constexpr int64_t kMaxCount = 1000;  // minItems, maxItems, minLength, maxLength
  static constexpr int kMaxSpaces = 4;

  explicit SchemaCompiler(Grammar& grammar) : g_(grammar) {}

  // The rule of a JSON value valid against `schema`, whose $refs resolve in `root`; nullopt
  // with error() set when the schema is outside the subset or too large.
  std::optional<uint32_t> compile(const OJson& schema, const OJson& root);
  const std::string& error() const { return error_; }
  uint32_t ws();  // 0 to kMaxSpaces whitespace bytes

 private:
  std::optional<uint32_t> value(const OJson& s, int depth);
  std::optional<uint32_t> by_type(const OJson& s, const std::string& type, int depth);
  std::optional<uint32_t> ref(const std::string& target, int depth);
  std::optional<uint32_t> literals(const OJson& s, const OJson& values);
  std::optional<uint32_t> object(const OJson& s, int depth);
  std::optional<uint32_t> properties(const OJson& s, int depth);
  std::optional<uint32_t> array(const OJson& s, int depth);
  std::optional<uint32_t> string(const OJson& s);
  std::optional<uint32_t> counted(uint32_t unit, uint32_t sep_unit, int64_t lo, int64_t hi);
  std::optional<int64_t> count(const OJson& s, const char* key, int64_t fallback);
  bool check_keywords(const OJson& s);
  bool fail(std::string message);

  uint32_t any_value();
  uint32_t str_char();
  uint32_t any_string();
  uint32_t number(bool integer);
  uint32_t digits(int n);  // 0 to n digits
  uint32_t rule(std::initializer_list<std::vector<GElem>> alts);

  Grammar& g_;
  const OJson* root_ = nullptr;
  std::unordered_map<std::string, uint32_t> refs_;
  std::unordered_map<std::string, uint32_t> shared_;  // ws, string, number, ...
  std::string error_;
};

struct CompiledGrammar {
  std::shared_ptr<const Grammar> grammar;  // null on error
  std::string error;
};

// The grammar of the JSON texts valid against `schema` (the value alone, no surrounding space).
CompiledGrammar compile_json_schema(const OJson& schema);

}  // namespace lutq::server
