// HttpServer: the listener, the connection registry and limit, and the graceful shutdown; each
// connection runs in http_session.cc.
#include "server/http_server.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "server/http_session.h"

namespace lutq::server {

using namespace http_detail;  // NOLINT: the transport's own internal names
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct HttpServer::Impl {
  Impl(Api& a, Scheduler& s, Metrics& m, HttpOptions o)
      : api(a), scheduler(s), metrics(m), options(std::move(o)), acceptor(io), signals(io) {}

  Api& api;
  Scheduler& scheduler;
  Metrics& metrics;
  HttpOptions options;
  // Declared before io: coroutine frames still open when io is destroyed refer to them.
  std::atomic<bool> draining{false};
  std::atomic<int> busy_requests{0};
  std::atomic<int> connections{0};
  std::mutex registry_mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> registry;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::signal_set signals;

  SessionContext context() { return SessionContext{api, scheduler, metrics, options, draining, busy_requests}; }
  asio::awaitable<void> accept_loop();
  void start_session(tcp::socket socket);
  void begin_shutdown();
  asio::awaitable<void> drain();
};

namespace {

// Beyond the connection limit: a short 503 written without waiting, then close.
void turn_away(tcp::socket& socket) {
  const std::string body = error_body(ApiError{503, "too many open connections; retry later", "server_error", "", ""});
  const std::string reply =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
      "Retry-After: 1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  beast::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(reply), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

}  // namespace

asio::awaitable<void> HttpServer::Impl::accept_loop() {
  while (!draining.load()) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::make_strand(io), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of descriptors and the like: wait a little instead of spinning.
      asio::steady_timer pause(io, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (connections.load() >= options.max_connections) {
      turn_away(socket);
      continue;
    }
    start_session(std::move(socket));
  }
}

void HttpServer::Impl::start_session(tcp::socket socket) {
  beast::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  auto conn = std::make_shared<Connection>(std::move(socket));
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    registry.emplace(conn.get(), conn);
  }
  connections.fetch_add(1);
  Connection* key = conn.get();
  // The handler runs while io runs, so within the Impl's life.
  asio::co_spawn(conn->stream.get_executor(), run_session(context(), conn), [this, key](std::exception_ptr) {
    {
      std::lock_guard<std::mutex> lock(registry_mu);
      registry.erase(key);
    }
    connections.fetch_sub(1);
  });
}

void HttpServer::Impl::begin_shutdown() {
  if (draining.exchange(true)) return;
  std::fprintf(stderr, "lutq: shutting down: no new connections; %d request(s) in progress get up to %d s\n",
               busy_requests.load(), options.shutdown_timeout_s);
  beast::error_code ec;
  acceptor.close(ec);
  signals.cancel(ec);
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    for (auto& [key, weak] : registry) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  // Connections waiting for a request close now; the others close after their answer.
  for (auto& c : open) {
    asio::post(c->stream.get_executor(), [c] {
      if (c->idle) c->stream.cancel();
    });
  }
  asio::co_spawn(io, drain(), asio::detached);
}

asio::awaitable<void> HttpServer::Impl::drain() {
  asio::steady_timer tick(io);
  beast::error_code ec;
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(options.shutdown_timeout_s);
  while (busy_requests.load() > 0 && Clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(50));
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (busy_requests.load() > 0) {
    std::fprintf(stderr, "lutq: shutting down: cancelling %d request(s) still in progress\n", busy_requests.load());
  }
  scheduler.stop();  // cancels what is left: streams end with an error event and [DONE]
  const Clock::time_point last = Clock::now() + std::chrono::seconds(3);
  while (connections.load() > 0 && Clock::now() < last) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  io.stop();
}

HttpServer::HttpServer(Api& api, Scheduler& scheduler, Metrics& metrics, HttpOptions options)
    : impl_(std::make_unique<Impl>(api, scheduler, metrics, std::move(options))) {}

HttpServer::~HttpServer() {
  impl_->io.stop();
}

Result<int> HttpServer::bind() {
  const HttpOptions& o = impl_->options;
  const std::string where = o.host + ":" + std::to_string(o.port);
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(o.host, ec);
  if (ec) return Status::invalid("--host: '" + o.host + "' is not an IP address (e.g. 127.0.0.1 or ::1)");
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(o.port));
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  // SO_REUSEADDR lets a restarted server bind past TIME_WAIT; without SO_REUSEPORT a second
  // server on the same port fails here instead of silently sharing the traffic.
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec == asio::error::address_in_use) {
    return Status(StatusCode::kIoError, "cannot listen on " + where + ": address already in use (is another server running there?)");
  }
  if (ec) return Status(StatusCode::kIoError, "cannot listen on " + where + ": " + ec.message());
  return static_cast<int>(a.local_endpoint().port());
}

Status HttpServer::serve() {
  Impl& impl = *impl_;
  if (!impl.acceptor.is_open()) return Status(StatusCode::kIoError, "serve() before a successful bind()");
  if (impl.options.stop_on_signals) {
    impl.signals.add(SIGINT);
    impl.signals.add(SIGTERM);
    Impl* p = impl_.get();
    impl.signals.async_wait([p](beast::error_code ec, int signo) {
      if (ec) return;
      std::fprintf(stderr, "lutq: received %s\n", signo == SIGINT ? "SIGINT" : "SIGTERM");
      p->begin_shutdown();
    });
  }
  asio::co_spawn(impl.io, impl.accept_loop(), asio::detached);
  std::vector<std::thread> threads;
  for (int i = 1; i < impl.options.io_threads; ++i) threads.emplace_back([&impl] { impl.io.run(); });
  impl.io.run();
  for (std::thread& t : threads) t.join();
  return Status::ok();
}

void HttpServer::stop() {
  Impl* p = impl_.get();
  asio::post(impl_->io, [p] { p->begin_shutdown(); });
}

}  // namespace lutq::server
