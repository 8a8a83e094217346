// Tool rendering, the tool-call grammar and tool-call parsing (tools.h).
#include "server/tools.h"

#include <algorithm>

#include "server/json_schema.h"

namespace lutq::server {
namespace {

using nlohmann::ordered_json;

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";

// The instructions of Qwen2.5's template around the tool list.
constexpr std::string_view kToolsHead =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr std::string_view kToolsTail =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>";

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string dump(const ordered_json& v) { return v.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

void put_spaced(const ordered_json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += first ? "" : ", ";
      first = false;
      out += dump(ordered_json(it.key())) + ": ";
      put_spaced(it.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      out += i == 0 ? "" : ", ";
      put_spaced(v[i], out);
    }
    out += ']';
  } else {
    out += dump(v);
  }
}

// A call as the template writes it; arguments that are not JSON are written as they are.
std::string render_call(const ToolCall& call) {
  const ordered_json args = ordered_json::parse(call.arguments, nullptr, false);
  return std::string(kOpen) + "\n{\"name\": " + dump(ordered_json(call.name)) + ", \"arguments\": " +
         (args.is_discarded() ? call.arguments : dump_spaced(args)) + "}\n" + std::string(kClose);
}

// One call's JSON object; nullopt unless its name is a tool's and its arguments an object.
std::optional<ToolCall> read_call(std::string_view body, const std::vector<ToolDef>& tools) {
  const ordered_json j = ordered_json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string()) return std::nullopt;
  const std::string n = name->get<std::string>();
  if (!tools.empty() && std::none_of(tools.begin(), tools.end(), [&](const ToolDef& t) { return t.name == n; })) {
    return std::nullopt;
  }
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  ordered_json a = args == j.end() ? ordered_json::object() : *args;
  if (a.is_string()) a = ordered_json::parse(a.get<std::string>(), nullptr, false);
  if (a.is_discarded() || !a.is_object()) return std::nullopt;
  return ToolCall{"", n, dump(a)};
}

}  // namespace

std::string dump_spaced(const ordered_json& value) {
  std::string out;
  put_spaced(value, out);
  return out;
}

std::vector<gen::ChatMessage> render_tool_messages(const std::vector<Message>& messages,
                                                   const std::vector<ToolDef>& tools,
                                                   const std::string& default_system) {
  std::vector<gen::ChatMessage> out;
  size_t i = 0;
  if (!tools.empty()) {
    const bool has_system = !messages.empty() && messages[0].role == "system";
    std::string system = has_system ? messages[0].content : default_system;
    if (!system.empty()) system += "\n\n";
    system += kToolsHead;
    for (const ToolDef& t : tools) system.append("\n").append(dump_spaced(t.spec));
    system += kToolsTail;
    out.push_back(gen::ChatMessage{"system", std::move(system)});
    i = has_system ? 1 : 0;
  }
  for (; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (m.role == "tool") {  // consecutive results share one user turn
      std::string content;
      for (; i < messages.size() && messages[i].role == "tool"; ++i) {
        if (!content.empty()) content += '\n';
        content.append("<tool_response>\n").append(messages[i].content).append("\n</tool_response>");
      }
      --i;
      out.push_back(gen::ChatMessage{"user", std::move(content)});
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      std::string content = m.content;
      for (const ToolCall& c : m.tool_calls) {
        if (!content.empty()) content += '\n';
        content += render_call(c);
      }
      out.push_back(gen::ChatMessage{"assistant", std::move(content)});
    } else {
      out.push_back(gen::ChatMessage{m.role, m.content});
    }
  }
  return out;
}

std::shared_ptr<const Grammar> tool_call_grammar(const std::vector<ToolDef>& tools, const std::string& named,
                                                 std::string& error) {
  auto g = std::make_shared<Grammar>();
  SchemaCompiler compiler(*g);
  const uint32_t calls = g->add_rule();
  const ordered_json no_parameters = {{"type", "object"}, {"additionalProperties", false}};
  for (const ToolDef& t : tools) {
    if (!named.empty() && t.name != named) continue;
    const ordered_json& schema = t.parameters.is_null() ? no_parameters : t.parameters;
    const std::optional<uint32_t> args = compiler.compile(schema, schema);
    if (!args) {
      error = "the parameters of the tool '" + t.name + "': " + compiler.error();
      return nullptr;
    }
    std::vector<GElem> seq;
    g->literal(seq, dump(ordered_json(t.name)) + ", \"arguments\": ");
    seq.push_back(Grammar::call(*args));
    g->add_alt(calls, seq);
  }
  if (g->alts(calls).empty()) {
    error = "no tool named '" + named + "'";
    return nullptr;
  }
  if (g->size() > Grammar::kMaxElems) {
    error = "the tools' parameters schemas are too large";
    return nullptr;
  }
  std::vector<GElem> root;
  g->literal(root, std::string(kOpen) + "\n{\"name\": ");
  root.push_back(Grammar::call(calls));
  g->literal(root, "}\n" + std::string(kClose));
  const uint32_t r = g->add_rule();
  g->add_alt(r, root);
  g->set_root(r);
  return g;
}

std::optional<ParsedCalls> parse_tool_calls(std::string_view text, const std::vector<ToolDef>& tools) {
  const size_t at = text.find(kOpen);
  if (at == std::string_view::npos) return std::nullopt;
  ParsedCalls out;
  out.content = std::string(trim(text.substr(0, at)));
  std::string_view rest = text.substr(at);
  for (rest = trim(rest); !rest.empty(); rest = trim(rest)) {
    if (!rest.starts_with(kOpen)) return std::nullopt;
    rest.remove_prefix(kOpen.size());
    const size_t end = rest.find(kClose);
    const std::string_view body = end == std::string_view::npos ? rest : rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + kClose.size());
    std::optional<ToolCall> call = read_call(body, tools);
    if (!call) return std::nullopt;
    out.calls.push_back(std::move(*call));
  }
  return out;
}

std::string ToolStream::push(std::string_view text) {
  all_ += text;
  if (calling_) return {};
  const size_t at = all_.find(kOpen, sent_);
  size_t upto = all_.size();
  if (at != std::string::npos) {
    calling_ = true;
    upto = at;
  } else {  // hold back a tail that may be the start of the tag
    for (size_t k = std::min(kOpen.size() - 1, all_.size() - sent_); k > 0; --k) {
      if (std::string_view(all_).substr(all_.size() - k) == kOpen.substr(0, k)) {
        upto = all_.size() - k;
        break;
      }
    }
  }
  std::string out = all_.substr(sent_, upto - sent_);
  sent_ = upto;
  return out;
}

}  // namespace lutq::server
