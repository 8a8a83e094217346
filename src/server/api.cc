// Api: routing, authentication and the translation between request JSON and scheduler jobs.
#include "server/api.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>

#include "gen/chat_template.h"
#include "server/page.h"
#include "server/request.h"

namespace lutq::server {
namespace {

ApiReply json_reply(std::string body, std::string route) {
  ApiReply r;
  r.body = std::move(body);
  r.route = std::move(route);
  return r;
}

// Equal strings in time independent of where they differ (the API key).
bool same_secret(std::string_view a, std::string_view b) {
  if (b.empty()) return false;
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Ids of the calls of one response: call_<response id>_<index>.
void name_calls(const ResponseMeta& meta, std::vector<ToolCall>& calls) {
  const size_t dash = meta.id.find('-');
  for (size_t i = 0; i < calls.size(); ++i) {
    calls[i].id = "call_" + meta.id.substr(dash == std::string::npos ? 0 : dash + 1) + "_" + std::to_string(i);
  }
}

}  // namespace

const char* status_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

ApiReply error_reply(const ApiError& error) {
  ApiReply r;
  r.status = error.http_status;
  r.body = error_body(error);
  if (error.http_status == 429) r.headers.emplace_back("Retry-After", "1");
  if (error.http_status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

ApiReply full_reply(const ApiReply& pending, const std::string& text, const JobUpdate& finish) {
  ApiReply r;
  r.route = pending.route;
  if (finish.reason == FinishReason::kError) {
    r = error_reply(ApiError{500, finish.error, "server_error", "", ""});
  } else if (finish.reason == FinishReason::kCancelled) {
    r = error_reply(ApiError{503, "the request was cancelled (the server is shutting down)", "server_error", "", ""});
  } else {
    const Usage usage{finish.prompt_tokens, finish.completion_tokens};
    std::optional<ParsedCalls> calls = pending.tools ? parse_tool_calls(text, *pending.tools) : std::nullopt;
    if (calls) {
      name_calls(pending.meta, calls->calls);
      r.body = full_response(pending.meta, calls->content, "tool_calls", usage, &calls->calls);
    } else {
      r.body = full_response(pending.meta, text, finish_reason_name(finish.reason), usage);
    }
  }
  r.route = pending.route;
  return r;
}

std::string stream_open(const ApiReply& pending) {
  // Chat streams open with the assistant role, as OpenAI's do; completions have no role.
  if (pending.meta.endpoint != Endpoint::kChat) return {};
  return stream_chunk(pending.meta, "", true, std::nullopt);
}

std::string stream_text(const ApiReply& pending, const std::string& text) {
  const std::string send = pending.tool_stream ? pending.tool_stream->push(text) : text;
  return send.empty() ? std::string() : stream_chunk(pending.meta, send, false, std::nullopt);
}

std::string stream_close(const ApiReply& pending, const JobUpdate& finish) {
  std::string out;
  if (finish.reason == FinishReason::kError || finish.reason == FinishReason::kCancelled) {
    const ApiError e{finish.reason == FinishReason::kError ? 500 : 503,
                     finish.reason == FinishReason::kError ? finish.error
                                                           : "the request was cancelled (the server is shutting down)",
                     "server_error", "", ""};
    out = "data: " + error_body(e) + "\n\n";
  } else {
    std::string reason = finish_reason_name(finish.reason);
    if (pending.tool_stream && pending.tools) {
      std::optional<ParsedCalls> calls = parse_tool_calls(pending.tool_stream->all(), *pending.tools);
      if (calls) {
        name_calls(pending.meta, calls->calls);
        out = stream_tool_calls_chunk(pending.meta, calls->calls);
        reason = "tool_calls";
      } else if (const std::string held = pending.tool_stream->held(); !held.empty()) {
        out = stream_chunk(pending.meta, held, false, std::nullopt);
      }
    }
    out += stream_chunk(pending.meta, "", false, reason);
    if (pending.include_usage) out += stream_usage_chunk(pending.meta, Usage{finish.prompt_tokens, finish.completion_tokens});
  }
  return out + kStreamDone;
}

std::optional<std::string> model_id_of_path(std::string_view path) {
  constexpr std::string_view kPrefix = "/v1/models/";
  if (!path.starts_with(kPrefix) || path.size() == kPrefix.size()) return std::nullopt;
  const std::string_view raw = path.substr(kPrefix.size());
  std::string id;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size() && hex_value(raw[i + 1]) >= 0 && hex_value(raw[i + 2]) >= 0) {
      id += static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2]));
      i += 2;
    } else {
      id += raw[i];
    }
  }
  return id;
}

Api::Api(Scheduler& scheduler, const gen::Tokenizer& tokenizer, Metrics& metrics, ApiOptions options)
    : scheduler_(scheduler), tokenizer_(tokenizer), metrics_(metrics), options_(std::move(options)),
      rng_(std::random_device{}()) {}

uint64_t Api::random() {
  std::lock_guard<std::mutex> lock(rng_mu_);
  return rng_();
}

bool Api::authorized(std::string_view authorization) const {
  if (options_.api_key.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization.starts_with(kBearer)) return false;
  return same_secret(authorization.substr(kBearer.size()), options_.api_key);
}

ApiReply Api::handle(const ApiRequest& request) {
  const std::string_view path = request.target.substr(0, request.target.find('?'));
  const bool open = path == "/health" || path == "/";
  if (!open && !authorized(request.authorization)) {
    ApiReply r = error_reply(ApiError{401, "a valid API key is required: send the header 'Authorization: Bearer KEY'",
                                      "authentication_error", "", "invalid_api_key"});
    r.route = path.starts_with("/v1/") ? std::string(path.substr(0, path.find('/', 4))) : "other";
    return r;
  }
  if (request.method == "POST") {
    if (path == "/v1/chat/completions") return completion(Endpoint::kChat, request.body);
    if (path == "/v1/completions") return completion(Endpoint::kCompletion, request.body);
  } else if (request.method == "GET") {
    ApiReply r = get(path);
    if (r.status != 404 || r.route != "other") return r;
  }
  const bool known = path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/models" ||
                     path == "/health" || path == "/metrics" || path == "/" || model_id_of_path(path);
  ApiReply r = known ? error_reply(ApiError{405, "method " + std::string(request.method) + " is not allowed on " +
                                                     std::string(path), "invalid_request_error", "", ""})
                     : error_reply(ApiError{404, "no route for " + std::string(request.method) + " " +
                                                     std::string(path), "not_found_error", "", ""});
  if (known) r.headers.emplace_back("Allow", path.starts_with("/v1/c") ? "POST" : "GET");
  return r;
}

int32_t Api::adapter_index(std::string_view name) const {
  const std::vector<std::string>& names = options_.adapters;
  const auto it = std::find(names.begin(), names.end(), name);
  return it == names.end() ? 0 : static_cast<int32_t>(it - names.begin()) + 1;
}

std::optional<ApiError> Api::adapter_of(const CompletionRequest& r, int32_t& index) const {
  index = adapter_index(r.adapter.empty() ? r.model : r.adapter);
  // Found, or no "adapter" asked for ("model" names the model itself, or anything).
  if (index != 0 || r.adapter.empty()) return std::nullopt;
  const std::vector<std::string>& names = options_.adapters;
  std::string known;
  for (const std::string& n : names) known += (known.empty() ? "'" : ", '") + n + "'";
  return ApiError{404, "the adapter '" + r.adapter + "' does not exist; this server holds " +
                           (names.empty() ? std::string("none") : known),
                  "invalid_request_error", "adapter", "adapter_not_found"};
}

ApiReply Api::get(std::string_view path) {
  if (path == "/health") return json_reply("{\"status\":\"ok\"}", "/health");
  if (path == "/v1/models") {
    return json_reply(models_response(options_.model_name, options_.adapters, static_cast<int64_t>(std::time(nullptr))),
                      "/v1/models");
  }
  if (std::optional<std::string> id = model_id_of_path(path)) {
    const bool adapter = adapter_index(*id) != 0;
    if (*id != options_.model_name && !adapter) {
      ApiReply r = error_reply(ApiError{404, "the model '" + *id + "' does not exist; this server serves '" +
                                                 options_.model_name + "'",
                                        "invalid_request_error", "model", "model_not_found"});
      r.route = "/v1/models/{id}";
      return r;
    }
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    return json_reply(adapter ? adapter_response(*id, options_.model_name, now) : model_response(options_.model_name, now),
                      "/v1/models/{id}");
  }
  if (path == "/metrics") {
    ApiReply r = json_reply(metrics_.render(scheduler_.gauges()), "/metrics");
    r.content_type = "text/plain; version=0.0.4";
    return r;
  }
  if (path == "/") {
    ApiReply r = json_reply(std::string(chat_page_html()), "/");
    r.content_type = "text/html; charset=utf-8";
    return r;
  }
  ApiReply r = error_reply(ApiError{404, "no route for GET " + std::string(path), "not_found_error", "", ""});
  return r;
}

// The chat prompt's tokens: the template's markers are control tokens, the messages' text never
// is (role injection); tools and tool calls are rendered as tools.h describes (ChatML only).
std::optional<ApiError> Api::chat_prompt(const CompletionRequest& r, std::vector<int32_t>& prompt) const {
  const std::string& source = tokenizer_.vocab().chat_template;
  Result<gen::ChatTemplate> tmpl = gen::parse_chat_template(source.empty() ? "chatml" : source);
  if (!tmpl) return ApiError{500, tmpl.status().message(), "server_error", "", ""};
  const bool tool_history = std::any_of(r.messages.begin(), r.messages.end(), [](const Message& m) {
    return m.role == "tool" || !m.tool_calls.empty();
  });
  if ((!r.tools.empty() || tool_history) && tmpl->format != gen::ChatFormat::kChatMl) {
    return ApiError::invalid("tool calling needs a ChatML chat template (Qwen2.5 format); this model's is not",
                             r.tools.empty() ? "messages" : "tools", "unsupported_parameter");
  }
  std::vector<gen::TextRange> literal;
  const std::string text =
      gen::format_chat(*tmpl, render_tool_messages(r.messages, r.tools, tmpl->default_system), true, &literal);
  prompt = tokenizer_.encode(text, /*add_special=*/true, literal);
  return std::nullopt;
}

ApiReply Api::completion(Endpoint endpoint, std::string_view body) {
  const bool chat = endpoint == Endpoint::kChat;
  const std::string route = chat ? "/v1/chat/completions" : "/v1/completions";
  auto fail = [&](const ApiError& e) {
    ApiReply r = error_reply(e);
    r.route = route;
    return r;
  };
  const SchedulerOptions& so = scheduler_.options();
  RequestLimits limits;
  limits.max_tokens = so.ctx;
  ParsedRequest parsed = parse_request(endpoint, body, limits);
  if (!parsed.ok()) return fail(parsed.error);
  const CompletionRequest& r = *parsed.request;
  const char* prompt_param = chat ? "messages" : "prompt";

  GenRequest g;
  if (chat) {
    if (std::optional<ApiError> e = chat_prompt(r, g.prompt)) return fail(*e);
  } else {
    g.prompt = tokenizer_.encode(r.prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  const auto n = static_cast<int64_t>(g.prompt.size());
  if (n == 0) return fail(ApiError::invalid("the prompt is empty", prompt_param, "invalid_value"));
  if (n >= so.ctx) {
    return fail(ApiError::invalid("the prompt has " + std::to_string(n) + " tokens; this server's context holds " +
                                      std::to_string(so.ctx) + " tokens for prompt and completion together",
                                  prompt_param, "context_length_exceeded"));
  }
  // OpenAI: completions default to 16 tokens, chat to the rest of the context.
  g.max_tokens = r.max_tokens.value_or(chat ? so.ctx - n : 16);
  g.sampling = gen::SamplerOptions{r.temperature, r.top_k, r.top_p, r.seed ? *r.seed : random()};
  g.stop = r.stop;
  g.json_object = r.json_object;
  g.grammar = r.grammar;
  if (std::optional<ApiError> e = adapter_of(r, g.adapter)) return fail(*e);

  Submitted sub = scheduler_.submit(std::move(g));
  if (!sub.job) {
    switch (sub.error) {
      case SubmitError::kQueueFull:
        metrics_.count_rejected();
        return fail(ApiError{429, sub.message, "rate_limit_error", "", "rate_limit_exceeded"});
      case SubmitError::kStopped: return fail(ApiError{503, sub.message, "server_error", "", ""});
      default: return fail(ApiError::invalid(sub.message, prompt_param, "invalid_value"));
    }
  }
  uint64_t serial = 0;
  {
    std::lock_guard<std::mutex> lock(rng_mu_);
    serial = next_id_++;
  }
  char id[48];
  std::snprintf(id, sizeof id, "%s-%llx%llx", chat ? "chatcmpl" : "cmpl", static_cast<unsigned long long>(random() >> 16),
                static_cast<unsigned long long>(serial));
  ApiReply out;
  out.route = route;
  out.job = std::move(sub.job);
  out.stream = r.stream;
  out.include_usage = r.include_usage;
  out.meta = ResponseMeta{endpoint, id, r.model.empty() ? options_.model_name : r.model,
                          static_cast<int64_t>(std::time(nullptr))};
  if (r.tool_choice != ToolChoice::kNone) {
    out.tools = std::make_shared<const std::vector<ToolDef>>(r.tools);
    if (r.stream) out.tool_stream = std::make_shared<ToolStream>();
  }
  if (r.stream) out.content_type = "text/event-stream";
  return out;
}

}  // namespace lutq::server
