// JSON bodies of responses.h, following the OpenAI API reference field by field.
#include "server/responses.h"

#include <nlohmann/json.hpp>

namespace lutq::server {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json base(const ResponseMeta& meta, const char* chat_object, const char* completion_object) {
  return {{"id", meta.id},
          {"object", meta.endpoint == Endpoint::kChat ? chat_object : completion_object},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", nullptr}};
}

std::string reason_name(const std::string& finish_reason) {
  return finish_reason == "length" || finish_reason == "tool_calls" ? finish_reason : "stop";
}

json calls_json(const std::vector<ToolCall>& calls, bool indexed) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c = {{"id", calls[i].id},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (indexed) c["index"] = i;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

std::string full_response(const ResponseMeta& meta, const std::string& text, const std::string& finish_reason,
                          const Usage& usage, const std::vector<ToolCall>* calls) {
  json r = base(meta, "chat.completion", "text_completion");
  const std::string reason = reason_name(finish_reason);
  if (meta.endpoint == Endpoint::kChat) {
    json message = {{"role", "assistant"}, {"content", text}};
    if (calls != nullptr) {
      if (text.empty()) message["content"] = nullptr;
      message["tool_calls"] = calls_json(*calls, false);
    }
    r["choices"] = json::array({{{"index", 0},
                                 {"message", message},
                                 {"logprobs", nullptr},
                                 {"finish_reason", reason}}});
  } else {
    r["choices"] = json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason}}});
  }
  r["usage"] = usage_json(usage);
  return dump(r);
}

std::string stream_chunk(const ResponseMeta& meta, const std::string& text, bool first,
                         const std::optional<std::string>& finish_reason) {
  json r = base(meta, "chat.completion.chunk", "text_completion");
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (finish_reason) choice["finish_reason"] = reason_name(*finish_reason);
  if (meta.endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && !finish_reason)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  return "data: " + dump(r) + "\n\n";
}

std::string stream_tool_calls_chunk(const ResponseMeta& meta, const std::vector<ToolCall>& calls) {
  json r = base(meta, "chat.completion.chunk", "text_completion");
  r["choices"] = json::array(
      {{{"index", 0}, {"delta", {{"tool_calls", calls_json(calls, true)}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  return "data: " + dump(r) + "\n\n";
}

std::string stream_usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  json r = base(meta, "chat.completion.chunk", "text_completion");
  r["choices"] = json::array();
  r["usage"] = usage_json(usage);
  return "data: " + dump(r) + "\n\n";
}

namespace {
json model_object(const std::string& model_name, int64_t created) {
  return {{"id", model_name}, {"object", "model"}, {"created", created}, {"owned_by", "lutq"}};
}
// A scale adapter over the model (its "parent"), as servers of LoRA adapters list them.
json adapter_object(const std::string& adapter, const std::string& model_name, int64_t created) {
  return {{"id", adapter}, {"object", "model"}, {"created", created}, {"owned_by", "lutq"}, {"parent", model_name}};
}
}  // namespace

std::string models_response(const std::string& model_name, const std::vector<std::string>& adapters, int64_t created) {
  json data = json::array({model_object(model_name, created)});
  for (const std::string& a : adapters) data.push_back(adapter_object(a, model_name, created));
  return dump({{"object", "list"}, {"data", std::move(data)}});
}

std::string adapter_response(const std::string& adapter, const std::string& model_name, int64_t created) {
  return dump(adapter_object(adapter, model_name, created));
}

std::string model_response(const std::string& model_name, int64_t created) {
  return dump(model_object(model_name, created));
}

}  // namespace lutq::server
