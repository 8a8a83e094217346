// One connection of the HTTP transport: read a request within its deadlines and limits, hand it
// to Api, write the answer (whole, or streamed as the job produces text), repeat.
#include "server/http_session.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

namespace lutq::server::http_detail {
namespace {

namespace http = beast::http;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;

constexpr auto kJobPoll = std::chrono::milliseconds(250);
constexpr auto kLinger = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 8 << 20;

// Boost 1.74's beast::string_view is boost::string_view.
std::string_view sv(beast::string_view s) { return std::string_view(s.data(), s.size()); }

// Wakes a session waiting for its job: the job's notifier posts poke() to the session's strand.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  bool signalled = false;
  void poke() {
    signalled = true;
    timer.cancel();
  }
  asio::awaitable<void> wait(std::chrono::milliseconds at_most) {
    if (!signalled) {
      timer.expires_after(at_most);
      beast::error_code ec;
      co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    signalled = false;
  }
};

// Notices the peer closing while its job runs (no request bytes are read meanwhile): a readable
// socket with nothing to read is closed. Bytes of a next, pipelined request end the watch.
void watch_peer(const std::shared_ptr<Connection>& conn, const std::shared_ptr<Waiter>& waiter,
                const std::shared_ptr<Job>& job) {
  if (conn->buffer.size() > 0) return;  // a pipelined request already waits: the peer is there
  conn->stream.socket().async_wait(asio::ip::tcp::socket::wait_read, [conn, waiter, job](beast::error_code ec) {
    if (ec) return;
    char byte = 0;
    const ssize_t n = ::recv(conn->stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      conn->gone = true;
      job->cancel();
      waiter->poke();
    }
  });
}

struct Refusal {
  int status;
  std::string message;
};

// What the transport refuses once the head is in: compressed bodies (never expanded), any
// duplicate Content-Length (Beast merges equal ones), a POST without a length.
std::optional<Refusal> check_head(const http::request_parser<http::string_body>& parser) {
  const Request& head = parser.get();
  const auto encoding = head[http::field::content_encoding];
  if (!encoding.empty() && !beast::iequals(encoding, "identity")) {
    return Refusal{415, "Content-Encoding '" + std::string(encoding) + "' is not accepted: send the body uncompressed"};
  }
  if (head.count(http::field::content_length) > 1) return Refusal{400, "more than one Content-Length header"};
  if (head.method() == http::verb::post && !parser.content_length() && !parser.chunked()) {
    return Refusal{411, "a POST needs a Content-Length (or a chunked body)"};
  }
  return std::nullopt;
}

struct Outcome {
  int status = 200;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  bool keep_alive = true;
};

class Session {
 public:
  Session(SessionContext ctx, std::shared_ptr<Connection> conn) : ctx_(ctx), conn_(std::move(conn)) {}
  asio::awaitable<void> run();

 private:
  asio::awaitable<bool> serve_one();
  asio::awaitable<Outcome> answer(const Request& req, bool keep_alive);
  asio::awaitable<bool> write(const ApiReply& reply, bool keep_alive);
  asio::awaitable<Outcome> finish_job(const ApiReply& reply, bool keep_alive);
  asio::awaitable<Outcome> stream_job(const ApiReply& reply, bool keep_alive);
  asio::awaitable<void> refuse(int status, const std::string& message);
  void log(const std::string& method, const std::string& route, const Outcome& o, Clock::time_point start) const;

  SessionContext ctx_;
  std::shared_ptr<Connection> conn_;
};

asio::awaitable<void> Session::run() {
  while (!ctx_.draining.load()) {
    if (!co_await serve_one()) break;
  }
  beast::error_code ec;
  conn_->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  conn_->stream.close();
}

// Answers with an error and closes. The client may still be sending (a body over the limit):
// the rest is read and dropped for a moment (at most kLinger, kLingerBytes) so that closing
// does not reset the connection before the client has read the answer.
asio::awaitable<void> Session::refuse(int status, const std::string& message) {
  ApiReply r = error_reply(ApiError{status, message, status_error_type(status), "", ""});
  if (!co_await write(r, false)) co_return;
  beast::error_code ec;
  conn_->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  conn_->stream.expires_after(kLinger);
  std::array<char, 16384> sink;
  for (size_t dropped = 0; !ec && dropped < kLingerBytes;) {
    dropped += co_await conn_->stream.async_read_some(asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
  }
}

// Reads and answers one request; false when the connection is to close.
asio::awaitable<bool> Session::serve_one() {
  const HttpOptions& o = ctx_.options;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
  parser.body_limit(o.max_body_bytes);
  beast::error_code ec;
  conn_->idle = true;
  conn_->stream.expires_after(std::chrono::seconds(o.header_timeout_s));
  co_await http::async_read_header(conn_->stream, conn_->buffer, parser, asio::redirect_error(use_awaitable, ec));
  conn_->idle = false;
  if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == asio::error::eof) co_return false;
  // A head not complete within the deadline: tcp_stream has closed the socket already.
  if (ec == beast::error::timeout) co_return false;
  if (ec == http::error::body_limit) {  // a Content-Length over the limit, seen in the head
    co_await refuse(413, "the request body is larger than " + std::to_string(o.max_body_bytes) + " bytes");
    co_return false;
  }
  if (ec == http::error::header_limit) {
    co_await refuse(431, "the request head is larger than " + std::to_string(o.max_header_bytes) + " bytes");
    co_return false;
  }
  if (ec) {
    co_await refuse(400, "malformed HTTP request: " + ec.message());
    co_return false;
  }
  const Clock::time_point start = Clock::now();
  ctx_.busy_requests.fetch_add(1);
  struct Busy {
    std::atomic<int>& n;
    ~Busy() { n.fetch_sub(1); }
  } busy{ctx_.busy_requests};

  const Request& head = parser.get();
  const std::string method(head.method_string());
  if (const std::optional<Refusal> no = check_head(parser)) {
    co_await refuse(no->status, no->message);
    log(method, "other", Outcome{no->status, -1, -1, false}, start);
    co_return false;
  }
  if (!parser.is_done()) {
    if (beast::iequals(head[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, head.version()};
      conn_->stream.expires_after(std::chrono::seconds(o.write_timeout_s));
      co_await http::async_write(conn_->stream, cont, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return false;
    }
    conn_->stream.expires_after(std::chrono::seconds(o.body_timeout_s));
    co_await http::async_read(conn_->stream, conn_->buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      int status = 400;
      std::string message = "malformed request body: " + ec.message();
      if (ec == http::error::body_limit) {
        status = 413;
        message = "the request body is larger than " + std::to_string(o.max_body_bytes) + " bytes";
      } else if (ec == beast::error::timeout) {
        status = 408;  // logged only: tcp_stream closed the socket at the deadline
      }
      const bool closed = ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout;
      if (!closed) co_await refuse(status, message);
      log(method, "other", Outcome{status, -1, -1, false}, start);
      co_return false;
    }
  }
  const bool keep_alive = parser.get().keep_alive() && !ctx_.draining.load();
  const Outcome out = co_await answer(parser.get(), keep_alive);
  co_return out.keep_alive;
}

asio::awaitable<Outcome> Session::answer(const Request& req, bool keep_alive) {
  const Clock::time_point start = Clock::now();
  ApiReply reply;
  try {
    reply = ctx_.api.handle(ApiRequest{sv(req.method_string()), sv(req.target()), req.body(),
                                       sv(req[http::field::authorization])});
  } catch (const std::exception& e) {
    reply = error_reply(ApiError{500, std::string("internal error: ") + e.what(), "server_error", "", ""});
  }
  const std::string method(req.method_string());
  Outcome out{reply.status, -1, -1, keep_alive};
  if (!reply.job) {
    out.keep_alive = co_await write(reply, keep_alive) && keep_alive;
  } else if (reply.stream) {
    out = co_await stream_job(reply, keep_alive);
  } else {
    out = co_await finish_job(reply, keep_alive);
  }
  ctx_.metrics.count_request(reply.route, out.status);
  log(method, reply.route, out, start);
  co_return out;
}

asio::awaitable<bool> Session::write(const ApiReply& reply, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
  res.set(http::field::server, "lutq");
  res.set(http::field::content_type, reply.content_type);
  for (const auto& [name, value] : reply.headers) res.set(name, value);
  res.keep_alive(keep_alive);
  res.body() = reply.body;
  res.prepare_payload();
  beast::error_code ec;
  conn_->stream.expires_after(std::chrono::seconds(ctx_.options.write_timeout_s));
  co_await http::async_write(conn_->stream, res, asio::redirect_error(use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<Outcome> Session::finish_job(const ApiReply& reply, bool keep_alive) {
  const std::shared_ptr<Job>& job = reply.job;
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  std::weak_ptr<Waiter> weak = waiter;
  auto ex = co_await asio::this_coro::executor;
  job->set_notifier([weak, ex] {
    asio::post(ex, [weak] {
      if (auto w = weak.lock()) w->poke();
    });
  });
  watch_peer(conn_, waiter, job);
  std::string text;
  JobUpdate u;
  while (true) {
    u = job->wait(std::chrono::milliseconds(0));
    text += u.text;
    if (u.finished || conn_->gone) break;
    co_await waiter->wait(kJobPoll);
  }
  job->set_notifier(nullptr);
  beast::error_code ec;
  conn_->stream.socket().cancel(ec);  // ends the watch
  if (conn_->gone) {
    job->cancel();
    co_return Outcome{499, u.prompt_tokens, u.completion_tokens, false};
  }
  const ApiReply done = full_reply(reply, text, u);
  const bool written = co_await write(done, keep_alive);
  co_return Outcome{done.status, u.prompt_tokens, u.completion_tokens, written && keep_alive};
}

asio::awaitable<Outcome> Session::stream_job(const ApiReply& reply, bool keep_alive) {
  const std::shared_ptr<Job>& job = reply.job;
  auto ex = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(ex);
  std::weak_ptr<Waiter> weak = waiter;
  job->set_notifier([weak, ex] {
    asio::post(ex, [weak] {
      if (auto w = weak.lock()) w->poke();
    });
  });
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "lutq");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(keep_alive);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  beast::error_code ec;
  conn_->stream.expires_after(std::chrono::seconds(ctx_.options.write_timeout_s));
  co_await http::async_write_header(conn_->stream, sr, asio::redirect_error(use_awaitable, ec));
  std::string pending = ec ? std::string() : stream_open(reply);
  JobUpdate u;
  watch_peer(conn_, waiter, job);
  while (!ec && !conn_->gone) {
    u = job->wait(std::chrono::milliseconds(0));
    pending += stream_text(reply, u.text);
    if (u.finished) pending += stream_close(reply, u);
    if (!pending.empty()) {
      conn_->stream.expires_after(std::chrono::seconds(ctx_.options.write_timeout_s));
      co_await asio::async_write(conn_->stream, http::make_chunk(asio::buffer(pending)),
                                 asio::redirect_error(use_awaitable, ec));
      pending.clear();
    }
    if (u.finished || ec) break;
    co_await waiter->wait(kJobPoll);
  }
  job->set_notifier(nullptr);
  beast::error_code ignored;
  conn_->stream.socket().cancel(ignored);
  if (ec || conn_->gone) {
    job->cancel();  // the client went away: free the slot
    co_return Outcome{499, u.prompt_tokens, u.completion_tokens, false};
  }
  conn_->stream.expires_after(std::chrono::seconds(ctx_.options.write_timeout_s));
  co_await asio::async_write(conn_->stream, http::make_chunk_last(), asio::redirect_error(use_awaitable, ec));
  co_return Outcome{200, u.prompt_tokens, u.completion_tokens, !ec && keep_alive};
}

void Session::log(const std::string& method, const std::string& route, const Outcome& o,
                  Clock::time_point start) const {
  if (!ctx_.options.log_requests) return;
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::string tokens;
  if (o.prompt_tokens >= 0) {
    tokens = " prompt_tokens=" + std::to_string(o.prompt_tokens) + " completion_tokens=" +
             std::to_string(o.completion_tokens);
  }
  std::fprintf(stderr, "lutq: %s %s %d%s %.1f ms\n", method.c_str(), route.c_str(), o.status, tokens.c_str(), ms);
}

}  // namespace

asio::awaitable<void> run_session(SessionContext ctx, std::shared_ptr<Connection> conn) {
  Session session(ctx, std::move(conn));
  co_await session.run();
}

}  // namespace lutq::server::http_detail
