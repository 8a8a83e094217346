// parse_request on valid requests and on a catalogue of bad ones: each bad input must give a
// 400 with the OpenAI error fields filled (and never throw).
#include "server/request.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/api_error.h"
#include <nlohmann/json.hpp>

namespace lutq::server {
namespace {

ParsedRequest chat(const std::string& body) { return parse_request(Endpoint::kChat, body, RequestLimits{}); }
ParsedRequest completion(const std::string& body) {
  return parse_request(Endpoint::kCompletion, body, RequestLimits{});
}

TEST(ParseRequest, ChatWithEveryField) {
  const ParsedRequest p = chat(R"({"model":"m","messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
      {"role":"assistant","content":null},{"role":"developer","content":"x"}],
      "max_tokens":12,"temperature":0,"top_p":0.5,"top_k":3,"seed":42,"stop":["a","bc"],
      "stream":true,"stream_options":{"include_usage":true},"n":1,"logprobs":false,
      "presence_penalty":0,"unknown_field":{"ignored":[1,2]},"user":"u1"})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  const CompletionRequest& r = *p.request;
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].role, "system");
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.top_k, 3);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ParseRequest, CompletionDefaultsAndNulls) {
  ParsedRequest p = completion(R"({"prompt":"hello","max_tokens":null,"stop":null,"seed":null,"temperature":null})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_EQ(p.request->prompt, "hello");
  EXPECT_FALSE(p.request->max_tokens);
  EXPECT_FALSE(p.request->seed);
  EXPECT_EQ(p.request->temperature, 1.0f);
  EXPECT_FALSE(p.request->stream);
  p = completion(R"({"prompt":["one"],"stop":"\n","seed":-1,"max_completion_tokens":"ignored here"})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_EQ(p.request->prompt, "one");
  EXPECT_EQ(p.request->stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(p.request->seed, ~uint64_t{0});
  // Chat takes the newer max_completion_tokens over max_tokens.
  p = chat(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":7})");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.request->max_tokens, 7);
}

struct BadCase {
  Endpoint endpoint;
  std::string body;
  std::string param;     // expected error param ("" = null)
  std::string contains;  // expected substring of the message
};

void expect_bad(const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    ParsedRequest p;
    ASSERT_NO_THROW(p = parse_request(c.endpoint, c.body, RequestLimits{})) << c.body;
    ASSERT_FALSE(p.ok()) << c.body;
    EXPECT_EQ(p.error.http_status, 400) << c.body;
    EXPECT_EQ(p.error.type, "invalid_request_error") << c.body;
    EXPECT_EQ(p.error.param, c.param) << c.body;
    EXPECT_NE(p.error.message.find(c.contains), std::string::npos) << c.body << " -> " << p.error.message;
    // The rendered body is valid JSON of the OpenAI shape.
    const auto j = nlohmann::json::parse(error_body(p.error));
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("param") && j["error"].contains("code"));
  }
}

TEST(ParseRequest, RejectsBadInputWithOpenAiErrors) {
  const std::string u = R"("messages":[{"role":"user","content":"x"}])";
  const std::vector<BadCase> cases = {
      {Endpoint::kChat, "", "", "not valid JSON"},
      {Endpoint::kChat, "{", "", "not valid JSON"},
      {Endpoint::kChat, "{\"messages\":[]}}", "", "not valid JSON"},
      {Endpoint::kChat, "[1,2]", "", "must be a JSON object"},
      {Endpoint::kChat, "1e999", "", "not valid JSON"},  // found by fuzz/request_fuzz.cc: out_of_range
      {Endpoint::kChat, "{\"messages\":[],\"max_tokens\":-1e400}", "", "not valid JSON"},
      {Endpoint::kChat, "\"text\"", "", "must be a JSON object"},
      {Endpoint::kChat, "null", "", "must be a JSON object"},
      {Endpoint::kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", "", "not valid JSON"},
      {Endpoint::kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}", "", "not valid JSON"},
      {Endpoint::kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}", "", "not valid JSON"},
      {Endpoint::kChat, std::string(100, '[') + std::string(100, ']'), "", "nests deeper"},
      {Endpoint::kChat, "{}", "messages", "required"},
      {Endpoint::kChat, R"({"messages":"hi"})", "messages", "must be an array"},
      {Endpoint::kChat, R"({"messages":[]})", "messages", "must not be empty"},
      {Endpoint::kChat, R"({"messages":[1]})", "messages[0]", "must be an object"},
      {Endpoint::kChat, R"({"messages":[{"content":"x"}]})", "messages[0].role", "required"},
      {Endpoint::kChat, R"({"messages":[{"role":5,"content":"x"}]})", "messages[0].role", "must be a string"},
      {Endpoint::kChat, R"({"messages":[{"role":"function","content":"x"}]})", "messages[0].role", "not supported"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":7}]})", "messages[0].content", "must be a string"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content", "not supported"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":[{"type":"text","text":1}]}]})", "messages[0].content.text", "must be a string"},
      {Endpoint::kChat, "{" + u + R"(,"model":3})", "model", "must be a string"},
      {Endpoint::kChat, "{" + u + R"(,"temperature":"hot"})", "temperature", "must be a number"},
      {Endpoint::kChat, "{" + u + R"(,"temperature":2.5})", "temperature", "between"},
      {Endpoint::kChat, "{" + u + R"(,"temperature":-0.1})", "temperature", "between"},
      {Endpoint::kChat, "{" + u + R"(,"top_p":1.5})", "top_p", "between"},
      {Endpoint::kChat, "{" + u + R"(,"top_p":true})", "top_p", "must be a number"},
      {Endpoint::kChat, "{" + u + R"(,"top_k":-1})", "top_k", "between"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":0})", "max_tokens", "between"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":-5})", "max_tokens", "between"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":1e12})", "max_tokens", "must be an integer"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":99999999})", "max_tokens", "between"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":18446744073709551615})", "max_tokens", "between"},
      {Endpoint::kChat, "{" + u + R"(,"max_tokens":2.0})", "max_tokens", "must be an integer"},
      {Endpoint::kChat, "{" + u + R"(,"max_completion_tokens":"9"})", "max_completion_tokens", "must be an integer"},
      {Endpoint::kChat, "{" + u + R"(,"seed":1.5})", "seed", "must be an integer"},
      {Endpoint::kChat, "{" + u + R"(,"stream":"yes"})", "stream", "must be a boolean"},
      {Endpoint::kChat, "{" + u + R"(,"stream_options":[]})", "stream_options", "must be an object"},
      {Endpoint::kChat, "{" + u + R"(,"stream_options":{"include_usage":1}})", "include_usage", "must be a boolean"},
      {Endpoint::kChat, "{" + u + R"(,"stop":5})", "stop", "string or an array"},
      {Endpoint::kChat, "{" + u + R"(,"stop":["a",1]})", "stop", "string or an array"},
      {Endpoint::kChat, "{" + u + R"(,"stop":["a","b","c","d","e"]})", "stop", "at most 4"},
      {Endpoint::kChat, "{" + u + R"(,"stop":""})", "stop", "must not be empty"},
      {Endpoint::kChat, "{" + u + ",\"stop\":\"" + std::string(600, 'x') + "\"}", "stop", "at most 512 bytes"},
      {Endpoint::kChat, "{" + u + R"(,"n":2})", "n", "only n = 1"},
      {Endpoint::kChat, "{" + u + R"(,"n":"1"})", "n", "must be an integer"},
      {Endpoint::kChat, "{" + u + R"(,"logprobs":true})", "logprobs", "not supported"},
      {Endpoint::kChat, "{" + u + R"(,"logit_bias":{"5":1}})", "logit_bias", "not supported"},
      {Endpoint::kChat, "{" + u + R"(,"frequency_penalty":0.5})", "frequency_penalty", "not supported"},
      {Endpoint::kChat, "{" + u + R"(,"presence_penalty":9})", "presence_penalty", "between"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"xml"}})", "response_format", "must be"},
      {Endpoint::kCompletion, "{}", "prompt", "required"},
      {Endpoint::kCompletion, R"({"prompt":5})", "prompt", "must be a string"},
      {Endpoint::kCompletion, R"({"prompt":["a","b"]})", "prompt", "more than one prompt"},
      {Endpoint::kCompletion, R"({"prompt":[1,2,3]})", "prompt", "token ids"},
      {Endpoint::kCompletion, R"({"prompt":"x","echo":true})", "echo", "not supported"},
      {Endpoint::kCompletion, R"({"prompt":"x","best_of":3})", "best_of", "best_of = 1"},
      {Endpoint::kCompletion, R"({"prompt":"x","suffix":"end"})", "suffix", "not supported"},
  };
  expect_bad(cases);
}

TEST(ParseRequest, RejectsBadToolsAndSchemas) {
  const std::string u = R"("messages":[{"role":"user","content":"x"}])";
  const std::string f = R"("tools":[{"type":"function","function":{"name":"f"}}])";
  const std::vector<BadCase> cases = {
      {Endpoint::kChat, R"({"messages":[{"role":"tool","content":"x"}]})", "messages[0].tool_call_id", "required"},
      {Endpoint::kChat, R"({"messages":[{"role":"tool","content":"x","tool_call_id":1}]})", "messages[0].tool_call_id", "must be a string"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})", "messages[0].tool_calls", "assistant messages only"},
      {Endpoint::kChat, R"({"messages":[{"role":"assistant","tool_calls":{}}]})", "messages[0].tool_calls", "must be an array"},
      {Endpoint::kChat, R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c"}]}]})", "messages[0].tool_calls[0].function", "must be an object"},
      {Endpoint::kChat, R"({"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":3}}]}]})", "messages[0].tool_calls[0].function.arguments", "must be a string"},
      {Endpoint::kChat, "{" + u + R"(,"tools":[{"type":"function"}]})", "tools[0].function", "must be an object"},
      {Endpoint::kChat, "{" + u + R"(,"tools":[{"type":"retrieval"}]})", "tools[0].type", "must be \"function\""},
      {Endpoint::kChat, "{" + u + R"(,"tools":[{"type":"function","function":{"name":"a b"}}]})", "tools[0].function.name", "letters"},
      {Endpoint::kChat, "{" + u + R"(,"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]})", "tools[1].function.name", "two tools"},
      {Endpoint::kChat, "{" + u + R"(,"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]})", "tools[0].function.parameters", "must be an object"},
      {Endpoint::kChat, "{" + u + R"(,"tools":{},"tool_choice":"none"})", "tools", "must be an array"},
      {Endpoint::kChat, "{" + u + "," + f + R"(,"tool_choice":"always"})", "tool_choice", "must be"},
      {Endpoint::kChat, "{" + u + "," + f + R"(,"tool_choice":{"type":"function","function":{"name":"g"}}})", "tool_choice", "'g'"},
      {Endpoint::kChat, "{" + u + R"(,"tool_choice":"required"})", "tool_choice", "needs 'tools'"},
      {Endpoint::kChat, "{" + u + "," + f + R"(,"tool_choice":"required","response_format":{"type":"json_object"}})", "tool_choice", "cannot be combined"},
      {Endpoint::kChat, "{" + u + R"(,"tool_choice":"required","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string","pattern":"a+"}}}}}]})", "tools", "'pattern'"},
      {Endpoint::kChat, "{" + u + R"(,"functions":[{"name":"f"}]})", "functions", "use 'tools'"},
      {Endpoint::kCompletion, R"({"prompt":"x",)" + f + "}", "tools", "chat/completions only"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema"}})", "response_format.json_schema", "required"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":[]}})", "response_format.json_schema", "must be an object"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":{"name":1,"schema":{}}}})", "response_format.json_schema.name", "must be a string"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":{"strict":"yes","schema":{}}}})", "response_format.json_schema.strict", "must be a boolean"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"string","pattern":"x"}}}})", "response_format.json_schema.schema", "'pattern'"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"oneOf":[]}}}})", "response_format.json_schema.schema", "'oneOf'"},
      {Endpoint::kChat, "{" + u + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"$ref":"#/$defs/x"}}}})", "response_format.json_schema.schema", "does not resolve"},
  };
  expect_bad(cases);
}

TEST(ParseRequest, JsonObjectResponseFormat) {
  const ParsedRequest p = chat(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_TRUE(p.request->json_object);
  EXPECT_FALSE(chat(R"({"messages":[{"role":"user","content":"x"}]})").request->json_object);
}

TEST(ParseRequest, ToolsWithToolChoiceNone) {
  const ParsedRequest p = chat(R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"none",
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]})");
  EXPECT_TRUE(p.ok()) << p.error.message;
}

TEST(ParseRequest, JsonSchemaResponseFormat) {
  const ParsedRequest p = chat(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema",
      "json_schema":{"name":"person","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"}},
      "required":["name"],"additionalProperties":false}}}})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  ASSERT_TRUE(p.request->grammar);
  EXPECT_FALSE(p.request->json_object);
  GrammarMatcher m(p.request->grammar);
  EXPECT_TRUE(m.feed(std::string(R"({"name":"x"})")) && m.done());
  // No schema: any JSON object.
  const ParsedRequest q = chat(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema",
      "json_schema":{"name":"any"}}})");
  ASSERT_TRUE(q.ok()) << q.error.message;
  EXPECT_TRUE(q.request->json_object);
}

TEST(ParseRequest, ToolsAndToolChoice) {
  const std::string tools = R"("tools":[{"type":"function","function":{"name":"get_weather","description":"d",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
      {"type":"function","function":{"name":"now"}}])";
  const std::string u = R"({"messages":[{"role":"user","content":"x"}],)";
  const ParsedRequest automatic = chat(u + tools + "}");
  ASSERT_TRUE(automatic.ok()) << automatic.error.message;
  EXPECT_EQ(automatic.request->tool_choice, ToolChoice::kAuto);
  ASSERT_EQ(automatic.request->tools.size(), 2u);
  EXPECT_EQ(automatic.request->tools[0].name, "get_weather");
  EXPECT_FALSE(automatic.request->grammar);  // auto: parsed, not constrained
  const ParsedRequest none = chat(u + tools + R"(,"tool_choice":"none"})");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none.request->tools.empty());
  const ParsedRequest required = chat(u + tools + R"(,"tool_choice":"required"})");
  ASSERT_TRUE(required.ok()) << required.error.message;
  ASSERT_TRUE(required.request->grammar);
  GrammarMatcher m(required.request->grammar);
  EXPECT_TRUE(m.feed(std::string("<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>")));
  EXPECT_TRUE(m.done());
  const ParsedRequest named = chat(u + tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}}})");
  ASSERT_TRUE(named.ok()) << named.error.message;
  GrammarMatcher n(named.request->grammar);
  EXPECT_FALSE(n.feed(std::string("<tool_call>\n{\"name\": \"now\"")));
  EXPECT_TRUE(n.feed(std::string("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>")));
  EXPECT_TRUE(n.done());
}

TEST(ParseRequest, ToolCallsAndResultsInTheHistory) {
  const ParsedRequest p = chat(R"({"messages":[{"role":"user","content":"weather?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\": \"Oslo\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"12 C"}]})");
  ASSERT_TRUE(p.ok()) << p.error.message;
  const auto& m = p.request->messages;
  ASSERT_EQ(m.size(), 3u);
  ASSERT_EQ(m[1].tool_calls.size(), 1u);
  EXPECT_EQ(m[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(m[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(m[1].tool_calls[0].arguments, R"({"city": "Oslo"})");
  EXPECT_EQ(m[2].role, "tool");
  EXPECT_EQ(m[2].tool_call_id, "call_1");
  EXPECT_EQ(m[2].content, "12 C");
}

TEST(ParseRequest, MaxTokensLimitFollowsTheContext) {
  RequestLimits limits;
  limits.max_tokens = 100;
  EXPECT_TRUE(parse_request(Endpoint::kCompletion, R"({"prompt":"x","max_tokens":100})", limits).ok());
  EXPECT_FALSE(parse_request(Endpoint::kCompletion, R"({"prompt":"x","max_tokens":101})", limits).ok());
}

TEST(ErrorBody, NullsAndInvalidUtf8) {
  const auto j = nlohmann::json::parse(error_body(ApiError{429, "busy \xff", "rate_limit_error", "", "rate_limit_exceeded"}));
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(j["error"]["message"], "busy \xEF\xBF\xBD");
}

}  // namespace
}  // namespace lutq::server
