// The API of `lutq serve` without the transport: a request (method, path, body, Authorization
// header) becomes either a finished reply (status, headers, body) or a generation job that the
// transport (http_server.cc) waits on and renders with the helpers below. Routes:
//   POST /v1/chat/completions, POST /v1/completions   generation (JSON or server-sent events)
//   GET  /v1/models, GET /v1/models/{id}              the served model and its scale adapters
//   GET  /health (never needs the API key), GET /metrics, GET / (chat page)
// Everything but /health and / needs "Authorization: Bearer KEY" when an API key is set (401).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gen/tokenizer.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/responses.h"
#include "server/scheduler.h"

namespace lutq::server {

struct ApiOptions {
  std::string model_name = "lutq";
  std::string api_key;  // "" = no authentication
  // Per-request scale adapters held by the model (Model::add_adapter): a request's "adapter" field
  // (or a "model" equal to one of these names) picks adapters[i], which the model holds as index
  // i + 1. /v1/models lists them after the model.
  std::vector<std::string> adapters;
};

struct ApiRequest {
  std::string_view method;
  std::string_view target;         // path, with an optional ?query (ignored)
  std::string_view body;
  std::string_view authorization;  // the Authorization header, "" when absent
};

struct ApiReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, ...)
  std::string route = "other";  // a fixed label for logs and metrics

  // A generation in progress (status 200, body empty): the transport waits on job and answers
  // with full_reply (non-streaming) or stream_* events.
  std::shared_ptr<Job> job;
  bool stream = false;
  bool include_usage = false;
  ResponseMeta meta;
  // Tool calling (tool_choice other than none): the text is parsed for calls at the end; a
  // stream holds back what may be a call (tools.h ToolStream).
  std::shared_ptr<const std::vector<ToolDef>> tools;
  std::shared_ptr<ToolStream> tool_stream;
};

// The reply of an ApiError (OpenAI error shape; Retry-After on 429, WWW-Authenticate on 401).
ApiReply error_reply(const ApiError& error);
// The JSON error type of a transport-level status (400, 408, 411, 413, 415, 503, ...).
const char* status_error_type(int status);

// The reply that ends a non-streaming job: the response object, or the error it finished with.
ApiReply full_reply(const ApiReply& pending, const std::string& text, const JobUpdate& finish);
// Server-sent events of a stream: the opening event (chat only: the assistant role; "" for
// completions), a text event, and the closing events: finish chunk (+ usage) or an error event
// when the job failed or was cancelled, then [DONE].
std::string stream_open(const ApiReply& pending);
std::string stream_text(const ApiReply& pending, const std::string& text);
std::string stream_close(const ApiReply& pending, const JobUpdate& finish);

// Path of /v1/models/{id}: the id (percent-decoded), or nullopt for other paths.
std::optional<std::string> model_id_of_path(std::string_view path);

class Api {
 public:
  // The scheduler, tokenizer and metrics must outlive the Api. Thread-safe.
  Api(Scheduler& scheduler, const gen::Tokenizer& tokenizer, Metrics& metrics, ApiOptions options);

  ApiReply handle(const ApiRequest& request);
  const ApiOptions& options() const { return options_; }

 private:
  ApiReply completion(Endpoint endpoint, std::string_view body);
  std::optional<ApiError> chat_prompt(const CompletionRequest& r, std::vector<int32_t>& prompt) const;
  // The model's index of the adapter called `name` (options_.adapters[i] is i + 1), 0 for none.
  int32_t adapter_index(std::string_view name) const;
  // The model's adapter index a request asks for (0: none); an unknown "adapter" name is a 404.
  std::optional<ApiError> adapter_of(const CompletionRequest& r, int32_t& index) const;
  ApiReply get(std::string_view path);
  bool authorized(std::string_view authorization) const;
  uint64_t random();

  Scheduler& scheduler_;
  const gen::Tokenizer& tokenizer_;
  Metrics& metrics_;
  ApiOptions options_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // request ids and default seeds
  uint64_t next_id_ = 0;
};

}  // namespace lutq::server
