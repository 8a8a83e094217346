// The HTTP transport on 127.0.0.1 with a tiny random model: raw-socket probes of the limits
// (pipelining, duplicate Content-Length, POST without length, Content-Encoding, chunked body
// limit, slow request heads), the API key, /v1/models/{id}, exclusive binding, disconnect
// cancellation and the graceful shutdown. Every read is bounded in time; no assertion is on a
// duration.
#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "gen/bpe.h"
#include "support/byte_vocab.h"
#include "support/tiny_llama.h"

namespace lutq::server {
namespace {

using Clock = std::chrono::steady_clock;

using testing::byte_vocab;

testing::TinySpec spec() {
  testing::TinySpec s = testing::small_tiny_spec();
  s.n_vocab = 260;
  s.ctx = 256;
  return s;
}

struct Fixture {
  // ctx: positions per slot; long generations (4000 tokens) outlast the client's moves.
  explicit Fixture(HttpOptions o = {}, std::string key = "", int64_t ctx = 256) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.log_requests = false;
    SchedulerOptions so;
    so.parallel = 2;
    so.ctx = ctx;
    so.queue_limit = 2;
    scheduler = std::move(*Scheduler::create(model, tok, pool, so, metrics));
    api = std::make_unique<Api>(*scheduler, tok, metrics, ApiOptions{"tiny", key, {}});
    http = std::make_unique<HttpServer>(*api, *scheduler, metrics, o);
    Result<int> p = http->bind();
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    port = p.is_ok() ? *p : 0;
    thread = std::thread([this] { EXPECT_TRUE(http->serve().is_ok()); });
  }
  ~Fixture() {
    http->stop();
    thread.join();
  }

  ThreadPool pool{1};
  io::GgufFile gguf = testing::tiny_llama_gguf(spec());
  model::Model model = std::move(*model::Model::load(gguf, model::LoadOptions{}, pool));
  gen::Tokenizer tok{byte_vocab()};
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Api> api;
  std::unique_ptr<HttpServer> http;
  int port = 0;
  std::thread thread;
};

// A loopback client socket; every read waits at most `limit`.
class Client {
 public:
  explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool connected() const { return connected_; }
  void send(const std::string& s) { ASSERT_EQ(::send(fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size())); }
  // Reads until the peer closes, `until` appears `times` times, or `limit` passes.
  std::string read(const std::string& until = "", int times = 1, std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::string out;
    const Clock::time_point end = Clock::now() + limit;
    while (Clock::now() < end) {
      if (!until.empty() && occurrences(out, until) >= times) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  bool closed() const { return closed_; }
  static int occurrences(const std::string& s, const std::string& what) {
    int n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
};

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  Fixture f;
  Client c(f.port);
  ASSERT_TRUE(c.connected());
  c.send(get("/health") + get("/v1/models") + get("/nope") + get("/health", "Connection: close\r\n"));
  const std::string r = c.read("HTTP/1.1", 4);
  ASSERT_EQ(Client::occurrences(r, "HTTP/1.1 "), 4) << r;
  const size_t a = r.find("{\"status\":\"ok\"}"), b = r.find("\"object\":\"list\""), d = r.find("404 Not Found");
  EXPECT_TRUE(a < b && b < d) << r;
  c.read();
  EXPECT_TRUE(c.closed());
}

TEST(HttpServer, RefusesAmbiguousOrUnboundedBodies) {
  HttpOptions o;
  o.max_body_bytes = 1024;
  Fixture f(o);
  const std::string body = R"({"prompt":"hi","max_tokens":1})";
  {  // duplicate, conflicting Content-Length
    Client c(f.port);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\n" + body);
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  }
  {  // duplicate, equal Content-Length (RFC 9112 allows merging; we refuse any duplicate)
    Client c(f.port);
    const std::string n = std::to_string(body.size());
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + n + "\r\nContent-Length: " + n + "\r\n\r\n" + body);
    const std::string r = c.read("\r\n\r\n");
    EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
  }
  {  // POST without a length: answered at once, not after a read timeout
    Client c(f.port);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 411"), std::string::npos);
  }
  {  // compressed body: refused before anything is expanded
    Client c(f.port);
    c.send(post("/v1/completions", body, "Content-Encoding: gzip\r\n"));
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 415"), std::string::npos);
  }
  {  // a chunked body beyond the limit
    Client c(f.port);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = "400\r\n" + std::string(1024, 'a') + "\r\n";
    c.send(chunk);
    c.send(chunk);
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 413"), std::string::npos);
  }
  {  // a Content-Length over the limit: 413 from the head alone, read while the body still comes
    Client c(f.port);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(2000, ' '));
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 413"), std::string::npos);
  }
  {  // a header section beyond 16 KiB
    Client c(f.port);
    c.send("GET /health HTTP/1.1\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
    EXPECT_NE(c.read("\r\n\r\n").find("HTTP/1.1 431"), std::string::npos);
  }
}

TEST(HttpServer, SlowHeadIsDroppedWhileHealthAnswers) {
  HttpOptions o;
  o.header_timeout_s = 1;
  Fixture f(o);
  Client slow(f.port);
  slow.send("GET /health HTTP/1.1\r\nHo");
  Client c(f.port);
  c.send(get("/health"));
  EXPECT_NE(c.read("ok\"}").find("200 OK"), std::string::npos);
  const std::string r = slow.read();  // the deadline closes it (bounded by read's limit)
  EXPECT_TRUE(slow.closed());
  EXPECT_EQ(r, "");
}

TEST(HttpServer, ConnectionsBeyondTheLimitAreTurnedAway) {
  HttpOptions o;
  o.max_connections = 2;
  Fixture f(o);
  Client a(f.port), b(f.port);
  a.send(get("/health"));
  b.send(get("/health"));
  ASSERT_NE(a.read("ok\"}").find("200 OK"), std::string::npos);
  ASSERT_NE(b.read("ok\"}").find("200 OK"), std::string::npos);
  Client c(f.port);
  const std::string r = c.read();
  EXPECT_NE(r.find("HTTP/1.1 503"), std::string::npos) << r;
  EXPECT_NE(r.find("Retry-After: 1"), std::string::npos) << r;
  EXPECT_NE(r.find("\"too many open connections; retry later\""), std::string::npos) << r;
  a.close();  // a place frees up
  const Clock::time_point end = Clock::now() + std::chrono::seconds(20);
  std::string again;
  while (Clock::now() < end && again.find("200 OK") == std::string::npos) {
    Client d(f.port);
    d.send(get("/health", "Connection: close\r\n"));
    again = d.read();
  }
  EXPECT_NE(again.find("200 OK"), std::string::npos) << again;
}

TEST(HttpServer, ApiKeyGuardsEverythingButHealth) {
  Fixture f(HttpOptions{}, "s3cret");
  Client c(f.port);
  c.send(get("/health") + get("/v1/models") + get("/v1/models", "Authorization: Bearer wrong\r\n") +
         get("/v1/models/tiny", "Authorization: Bearer s3cret\r\n") +
         get("/v1/models/other", "Authorization: Bearer s3cret\r\n"));
  const std::string r = c.read("HTTP/1.1", 5);
  ASSERT_EQ(Client::occurrences(r, "HTTP/1.1 "), 5) << r;
  EXPECT_EQ(Client::occurrences(r, "HTTP/1.1 401"), 2) << r;
  EXPECT_NE(r.find("WWW-Authenticate: Bearer"), std::string::npos);
  EXPECT_NE(r.find("{\"created\""), std::string::npos) << r;  // the model object alone
  EXPECT_NE(r.find("model_not_found"), std::string::npos) << r;
}

TEST(HttpServer, SecondServerOnTheSamePortIsRefused) {
  Fixture f;
  Api& api = *f.api;
  HttpOptions o;
  o.port = f.port;
  HttpServer second(api, *f.scheduler, f.metrics, o);
  Result<int> r = second.bind();
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("address already in use"), std::string::npos) << r.status().message();
}

TEST(HttpServer, CompletionAndDisconnectFreesTheSlot) {
  Fixture f(HttpOptions{}, "", 4096);
  {
    Client c(f.port);
    c.send(post("/v1/completions", R"({"prompt":"hello","max_tokens":4,"temperature":0})"));
    const std::string r = c.read("}}");
    EXPECT_NE(r.find("HTTP/1.1 200"), std::string::npos) << r;
    EXPECT_NE(r.find("\"completion_tokens\":4"), std::string::npos) << r;
  }
  // A long non-streaming generation whose client leaves: the job is cancelled.
  {
    Client c(f.port);
    c.send(post("/v1/completions", R"({"prompt":"hello","max_tokens":4000,"temperature":0})"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const Clock::time_point end = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < end && f.metrics.render(f.scheduler->gauges()).find("reason=\"cancelled\"} 1") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(f.metrics.render(f.scheduler->gauges()).find("reason=\"cancelled\"} 1"), std::string::npos)
      << f.metrics.render(f.scheduler->gauges());
}

TEST(HttpServer, ShutdownEndsOpenStreamsWithAnErrorAndDone) {
  HttpOptions o;
  o.shutdown_timeout_s = 0;
  Fixture f(o, "", 4096);
  Client c(f.port);
  c.send(post("/v1/chat/completions",
              R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":4000,"temperature":0,"stream":true})"));
  EXPECT_NE(c.read("data: ").find("200 OK"), std::string::npos);
  f.http->stop();
  const std::string rest = c.read("[DONE]");
  EXPECT_NE(rest.find("\"error\""), std::string::npos) << rest;
  EXPECT_NE(rest.find("data: [DONE]"), std::string::npos) << rest;
}

}  // namespace
}  // namespace lutq::server
