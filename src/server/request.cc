// parse_request: JSON → CompletionRequest, with the policy described in request.h.
#include "server/request.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "server/json_schema.h"

namespace lutq::server {
namespace {

using json = nlohmann::ordered_json;  // keeps the order of schema properties and tools

constexpr int kMaxDepth = 64;  // far deeper than any valid request; bounds the parser's work

// Deepest nesting of [ and { outside strings (the body is not yet known to be valid JSON).
int nesting_depth(std::string_view s) {
  int depth = 0;
  int worst = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
      if (worst > kMaxDepth) return worst;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

ApiError wrong_type(const std::string& param, const char* want, const json& got) {
  return ApiError::invalid("'" + param + "' must be " + want + ", got " + type_name(got), param, "invalid_type");
}

ApiError unsupported(const std::string& param, const std::string& what) {
  return ApiError::invalid(what + " is not supported by this server", param, "unsupported_parameter");
}

// The field's value when present and not null.
const json* field(const json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// A finite number in [lo, hi] (integers accepted).
std::optional<ApiError> read_number(const json& obj, const char* name, double lo, double hi, float& out) {
  const json* v = field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return wrong_type(name, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    return ApiError::invalid("'" + std::string(name) + "' must be between " + json(lo).dump() + " and " +
                                 json(hi).dump() + ", got " + v->dump(),
                             name, "invalid_value");
  }
  out = static_cast<float>(d);
  return std::nullopt;
}

// An integer in [lo, hi] (1.0 and other floats are rejected, as OpenAI does).
std::optional<ApiError> read_int(const json& obj, const char* name, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  const json* v = field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return wrong_type(name, "an integer", *v);
  const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi);
  const int64_t x = too_big ? hi : v->get<int64_t>();
  if (too_big || x < lo || x > hi) {
    return ApiError::invalid("'" + std::string(name) + "' must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi) + ", got " + v->dump(),
                             name, "invalid_value");
  }
  out = x;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& obj, const char* name, bool& out) {
  const json* v = field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return wrong_type(name, "a boolean", *v);
  out = v->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_stop(const json& obj, const RequestLimits& limits, std::vector<std::string>& out) {
  const json* v = field(obj, "stop");
  if (v == nullptr) return std::nullopt;
  std::vector<const json*> items;
  if (v->is_string()) {
    items.push_back(v);
  } else if (v->is_array()) {
    if (v->size() > limits.max_stop) {
      return ApiError::invalid("'stop' may hold at most " + std::to_string(limits.max_stop) + " strings", "stop",
                               "invalid_value");
    }
    for (const json& s : *v) items.push_back(&s);
  } else {
    return wrong_type("stop", "a string or an array of strings", *v);
  }
  for (const json* s : items) {
    if (!s->is_string()) return wrong_type("stop", "a string or an array of strings", *s);
    std::string text = s->get<std::string>();
    if (text.empty()) return ApiError::invalid("'stop' strings must not be empty", "stop", "invalid_value");
    if (text.size() > limits.max_stop_bytes) {
      return ApiError::invalid("'stop' strings may be at most " + std::to_string(limits.max_stop_bytes) + " bytes",
                               "stop", "invalid_value");
    }
    out.push_back(std::move(text));
  }
  return std::nullopt;
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::optional<ApiError> read_content(const json& msg, const std::string& param, std::string& out) {
  const json* c = field(msg, "content");
  if (c == nullptr) return std::nullopt;  // assistant messages may carry none
  if (c->is_string()) {
    out = c->get<std::string>();
    return std::nullopt;
  }
  if (!c->is_array()) return wrong_type(param, "a string or an array of content parts", *c);
  for (const json& part : *c) {
    if (!part.is_object()) return wrong_type(param, "an array of content parts", part);
    const json* type = field(part, "type");
    if (type == nullptr || !type->is_string() || type->get<std::string>() != "text") {
      return unsupported(param, "a content part other than {\"type\": \"text\"}");
    }
    const json* text = field(part, "text");
    if (text == nullptr || !text->is_string()) return wrong_type(param + ".text", "a string", text ? *text : json());
    out += text->get<std::string>();
  }
  return std::nullopt;
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}]
// (arguments: a JSON string as OpenAI sends it, or an object).
std::optional<ApiError> read_tool_calls(const json& m, const std::string& param, Message& msg) {
  const json* calls = field(m, "tool_calls");
  if (calls == nullptr) return std::nullopt;
  const std::string p0 = param + ".tool_calls";
  if (msg.role != "assistant") return ApiError::invalid("'" + p0 + "' is allowed on assistant messages only", p0, "invalid_value");
  if (!calls->is_array()) return wrong_type(p0, "an array", *calls);
  for (size_t i = 0; i < calls->size(); ++i) {
    const json& c = (*calls)[i];
    const std::string p = p0 + "[" + std::to_string(i) + "]";
    if (!c.is_object()) return wrong_type(p, "an object", c);
    const json* fn = field(c, "function");
    if (fn == nullptr || !fn->is_object()) return wrong_type(p + ".function", "an object", fn ? *fn : json());
    const json* name = field(*fn, "name");
    if (name == nullptr || !name->is_string()) return wrong_type(p + ".function.name", "a string", name ? *name : json());
    ToolCall call{"", name->get<std::string>(), "{}"};
    if (const json* args = field(*fn, "arguments")) {
      if (!args->is_string() && !args->is_object()) return wrong_type(p + ".function.arguments", "a string", *args);
      call.arguments = args->is_string() ? args->get<std::string>() : args->dump();
    }
    if (const json* id = field(c, "id")) {
      if (!id->is_string()) return wrong_type(p + ".id", "a string", *id);
      call.id = id->get<std::string>();
    }
    msg.tool_calls.push_back(std::move(call));
  }
  return std::nullopt;
}

std::optional<ApiError> read_messages(const json& body, const RequestLimits& limits, std::vector<Message>& out) {
  const json* v = field(body, "messages");
  if (v == nullptr) return ApiError::invalid("'messages' is required", "messages", "missing_required_parameter");
  if (!v->is_array()) return wrong_type("messages", "an array", *v);
  if (v->empty()) return ApiError::invalid("'messages' must not be empty", "messages", "invalid_value");
  if (v->size() > limits.max_messages) {
    return ApiError::invalid("'messages' may hold at most " + std::to_string(limits.max_messages) + " messages",
                             "messages", "invalid_value");
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return wrong_type(param, "an object", m);
    const json* role = field(m, "role");
    if (role == nullptr) return ApiError::invalid("'" + param + ".role' is required", param + ".role", "missing_required_parameter");
    if (!role->is_string()) return wrong_type(param + ".role", "a string", *role);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      return unsupported(param + ".role", "the role '" + role->get<std::string>() + "'");
    }
    Message msg;
    msg.role = r;
    if (auto e = read_content(m, param + ".content", msg.content)) return e;
    if (auto e = read_tool_calls(m, param, msg)) return e;
    if (r == "tool") {
      const json* id = field(m, "tool_call_id");
      if (id == nullptr) {
        return ApiError::invalid("'" + param + ".tool_call_id' is required", param + ".tool_call_id",
                                 "missing_required_parameter");
      }
      if (!id->is_string()) return wrong_type(param + ".tool_call_id", "a string", *id);
      msg.tool_call_id = id->get<std::string>();
    }
    out.push_back(std::move(msg));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json& body, std::string& out) {
  const json* v = field(body, "prompt");
  if (v == nullptr) return ApiError::invalid("'prompt' is required", "prompt", "missing_required_parameter");
  if (v->is_string()) {
    out = v->get<std::string>();
    return std::nullopt;
  }
  if (v->is_array()) {
    if (v->size() == 1 && (*v)[0].is_string()) {
      out = (*v)[0].get<std::string>();
      return std::nullopt;
    }
    if (v->size() > 1 && (*v)[0].is_string()) return unsupported("prompt", "more than one prompt per request");
    return unsupported("prompt", "a prompt of token ids");
  }
  return wrong_type("prompt", "a string", *v);
}

// Known OpenAI features that are not implemented: present with a non-default value → 400.
std::optional<ApiError> reject_unsupported(const json& body, Endpoint endpoint) {
  std::optional<int64_t> n;
  if (auto e = read_int(body, "n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), n)) return e;
  if (n && *n != 1) return ApiError::invalid("only n = 1 is supported", "n", "unsupported_parameter");
  std::optional<int64_t> best_of;
  if (auto e = read_int(body, "best_of", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), best_of)) return e;
  if (best_of && *best_of != 1) return ApiError::invalid("only best_of = 1 is supported", "best_of", "unsupported_parameter");
  const json* logprobs = field(body, "logprobs");
  if (logprobs != nullptr && !(logprobs->is_boolean() && !logprobs->get<bool>())) return unsupported("logprobs", "logprobs");
  if (field(body, "top_logprobs") != nullptr) return unsupported("top_logprobs", "top_logprobs");
  bool echo = false;
  if (auto e = read_bool(body, "echo", echo)) return e;
  if (echo) return unsupported("echo", "echo");
  const json* suffix = field(body, "suffix");
  if (suffix != nullptr && !(suffix->is_string() && suffix->get<std::string>().empty())) return unsupported("suffix", "suffix");
  // The legacy functions are accepted when they may not be called (tool_choice "none"); tools
  // are read by read_tools (chat only).
  const json* choice = field(body, "tool_choice");
  const bool no_calls = choice != nullptr && choice->is_string() && choice->get<std::string>() == "none";
  for (const char* name : {"tools", "functions"}) {
    const json* v = field(body, name);
    if (v == nullptr || (v->is_array() && v->empty()) || (endpoint == Endpoint::kChat && name[0] == 't')) continue;
    if (!v->is_array()) return wrong_type(name, "an array", *v);
    if (!no_calls) {
      return ApiError::invalid(name[0] == 'f' ? "the legacy 'functions' are not supported; use 'tools' (chat)"
                                              : "'tools' are supported on /v1/chat/completions only",
                               name, "unsupported_parameter");
    }
  }
  const json* bias = field(body, "logit_bias");
  if (bias != nullptr && !(bias->is_object() && bias->empty())) return unsupported("logit_bias", "logit_bias");
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    float p = 0.0f;
    if (auto e = read_number(body, name, -2.0, 2.0, p)) return e;
    if (p != 0.0f) return unsupported(name, std::string("a non-zero ") + name);
  }
  return std::nullopt;
}

// response_format: "text", "json_object" (constrained decoding) or "json_schema" (the schema
// compiled to a grammar: json_schema.h).
std::optional<ApiError> read_response_format(const json& body, CompletionRequest& r) {
  const json* rf = field(body, "response_format");
  if (rf == nullptr) return std::nullopt;
  if (!rf->is_object()) return wrong_type("response_format", "an object", *rf);
  const json* type = field(*rf, "type");
  const std::string t = type != nullptr && type->is_string() ? type->get<std::string>() : "";
  if (t == "text") return std::nullopt;
  if (t == "json_object") {
    r.json_object = true;
    return std::nullopt;
  }
  if (t != "json_schema") {
    return ApiError::invalid("response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
                             "response_format", "invalid_value");
  }
  const json* js = field(*rf, "json_schema");
  if (js == nullptr) {
    return ApiError::invalid("'response_format.json_schema' is required", "response_format.json_schema",
                             "missing_required_parameter");
  }
  if (!js->is_object()) return wrong_type("response_format.json_schema", "an object", *js);
  if (const json* name = field(*js, "name"); name != nullptr && !name->is_string()) {
    return wrong_type("response_format.json_schema.name", "a string", *name);
  }
  bool strict = false;  // enforced either way
  if (auto e = read_bool(*js, "strict", strict)) return ApiError::invalid(e->message, "response_format.json_schema.strict", e->code);
  const json* schema = field(*js, "schema");
  if (schema == nullptr) {  // no schema: any JSON object
    r.json_object = true;
    return std::nullopt;
  }
  CompiledGrammar compiled = compile_json_schema(*schema);
  if (!compiled.grammar) {
    return ApiError::invalid("response_format.json_schema.schema: " + compiled.error, "response_format.json_schema.schema",
                             "invalid_value");
  }
  r.grammar = std::move(compiled.grammar);
  return std::nullopt;
}

std::optional<ApiError> read_tool(const json& t, const std::string& p, std::vector<ToolDef>& out) {
  if (!t.is_object()) return wrong_type(p, "an object", t);
  const json* type = field(t, "type");
  if (type == nullptr || !type->is_string() || type->get<std::string>() != "function") {
    return ApiError::invalid("'" + p + ".type' must be \"function\"", p + ".type", "invalid_value");
  }
  const json* fn = field(t, "function");
  if (fn == nullptr || !fn->is_object()) return wrong_type(p + ".function", "an object", fn ? *fn : json());
  const json* name = field(*fn, "name");
  if (name == nullptr || !name->is_string()) return wrong_type(p + ".function.name", "a string", name ? *name : json());
  const std::string n = name->get<std::string>();
  const bool valid = !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  if (!valid) {
    return ApiError::invalid("'" + p + ".function.name' must be 1 to 64 letters, digits, '_' or '-'", p + ".function.name",
                             "invalid_value");
  }
  for (const ToolDef& d : out) {
    if (d.name == n) return ApiError::invalid("two tools are named '" + n + "'", p + ".function.name", "invalid_value");
  }
  const json* params = field(*fn, "parameters");
  if (params != nullptr && !params->is_object()) return wrong_type(p + ".function.parameters", "an object", *params);
  out.push_back(ToolDef{n, t, params ? *params : json()});
  return std::nullopt;
}

// tools and tool_choice (chat). Constraining choices compile the call grammar here, so a schema
// outside the subset is a 400 before anything runs.
std::optional<ApiError> read_tools(const json& body, CompletionRequest& r) {
  std::vector<ToolDef> tools;
  if (const json* v = field(body, "tools")) {
    if (!v->is_array()) return wrong_type("tools", "an array", *v);
    for (size_t i = 0; i < v->size(); ++i) {
      if (auto e = read_tool((*v)[i], "tools[" + std::to_string(i) + "]", tools)) return e;
    }
  }
  ToolChoice choice = tools.empty() ? ToolChoice::kNone : ToolChoice::kAuto;
  std::string named;
  if (const json* c = field(body, "tool_choice")) {
    const std::string s = c->is_string() ? c->get<std::string>() : "";
    if (s == "none" || s == "auto" || s == "required") {
      choice = s == "none" ? ToolChoice::kNone : s == "auto" ? ToolChoice::kAuto : ToolChoice::kRequired;
    } else if (c->is_object()) {
      const json* fn = field(*c, "function");
      const json* name = fn != nullptr && fn->is_object() ? field(*fn, "name") : nullptr;
      if (name == nullptr || !name->is_string()) {
        return ApiError::invalid("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                                 "\"function\": {\"name\": NAME}}", "tool_choice", "invalid_value");
      }
      choice = ToolChoice::kNamed;
      named = name->get<std::string>();
    } else {
      return ApiError::invalid("'tool_choice' must be \"none\", \"auto\", \"required\" or a function object",
                               "tool_choice", "invalid_value");
    }
  }
  const bool constrain = choice == ToolChoice::kRequired || choice == ToolChoice::kNamed;
  if (constrain && tools.empty()) return ApiError::invalid("'tool_choice' needs 'tools'", "tool_choice", "invalid_value");
  if (choice == ToolChoice::kNamed &&
      std::none_of(tools.begin(), tools.end(), [&](const ToolDef& t) { return t.name == named; })) {
    return ApiError::invalid("'tool_choice' names the function '" + named + "', which is not among 'tools'", "tool_choice",
                             "invalid_value");
  }
  if (constrain && (r.grammar || r.json_object)) {
    return ApiError::invalid("'tool_choice' \"required\" or a named function cannot be combined with response_format "
                             "json_object or json_schema", "tool_choice", "invalid_value");
  }
  r.tool_choice = choice;
  if (choice == ToolChoice::kNone) return std::nullopt;
  r.tools = std::move(tools);
  if (constrain) {
    std::string error;
    r.grammar = tool_call_grammar(r.tools, named, error);
    if (!r.grammar) return ApiError::invalid(error, "tools", "invalid_value");
  }
  return std::nullopt;
}

}  // namespace

ParsedRequest parse_request(Endpoint endpoint, std::string_view body_text, const RequestLimits& limits) {
  ParsedRequest out;
  if (nesting_depth(body_text) > kMaxDepth) {
    out.error = ApiError::invalid("the request body nests deeper than " + std::to_string(kMaxDepth) + " levels");
    return out;
  }
  json body;
  try {
    body = json::parse(body_text.begin(), body_text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    out.error = ApiError::invalid(std::string("the request body is not valid JSON (UTF-8): ") + e.what());
    return out;
  }
  if (!body.is_object()) {
    out.error = ApiError::invalid(std::string("the request body must be a JSON object, got ") + type_name(body));
    return out;
  }
  CompletionRequest r;
  r.endpoint = endpoint;
  auto fail = [&](ApiError e) {
    out.error = std::move(e);
    return out;
  };
  if (const json* model = field(body, "model")) {
    if (!model->is_string()) return fail(wrong_type("model", "a string", *model));
    r.model = model->get<std::string>();
  }
  if (const json* adapter = field(body, "adapter")) {
    if (!adapter->is_string()) return fail(wrong_type("adapter", "a string", *adapter));
    r.adapter = adapter->get<std::string>();
  }
  if (endpoint == Endpoint::kChat) {
    if (auto e = read_messages(body, limits, r.messages)) return fail(*e);
  } else if (auto e = read_prompt(body, r.prompt)) {
    return fail(*e);
  }
  if (auto e = reject_unsupported(body, endpoint)) return fail(*e);
  // Chat clients send max_completion_tokens (the newer name) or max_tokens; the newer wins.
  if (auto e = read_int(body, "max_tokens", 1, limits.max_tokens, r.max_tokens)) return fail(*e);
  if (endpoint == Endpoint::kChat) {
    if (auto e = read_int(body, "max_completion_tokens", 1, limits.max_tokens, r.max_tokens)) return fail(*e);
  }
  if (auto e = read_number(body, "temperature", 0.0, 2.0, r.temperature)) return fail(*e);
  if (auto e = read_number(body, "top_p", 0.0, 1.0, r.top_p)) return fail(*e);
  std::optional<int64_t> top_k;
  if (auto e = read_int(body, "top_k", 0, std::numeric_limits<int32_t>::max(), top_k)) return fail(*e);
  if (top_k) r.top_k = static_cast<int32_t>(*top_k);
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) return fail(wrong_type("seed", "an integer", *seed));
    r.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (auto e = read_stop(body, limits, r.stop)) return fail(*e);
  if (auto e = read_bool(body, "stream", r.stream)) return fail(*e);
  if (endpoint == Endpoint::kChat) {
    if (auto e = read_response_format(body, r)) return fail(*e);
    if (auto e = read_tools(body, r)) return fail(*e);
  }
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) return fail(wrong_type("stream_options", "an object", *so));
    if (auto e = read_bool(*so, "include_usage", r.include_usage)) return fail(*e);
  }
  out.request = std::move(r);
  return out;
}

}  // namespace lutq::server
