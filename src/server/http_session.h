// Internal to the HTTP transport (http_server.cc, http_session.cc): what a connection's coroutine
// shares with the server that accepted it.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include <atomic>
#include <memory>

#include "server/http_server.h"

namespace lutq::server::http_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;

// One accepted connection; lives as long as its coroutine and any watcher still holding it.
struct Connection {
  explicit Connection(asio::ip::tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool idle = true;   // waiting for a request head (the strand's state: closed at shutdown)
  bool gone = false;  // the peer closed while a job ran
};

// What sessions need from the server; outlives every session (serve() waits for them).
struct SessionContext {
  Api& api;
  Scheduler& scheduler;
  Metrics& metrics;
  const HttpOptions& options;
  std::atomic<bool>& draining;
  std::atomic<int>& busy_requests;  // requests between head and last byte of the answer
};

// Serves requests on the connection until it closes, fails, times out or the server drains.
asio::awaitable<void> run_session(SessionContext ctx, std::shared_ptr<Connection> conn);

}  // namespace lutq::server::http_detail
