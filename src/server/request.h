// Parsing and validation of the bodies of POST /v1/chat/completions and POST /v1/completions:
// pure functions from the request text to a CompletionRequest or an OpenAI-shaped ApiError.
//
// Policy (README "lutq serve"):
//  * the body must be a JSON object of valid UTF-8 (nlohmann's parser rejects ill-formed UTF-8
//    and unpaired surrogate escapes);
//  * unknown fields are ignored, as most OpenAI-compatible servers do, so clients that send
//    newer or vendor parameters keep working; null means "default" for every optional field;
//  * known fields must have the documented type and range, else 400 naming the field (param);
//  * known features lutq does not implement are rejected rather than silently ignored: n != 1,
//    best_of > 1, logprobs, echo, suffix, the legacy functions unless tool_choice is "none",
//    tools on /v1/completions, logit_bias, non-zero presence/frequency penalties, roles other
//    than system/developer/user/assistant/tool, non-text content parts.
//  * response_format {"type": "json_object"} (chat) constrains the output to one JSON object;
//    {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} to JSON valid against
//    the schema (json_schema.h: a schema outside the subset is a 400 naming the keyword).
//  * tools + tool_choice (chat; tools.h): "none" ignores the tools; "auto" (the default with
//    tools) renders them and parses calls from the text; "required" or a named function also
//    constrains decoding to one call. A named function that is not among the tools is a 400.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gen/chat_template.h"
#include "server/api_error.h"
#include "server/grammar.h"
#include "server/tools.h"

namespace lutq::server {

enum class Endpoint { kChat, kCompletion };

struct RequestLimits {
  int64_t max_tokens = 2048;        // largest accepted max_tokens (the context size)
  size_t max_stop = 4;              // stop strings, as OpenAI
  size_t max_stop_bytes = 512;      // bytes per stop string
  size_t max_messages = 4096;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;                      // echoed back; "" when absent
  std::string adapter;                    // extension: a scale adapter's name (lutq serve --adapters); "" none
  std::vector<Message> messages;          // chat
  std::string prompt;                     // completion
  std::optional<int64_t> max_tokens;      // none: chat runs to the context end, completion 16
  float temperature = 1.0f;               // OpenAI's default; 0 is greedy
  float top_p = 1.0f;
  int32_t top_k = 0;                      // extension (llama.cpp); 0 = no limit
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
  bool json_object = false;               // response_format {"type": "json_object"}
  // Constrained decoding: response_format json_schema, or tool_choice required / named.
  std::shared_ptr<const Grammar> grammar;
  std::vector<ToolDef> tools;             // rendered into the prompt unless tool_choice is none
  ToolChoice tool_choice = ToolChoice::kNone;
};

// Exactly one of request / error is meaningful: request when parsing succeeded.
struct ParsedRequest {
  std::optional<CompletionRequest> request;
  ApiError error;
  bool ok() const { return request.has_value(); }
};

ParsedRequest parse_request(Endpoint endpoint, std::string_view body, const RequestLimits& limits);

}  // namespace lutq::server
