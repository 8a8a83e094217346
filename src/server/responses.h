// OpenAI response bodies for the completion endpoints: the whole-response objects
// (chat.completion, text_completion), the streamed chunks (chat.completion.chunk,
// text_completion) as SSE events, and the model list. Text is generated model output and may be
// invalid UTF-8 at the very end of a length-limited reply: it is written with U+FFFD replacing
// bad bytes rather than failing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/request.h"

namespace lutq::server {

// What every chunk and response of one request shares.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kChat;
  std::string id;     // chatcmpl-… / cmpl-…
  std::string model;  // the request's model field, or the served model's name
  int64_t created = 0;  // Unix seconds
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// "stop" / "length" / "tool_calls" (anything else is reported as "stop"). calls (chat): the
// message's tool_calls, its content then null when text is empty.
std::string full_response(const ResponseMeta& meta, const std::string& text, const std::string& finish_reason,
                          const Usage& usage, const std::vector<ToolCall>* calls = nullptr);

// One SSE event "data: {chunk}\n\n". Chat: the first chunk carries role (first = true), text
// chunks carry delta.content, the last carries finish_reason with an empty delta. usage, when
// given, is the final usage-only chunk (stream_options.include_usage).
std::string stream_chunk(const ResponseMeta& meta, const std::string& text, bool first,
                         const std::optional<std::string>& finish_reason);
std::string stream_usage_chunk(const ResponseMeta& meta, const Usage& usage);
// A chat chunk whose delta carries whole tool calls: [{index, id, type, function: {name, arguments}}].
std::string stream_tool_calls_chunk(const ResponseMeta& meta, const std::vector<ToolCall>& calls);
inline constexpr const char* kStreamDone = "data: [DONE]\n\n";

// GET /v1/models: the model, then its scale adapters (each with "parent": the model).
std::string models_response(const std::string& model_name, const std::vector<std::string>& adapters, int64_t created);
// GET /v1/models/{id}: the model object alone, or one adapter's.
std::string adapter_response(const std::string& adapter, const std::string& model_name, int64_t created);
std::string model_response(const std::string& model_name, int64_t created);

}  // namespace lutq::server
