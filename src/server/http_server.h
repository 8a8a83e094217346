// The HTTP side of `lutq serve` (the only code that sees cpp-httplib): routes, request bodies to
// parse_request, prompts through the chat template and tokenizer into Scheduler::submit, and
// jobs back out as JSON or server-sent events. A client that goes away mid-stream makes a write
// fail, which cancels its job and frees its slot. Limits: body size (413), read and write
// timeouts per connection (slow clients are dropped), and the scheduler's queue (429).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "gen/tokenizer.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace lutq::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (bind() reports it)
  std::string model_name = "lutq";
  size_t max_body_bytes = 1 << 20;
  int read_timeout_s = 10;
  int write_timeout_s = 10;
  int worker_threads = 0;  // 0: slots + queue + 8 (a waiting or streaming request holds a thread)
};

class HttpServer {
 public:
  // The scheduler, tokenizer and metrics must outlive the server.
  HttpServer(Scheduler& scheduler, const gen::Tokenizer& tokenizer, Metrics& metrics, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port.
  Result<int> bind();
  // Serves until stop() (blocks the calling thread).
  Status serve();
  // Thread-safe; makes serve() return.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lutq::server
