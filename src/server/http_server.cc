// HttpServer: cpp-httplib routes and the translation between HTTP and scheduler jobs.
#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <utility>

#include "gen/chat_template.h"
#include "server/api_error.h"
#include "server/page.h"
#include "server/request.h"
#include "server/responses.h"

namespace lutq::server {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(error_body(e), "application/json");
}

// Route label for metrics: a fixed set, so arbitrary paths cannot grow the label space.
std::string route_label(const std::string& path) {
  for (const char* r : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/"}) {
    if (path == r) return r;
  }
  return "other";
}

const char* status_type(int status) {
  switch (status) {
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

// What a streaming response carries between calls of its content provider.
struct StreamState {
  std::shared_ptr<Job> job;
  ResponseMeta meta;
  bool include_usage = false;
  bool started = false;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Scheduler& s, const gen::Tokenizer& t, Metrics& m, HttpOptions o)
      : scheduler(s), tokenizer(t), metrics(m), options(std::move(o)), rng(std::random_device{}()) {}

  Scheduler& scheduler;
  const gen::Tokenizer& tokenizer;
  Metrics& metrics;
  HttpOptions options;
  httplib::Server http;
  std::mutex rng_mu;
  std::mt19937_64 rng;  // request ids and default seeds
  std::atomic<uint64_t> next_id{0};

  uint64_t random() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return rng();
  }

  void setup();
  void completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void stream(std::shared_ptr<StreamState> state, httplib::Response& res);
};

void HttpServer::Impl::setup() {
  const SchedulerOptions& so = scheduler.options();
  const int threads = options.worker_threads > 0 ? options.worker_threads
                                                 : so.parallel + static_cast<int>(so.queue_limit) + 8;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(options.read_timeout_s, 0);
  http.set_write_timeout(options.write_timeout_s, 0);
  http.set_keep_alive_timeout(5);

  http.Post("/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { completion(Endpoint::kChat, req, res); });
  http.Post("/v1/completions",
            [this](const httplib::Request& req, httplib::Response& res) { completion(Endpoint::kCompletion, req, res); });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(models_response(options.model_name, static_cast<int64_t>(std::time(nullptr))), "application/json");
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(scheduler.gauges()), "text/plain; version=0.0.4");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(chat_page_html()), "text/html; charset=utf-8");
  });

  // Every error answer gets the OpenAI shape, also those httplib produces itself (404, 413, 400).
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message;
    switch (res.status) {
      case 404: message = "no route for " + req.method + " " + req.path; break;
      case 413: message = "the request body is larger than " + std::to_string(options.max_body_bytes) + " bytes"; break;
      case 400: message = "malformed or incomplete HTTP request (or the body arrived slower than the read timeout)"; break;
      case 414: message = "the request URI is too long"; break;
      default: message = "HTTP status " + std::to_string(res.status);
    }
    send_error(res, ApiError{res.status, message, status_type(res.status), "", ""});
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(res, ApiError{500, what, "server_error", "", ""});
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.count_request(route_label(req.path), res.status);
  });
}

void HttpServer::Impl::completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  const SchedulerOptions& so = scheduler.options();
  RequestLimits limits;
  limits.max_tokens = so.ctx;
  ParsedRequest parsed = parse_request(endpoint, req.body, limits);
  if (!parsed.ok()) return send_error(res, parsed.error);
  const CompletionRequest& r = *parsed.request;
  const bool chat = endpoint == Endpoint::kChat;
  const char* prompt_param = chat ? "messages" : "prompt";

  std::string text = r.prompt;
  if (chat) {
    const std::string& tmpl = tokenizer.vocab().chat_template;
    Result<std::string> formatted = gen::apply_chat_template(tmpl.empty() ? "chatml" : tmpl, r.messages, true);
    if (!formatted) return send_error(res, ApiError{500, formatted.status().message(), "server_error", "", ""});
    text = std::move(*formatted);
  }
  // Chat: the template's markers are control tokens. Completions: the prompt is plain text.
  GenRequest g;
  g.prompt = tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/chat);
  const auto n = static_cast<int64_t>(g.prompt.size());
  if (n == 0) return send_error(res, ApiError::invalid("the prompt is empty", prompt_param, "invalid_value"));
  if (n >= so.ctx) {
    return send_error(res, ApiError::invalid("the prompt has " + std::to_string(n) + " tokens; this server's context holds " +
                                                 std::to_string(so.ctx) + " tokens for prompt and completion together",
                                             prompt_param, "context_length_exceeded"));
  }
  // OpenAI: completions default to 16 tokens, chat to the rest of the context.
  g.max_tokens = r.max_tokens.value_or(chat ? so.ctx - n : 16);
  g.sampling = gen::SamplerOptions{r.temperature, r.top_k, r.top_p, r.seed ? *r.seed : random()};
  g.stop = r.stop;

  Submitted sub = scheduler.submit(std::move(g));
  if (!sub.job) {
    switch (sub.error) {
      case SubmitError::kQueueFull:
        metrics.count_rejected();
        return send_error(res, ApiError{429, sub.message, "rate_limit_error", "", "rate_limit_exceeded"});
      case SubmitError::kStopped: return send_error(res, ApiError{503, sub.message, "server_error", "", ""});
      default: return send_error(res, ApiError::invalid(sub.message, prompt_param, "invalid_value"));
    }
  }
  char id[40];
  std::snprintf(id, sizeof id, "%s-%llx%llx", chat ? "chatcmpl" : "cmpl", static_cast<unsigned long long>(random() >> 16),
                static_cast<unsigned long long>(next_id.fetch_add(1)));
  ResponseMeta meta{endpoint, id, r.model.empty() ? options.model_name : r.model,
                    static_cast<int64_t>(std::time(nullptr))};

  if (r.stream) {
    auto state = std::make_shared<StreamState>();
    state->job = sub.job;
    state->meta = std::move(meta);
    state->include_usage = r.include_usage;
    return stream(std::move(state), res);
  }
  // Non-streaming: the handler thread waits. (A client that leaves cannot be noticed before the
  // answer is written; max_tokens and the context bound the work.)
  std::string out;
  JobUpdate u;
  do {
    u = sub.job->wait(kPollInterval);
    out += u.text;
  } while (!u.finished);
  if (u.reason == FinishReason::kError) return send_error(res, ApiError{500, u.error, "server_error", "", ""});
  if (u.reason == FinishReason::kCancelled) {
    return send_error(res, ApiError{503, "the server is shutting down", "server_error", "", ""});
  }
  res.set_content(full_response(meta, out, finish_reason_name(u.reason), Usage{u.prompt_tokens, u.completion_tokens}),
                  "application/json");
}

void HttpServer::Impl::stream(std::shared_ptr<StreamState> state, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          if (sink.write(s.data(), s.size())) return true;
          state->job->cancel();  // the client went away: free the slot
          return false;
        };
        if (!state->started) {
          state->started = true;
          // Chat streams open with the assistant role, as OpenAI's do; completions have no role.
          if (state->meta.endpoint == Endpoint::kChat) return write(stream_chunk(state->meta, "", true, std::nullopt));
        }
        const JobUpdate u = state->job->wait(kPollInterval);
        if (!u.text.empty() && !write(stream_chunk(state->meta, u.text, false, std::nullopt))) return false;
        if (!u.finished) return true;
        if (u.reason == FinishReason::kError || u.reason == FinishReason::kCancelled) {
          const ApiError e{500, u.reason == FinishReason::kError ? u.error : "the server is shutting down",
                           "server_error", "", ""};
          if (!write("data: " + error_body(e) + "\n\n")) return false;
        } else {
          if (!write(stream_chunk(state->meta, "", false, std::string(finish_reason_name(u.reason))))) return false;
          if (state->include_usage &&
              !write(stream_usage_chunk(state->meta, Usage{u.prompt_tokens, u.completion_tokens}))) {
            return false;
          }
        }
        if (!write(kStreamDone)) return false;
        sink.done();
        return true;
      },
      // Runs when the response ends for any reason; cancelling a finished job does nothing.
      [state](bool) { state->job->cancel(); });
}

HttpServer::HttpServer(Scheduler& scheduler, const gen::Tokenizer& tokenizer, Metrics& metrics, HttpOptions options)
    : impl_(std::make_unique<Impl>(scheduler, tokenizer, metrics, std::move(options))) {
  impl_->setup();
}

HttpServer::~HttpServer() { stop(); }

Result<int> HttpServer::bind() {
  const HttpOptions& o = impl_->options;
  if (o.port == 0) {
    const int port = impl_->http.bind_to_any_port(o.host);
    if (port < 0) return Status(StatusCode::kIoError, "cannot listen on " + o.host);
    return port;
  }
  if (!impl_->http.bind_to_port(o.host, o.port)) {
    return Status(StatusCode::kIoError, "cannot listen on " + o.host + ":" + std::to_string(o.port) +
                                            " (address in use or not available)");
  }
  return o.port;
}

Status HttpServer::serve() {
  if (!impl_->http.listen_after_bind()) return Status(StatusCode::kIoError, "the HTTP server stopped with an error");
  return Status::ok();
}

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace lutq::server
