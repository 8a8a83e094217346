// SchemaCompiler + GrammarMatcher on strings: for every supported keyword, texts that validate
// are accepted (and each of their prefixes is alive), texts that do not are refused; schemas
// outside the subset are errors that name the keyword.
#include "server/json_schema.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lutq::server {
namespace {

std::shared_ptr<const Grammar> compile(const std::string& schema) {
  CompiledGrammar c = compile_json_schema(OJson::parse(schema));
  EXPECT_TRUE(c.grammar) << schema << ": " << c.error;
  return c.grammar;
}

std::string error_of(const std::string& schema) {
  CompiledGrammar c = compile_json_schema(OJson::parse(schema));
  EXPECT_FALSE(c.grammar) << schema;
  return c.error;
}

// The whole text is a sentence; every prefix is alive (feeding byte by byte).
bool accepts(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  for (const char c : text) {
    if (!m.feed(c)) return false;
  }
  return m.can_end();
}

void expect_all(const std::string& schema, const std::vector<std::string>& good, const std::vector<std::string>& bad) {
  const auto g = compile(schema);
  if (!g) return;
  for (const std::string& t : good) EXPECT_TRUE(accepts(g, t)) << schema << " should accept " << t;
  for (const std::string& t : bad) EXPECT_FALSE(accepts(g, t)) << schema << " should refuse " << t;
}

TEST(JsonSchema, Scalars) {
  expect_all(R"({"type":"string"})", {R"("")", R"("abc")", R"("a\"b\\c\n\u00e9")", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""},
             {"abc", R"("a)", "\"\x01\"", R"("\x")", R"("\ud800")", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "1"});
  expect_all(R"({"type":"number"})", {"0", "-1", "3.25", "1e5", "-0.5E-12", "123456789012345"},
             {"01", "1.", ".5", "+1", "1e", "1234567890123456", "\"1\"", "1e100"});
  expect_all(R"({"type":"integer"})", {"0", "-7", "42"}, {"1.0", "1e3", "-", "007"});
  expect_all(R"({"type":"boolean"})", {"true", "false"}, {"True", "1", "null"});
  expect_all(R"({"type":"null"})", {"null"}, {"nul", "\"null\"", "false"});
  expect_all(R"({"type":["string","null"]})", {"null", R"("x")"}, {"1"});
  expect_all(R"(true)", {"1", R"({"a":[1,{"b":null}]})", R"("s")"}, {"{", "[1,]"});
  expect_all(R"({"description":"anything","format":"date-time"})", {"[]", "{}"}, {"}"});
}

TEST(JsonSchema, StringLength) {
  expect_all(R"({"type":"string","minLength":2,"maxLength":3})", {R"("ab")", R"("abc")", "\"\xc3\xa9\xc3\xa9\"", R"("\n\t")"},
             {R"("a")", R"("abcd")", R"("")"});
  // format is an annotation: ignored, any string is generated.
  expect_all(R"({"type":"string","format":"email"})", {R"("not an email")"}, {"1"});
}

TEST(JsonSchema, EnumAndConst) {
  expect_all(R"({"enum":["red","green",3,null,{"a":1}]})", {R"("red")", R"("green")", "3", "null", R"({"a":1})"},
             {R"("blue")", R"("re")", "4", R"({"a":2})", R"( "red")"});
  expect_all(R"({"const":"only"})", {R"("only")"}, {R"("Only")"});
  expect_all(R"({"type":"string","enum":["a",1]})", {R"("a")"}, {"1"});  // 1 is not a string
  expect_all(R"({"type":"string","const":"x\"y"})", {R"("x\"y")"}, {R"("x"y")"});
}

TEST(JsonSchema, Objects) {
  const std::string person = R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
      "nick":{"type":"string"}},"required":["name","age"],"additionalProperties":false})";
  expect_all(person,
             {R"({"name":"Ann","age":30})", R"({"name":"Ann","age":30,"nick":"A"})", R"({ "name" : "Ann", "age": 3 })",
              "{\n  \"name\": \"Ann\",\n  \"age\": 3\n}"},
             {R"({"name":"Ann"})", R"({"age":30,"name":"Ann"})", R"({"name":"Ann","age":30,"x":1})", R"({})",
              R"({"name":"Ann","age":"30"})", R"({"name":"Ann","age":30,})", "{     \"name\":\"a\",\"age\":1}"});
  expect_all(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}})",
             {"{}", R"({"a":1})", R"({"b":2})", R"({"a":1,"b":2})"}, {R"({,"b":2})", R"({"a":1,})", R"({"b":2,"a":1})"});
  expect_all(R"({"type":"object","additionalProperties":false})", {"{}", "{ }"}, {R"({"a":1})"});
  expect_all(R"({"type":"object"})", {"{}", R"({"k":[1,2],"j":{"x":null}})"}, {"[]", R"({"k"})"});
  expect_all(R"({"type":"object","additionalProperties":{"type":"integer"}})", {"{}", R"({"x":1,"y":-2})"},
             {R"({"x":"1"})"});
  expect_all(R"({"type":"object","properties":{"o":{"type":"object","properties":{"p":{"type":"boolean"}},
      "required":["p"]}},"required":["o"]})",
             {R"({"o":{"p":true}})"}, {R"({"o":{}})", R"({"o":{"p":1}})"});
}

TEST(JsonSchema, Arrays) {
  expect_all(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})",
             {"[1]", "[1,2]", "[1, 2, 3]", "[ 1 ]"}, {"[]", "[1,2,3,4]", "[1,]", R"(["1"])"});
  expect_all(R"({"type":"array","items":{"type":"string"}})", {"[]", R"(["a","b","c","d","e"])"}, {"[1]"});
  expect_all(R"({"type":"array","minItems":2})", {"[1,\"x\"]", "[{},[]]"}, {"[1]"});
  expect_all(R"({"type":"array","items":false})", {"[]"}, {"[1]"});
}

TEST(JsonSchema, AnyOfAllOfAndRefs) {
  expect_all(R"({"anyOf":[{"type":"integer"},{"type":"string","enum":["n/a"]}]})", {"5", R"("n/a")"}, {R"("x")", "1.5"});
  expect_all(R"({"allOf":[{"type":"boolean"}]})", {"true"}, {"1"});
  const std::string defs = R"({"type":"object","properties":{"home":{"$ref":"#/$defs/addr"},
      "work":{"$ref":"#/definitions/addr"}},"required":["home"],
      "$defs":{"addr":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
      "definitions":{"addr":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})";
  expect_all(defs, {R"({"home":{"city":"Oslo"}})", R"({"home":{"city":"A"},"work":{"city":"B"}})"},
             {R"({"home":{}})", R"({"work":{"city":"B"}})"});
  // Recursive: a tree of nodes with optional children.
  const std::string tree = R"({"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{
      "v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}}})";
  expect_all(tree, {R"({"v":1})", R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]})"}, {R"({"v":1,"kids":[{}]})"});
}

TEST(JsonSchema, ErrorsNameTheKeyword) {
  EXPECT_NE(error_of(R"({"type":"string","pattern":"^a"})").find("'pattern'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"integer","minimum":0})").find("'minimum'"), std::string::npos);
  EXPECT_NE(error_of(R"({"oneOf":[{"type":"integer"}]})").find("'oneOf'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","uniqueItems":true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(error_of(R"({"allOf":[{"type":"integer"},{"type":"number"}]})").find("allOf"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref":"#/$defs/missing"})").find("does not resolve"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref":"http://x/y.json"})").find("local"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"date"})").find("unknown type"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"object","properties":{"a":{}},"required":["b"]})").find("'b'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","maxItems":100000})").find("maxItems"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","minItems":3,"maxItems":2})").find("minimum"), std::string::npos);
  EXPECT_NE(error_of(R"({"enum":[]})").find("enum"), std::string::npos);
  // Found by the fuzzer: a constant that another keyword rules out used to compile to that constant.
  EXPECT_NE(error_of(R"({"const":"string","maxLength":0})").find("'maxLength'"), std::string::npos);
  EXPECT_NE(error_of(R"({"enum":[[1,2]],"minItems":3})").find("'minItems'"), std::string::npos);
  EXPECT_NE(error_of("false").find("false"), std::string::npos);
  EXPECT_NE(error_of("3").find("schema"), std::string::npos);
  // A required self-reference has no finite value.
  EXPECT_NE(error_of(R"({"type":"object","properties":{"me":{"$ref":"#"}},"required":["me"]})").find("finite"),
            std::string::npos);
  // Left recursion compiles but is not productive.
  EXPECT_FALSE(error_of(R"({"anyOf":[{"$ref":"#"}]})").empty());
}

TEST(JsonSchema, DeepNestingIsAnErrorNotACrash) {
  std::string s = R"({"type":"integer"})";
  for (int i = 0; i < 200; ++i) s = R"({"type":"array","items":)" + s + "}";
  EXPECT_NE(error_of(s).find("deeper"), std::string::npos);
  std::string refs = R"({"$ref":"#/$defs/d0","$defs":{)";
  for (int i = 0; i < 100; ++i) refs += "\"d" + std::to_string(i) + R"(":{"$ref":"#/$defs/d)" + std::to_string(i + 1) + "\"},";
  refs += R"("d100":{"type":"null"}}})";
  EXPECT_NE(error_of(refs).find("deeper"), std::string::npos);
}

TEST(JsonSchema, NothingFollowsTheValue) {
  const auto g = compile(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})");
  GrammarMatcher m(g);
  EXPECT_TRUE(m.feed(std::string(R"({"a":12)")));
  EXPECT_FALSE(m.done());
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.feed('}'));
  EXPECT_TRUE(m.done());
  EXPECT_FALSE(m.feed(' '));
  EXPECT_FALSE(m.feed(std::string("}x")));  // refused as a whole: the state is unchanged
  EXPECT_TRUE(m.done());
}

}  // namespace
}  // namespace lutq::server
