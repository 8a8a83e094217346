// Tool calling (OpenAI "tools") for ChatML models, in the format of Qwen2.5's chat template:
//  * the tools go into the system message, one JSON object per line inside <tools></tools>,
//    after the instructions of that template;
//  * the model answers a call as  <tool_call>\n{"name": NAME, "arguments": {...}}\n</tool_call>;
//  * an assistant message's tool_calls are written back in that form, and tool results
//    (role "tool") become one user turn of <tool_response>\n...\n</tool_response> blocks.
// tool_choice "required" or a named function constrains decoding to one such call whose
// arguments validate against the function's parameters (json_schema.h); "auto" parses the text.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gen/chat_template.h"
#include "server/grammar.h"

namespace lutq::server {

struct ToolDef {
  std::string name;
  nlohmann::ordered_json spec;        // the request's {"type": "function", "function": {...}}
  nlohmann::ordered_json parameters;  // its parameters schema (null: none)
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

// A chat message of the request: role system/user/assistant/tool, its text, an assistant's
// tool calls, a tool result's tool_call_id.
struct Message : gen::ChatMessage {
  std::vector<ToolCall> tool_calls;
  std::string tool_call_id;
};

// The messages as the template's turns: tools (may be empty) in the system message (the
// template's default system text, or `default_system` when there is none, leads it), calls and
// results written as above. Without tools, calls or results the messages pass unchanged.
std::vector<gen::ChatMessage> render_tool_messages(const std::vector<Message>& messages,
                                                   const std::vector<ToolDef>& tools,
                                                   const std::string& default_system);

// The grammar of one call of `tools` (all of them; only `named` when not empty). Error text in
// `error` when a parameters schema is outside the subset json_schema.h supports.
std::shared_ptr<const Grammar> tool_call_grammar(const std::vector<ToolDef>& tools, const std::string& named,
                                                 std::string& error);

// The tool calls in generated text: optional text, then one or more <tool_call> blocks, each a
// JSON object with a "name" among `tools` and object "arguments", nothing but space after them
// (the last closing tag may be missing). nullopt when the text is anything else.
struct ParsedCalls {
  std::string content;  // the text before the first call, trimmed
  std::vector<ToolCall> calls;
};
std::optional<ParsedCalls> parse_tool_calls(std::string_view text, const std::vector<ToolDef>& tools);

// JSON as Python's json.dumps writes it by default (", " and ": "), as the template's tojson.
std::string dump_spaced(const nlohmann::ordered_json& value);

// Streaming with tools: text is passed on until a "<tool_call>" may begin; what follows is held
// until the end, when it is either tool calls or, malformed, plain text.
class ToolStream {
 public:
  std::string push(std::string_view text);  // text safe to send as content now
  const std::string& all() const { return all_; }
  std::string held() const { return all_.substr(sent_); }

 private:
  std::string all_;
  size_t sent_ = 0;
  bool calling_ = false;
};

}  // namespace lutq::server
