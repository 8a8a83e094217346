// Tools in the prompt (Qwen2.5's layout through the ChatML template), tool-call parsing
// (well-formed → calls, anything else → text) and the streaming hold-back.
#include "server/tools.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lutq::server {
namespace {

using nlohmann::ordered_json;

ToolDef weather() {
  const ordered_json spec = ordered_json::parse(R"({"type":"function","function":{"name":"get_weather",
      "description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},
      "required":["city"]}}})");
  return ToolDef{"get_weather", spec, spec["function"]["parameters"]};
}

Message msg(std::string role, std::string content) {
  Message m;
  m.role = std::move(role);
  m.content = std::move(content);
  return m;
}

std::string chatml(const std::vector<gen::ChatMessage>& msgs) {
  return gen::format_chat(gen::ChatTemplate{gen::ChatFormat::kChatMl, ""}, msgs, true);
}

TEST(ToolRender, ToolsGoIntoTheSystemMessageAsQwen25Does) {
  const std::vector<gen::ChatMessage> out =
      render_tool_messages({msg("system", "Be brief."), msg("user", "Weather in Oslo?")}, {weather()}, "");
  const std::string expected =
      "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
      "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
      R"({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", )"
      R"("parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})"
      "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
      "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
      "<args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Oslo?<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(chatml(out), expected);
  // Without a system message the template's default system text leads.
  const std::vector<gen::ChatMessage> d = render_tool_messages({msg("user", "x")}, {weather()}, "You are Smol.");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_TRUE(d[0].content.starts_with("You are Smol.\n\n# Tools\n")) << d[0].content;
}

TEST(ToolRender, CallsAndResultsInTheHistory) {
  Message call = msg("assistant", "");
  call.tool_calls = {ToolCall{"c1", "get_weather", R"({"city":"Oslo"})"}, ToolCall{"c2", "get_weather", "not json"}};
  Message r1 = msg("tool", "12 C");
  Message r2 = msg("tool", "rain");
  const std::vector<gen::ChatMessage> out = render_tool_messages({msg("user", "w?"), call, r1, r2, msg("user", "thanks")}, {}, "");
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[1].role, "assistant");
  EXPECT_EQ(out[1].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": not json}\n</tool_call>");
  EXPECT_EQ(out[2].role, "user");
  EXPECT_EQ(out[2].content, "<tool_response>\n12 C\n</tool_response>\n<tool_response>\nrain\n</tool_response>");
  EXPECT_EQ(out[3].content, "thanks");
  // Content before the calls stays, a newline apart (the template's layout).
  Message with_text = msg("assistant", "Let me check.");
  with_text.tool_calls = {ToolCall{"c1", "get_weather", "{}"}};
  EXPECT_EQ(render_tool_messages({with_text}, {}, "")[0].content,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>");
  // Nothing tool-related: the messages pass unchanged.
  const std::vector<gen::ChatMessage> plain = render_tool_messages({msg("user", "hi")}, {}, "sys");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].content, "hi");
}

TEST(ToolParse, WellFormedCalls) {
  const std::vector<ToolDef> tools = {weather()};
  auto p = parse_tool_calls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", tools);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->content, "");
  ASSERT_EQ(p->calls.size(), 1u);
  EXPECT_EQ(p->calls[0].name, "get_weather");
  EXPECT_EQ(ordered_json::parse(p->calls[0].arguments), ordered_json::parse(R"({"city":"Oslo"})"));
  // Text before, two calls, the last closing tag missing, arguments as a JSON string.
  p = parse_tool_calls("Checking.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"A\"}}</tool_call>\n"
                       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"B\\\"}\"}\n",
                       tools);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->content, "Checking.");
  ASSERT_EQ(p->calls.size(), 2u);
  EXPECT_EQ(ordered_json::parse(p->calls[1].arguments)["city"], "B");
}

TEST(ToolParse, MalformedIsPlainText) {
  const std::vector<ToolDef> tools = {weather()};
  for (const char* text : {
           "The weather is fine.",
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}\n</tool_call>",  // unbalanced
           "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",                     // unknown tool
           "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                                             // no name
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>",                 // not an object
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call> and then text",   // text after
           "<tool_call>\n[\"get_weather\"]\n</tool_call>",
       }) {
    EXPECT_FALSE(parse_tool_calls(text, tools)) << text;
  }
}

TEST(ToolStream, HoldsBackWhatMayBeACall) {
  ToolStream s;
  EXPECT_EQ(s.push("Hello <"), "Hello ");
  EXPECT_EQ(s.push("b>"), "<b>");
  EXPECT_EQ(s.push(" x <tool_"), " x ");
  EXPECT_EQ(s.push("call>\n{\"name\""), "");
  EXPECT_EQ(s.push(": 1}"), "");
  EXPECT_EQ(s.held(), "<tool_call>\n{\"name\": 1}");
  EXPECT_EQ(s.all(), "Hello <b> x <tool_call>\n{\"name\": 1}");
}

TEST(ToolGrammar, OneCallOfTheNamedOrAnyTool) {
  ToolDef now{"now", ordered_json::parse(R"({"type":"function","function":{"name":"now"}})"), nullptr};
  std::string error;
  const auto any = tool_call_grammar({weather(), now}, "", error);
  ASSERT_TRUE(any) << error;
  GrammarMatcher a(any);
  EXPECT_TRUE(a.feed(std::string("<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>")));
  EXPECT_TRUE(a.done());
  GrammarMatcher b(any);
  EXPECT_FALSE(b.feed(std::string("<tool_call>\n{\"name\": \"now\", \"arguments\": {\"x\": 1}")));
  EXPECT_FALSE(b.feed(std::string("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}")));  // city required
  const auto named = tool_call_grammar({weather(), now}, "now", error);
  ASSERT_TRUE(named);
  GrammarMatcher c(named);
  EXPECT_FALSE(c.feed(std::string("<tool_call>\n{\"name\": \"get_weather\"")));
  ToolDef bad{"bad", ordered_json::object(), ordered_json::parse(R"({"type":"object","properties":{"n":{"minimum":1}}})")};
  EXPECT_FALSE(tool_call_grammar({bad}, "", error));
  EXPECT_NE(error.find("'minimum'"), std::string::npos) << error;
  EXPECT_NE(error.find("'bad'"), std::string::npos) << error;
}

}  // namespace
}  // namespace lutq::server
