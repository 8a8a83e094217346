// The HTTP/1.1 transport of `lutq serve` (the only code that sees Boost.Beast / Asio; docs/server.md
// says why this stack): an event-driven server on a few I/O threads, one coroutine per
// connection, requests handed to Api (api.h) and generation jobs streamed back as JSON or
// server-sent events without a thread per request.
//
// Defences: a connection limit (beyond it: 503 and close); the whole request head must arrive
// within header_timeout and the whole body within body_timeout (a client that trickles bytes is
// disconnected, so it holds neither a thread nor, for long, a connection); header size and
// body size limits that also hold for chunked bodies (413); Content-Encoding is refused (415), so
// no compressed body is ever expanded; conflicting Content-Length is refused (400) and a POST
// without a length gets 411 at once; each write has a deadline. Requests on one connection are
// answered in order (pipelining). A client that closes its connection while its request waits
// or generates cancels the job, which frees its sequence slot. The listening port is bound
// exclusively (SO_REUSEADDR only, never SO_REUSEPORT). One log line per request on stderr.
//
// Shutdown (stop() or, with stop_on_signals, SIGINT/SIGTERM): the listener closes, idle
// connections close, requests in progress get up to shutdown_timeout to finish; then every job
// is cancelled (open streams get an error event and [DONE], waiting requests 503) and serve()
// returns.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace lutq::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (bind() reports it)
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  int header_timeout_s = 10;  // the request line and headers, from the first byte awaited
  int body_timeout_s = 10;    // the body, from the end of the headers
  int write_timeout_s = 10;   // each write of a response or stream event
  int max_connections = 512;
  int io_threads = 2;
  int shutdown_timeout_s = 10;
  bool stop_on_signals = false;  // SIGINT / SIGTERM start the graceful shutdown
  bool log_requests = true;      // one line per request on stderr
};

class HttpServer {
 public:
  // The api, scheduler and metrics must outlive the server.
  HttpServer(Api& api, Scheduler& scheduler, Metrics& metrics, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port. "address in use" is an error, never shared.
  Result<int> bind();
  // Serves until stop() or a signal has shut the server down (blocks the calling thread).
  Status serve();
  // Thread-safe: starts the graceful shutdown; serve() returns when it is done.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lutq::server
