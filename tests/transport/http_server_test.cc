// The HTTP server's lifetime contract: connections still open (idle keep-alive or mid-request)
// when the server is destroyed finish on their own, and destroying the pool under them is
// clean (run under ASan: sessions used to keep references into the destroyed server); the
// accept hands each connection's context index to the upgrade handler; StopAccepting works
// from any thread; /ready asks the readiness check, /health and / do not.
#include "transport/http_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/io_pool.h"
#include "tests/testutil/wait_for.h"

namespace relay::transport {
namespace {

// A blocking loopback client whose reads give up after 10 s instead of hanging the test.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { close(fd_); }

  bool connected() const { return connected_; }

  bool Send(const std::string& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // One response with a Content-Length body: "<status> <body>", or "" when the connection
  // ended (or timed out) first.
  std::string ReadResponse() {
    while (true) {
      size_t head_end = buffer_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t cl = buffer_.find("Content-Length: ");
        size_t length = cl < head_end ? std::stoul(buffer_.substr(cl + 16)) : 0;
        if (buffer_.size() >= head_end + 4 + length) {
          std::string status = buffer_.substr(9, 3);
          std::string body = buffer_.substr(head_end + 4, length);
          buffer_.erase(0, head_end + 4 + length);
          return status + " " + body;
        }
      }
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return "";
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

HttpHandler Echo() {
  // Owns its state (a shared counter) like the handlers the planes pass: it may outlive the
  // server inside a connection.
  auto calls = std::make_shared<std::atomic<int>>(0);
  return [calls](const HttpRequest& r) {
    return HttpResponse{200, r.path + " #" + std::to_string(++*calls), "text/plain"};
  };
}

const char kGet[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(HttpServer, ConnectionsOpenWhenTheServerIsDestroyedFinishTheirRequests) {
  auto pool = std::make_unique<common::IoPool>(2);
  auto server = std::make_unique<HttpServer>(HttpServerOptions{}, *pool, Echo());
  auto port = server->Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool->Start("http-test");

  // `idle` has been served and waits for its next keep-alive request; `mid` has been served and
  // has sent half of its next request.
  Client idle(*port), mid(*port), late_mid(*port);
  ASSERT_TRUE(idle.Send(kGet));
  EXPECT_EQ(idle.ReadResponse(), "200 /a #1");
  ASSERT_TRUE(mid.Send(kGet));
  EXPECT_EQ(mid.ReadResponse(), "200 /a #2");
  ASSERT_TRUE(mid.Send("GET /b HTTP/1.1\r\nHost: x\r\n"));
  ASSERT_TRUE(late_mid.Send(kGet));
  EXPECT_EQ(late_mid.ReadResponse(), "200 /a #3");
  ASSERT_TRUE(late_mid.Send("GET /c HTTP/1.1\r\n"));

  server.reset();

  // Nothing new is accepted, but what was open keeps its options and handler.
  ASSERT_TRUE(mid.Send("\r\n"));
  EXPECT_EQ(mid.ReadResponse(), "200 /b #4");
  ASSERT_TRUE(idle.Send("GET /d HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(idle.ReadResponse(), "200 /d #5");

  // The pool goes with connections still open, one of them mid-request.
  pool.reset();
  EXPECT_EQ(late_mid.ReadResponse(), "");  // closed, not answered
}

// A response given later (HttpResponse::later) is answered from another thread, without
// holding the connection's thread meanwhile (another connection is served while it waits), and
// the connection stays alive for its next request; an answer function dropped unanswered closes
// the connection.
TEST(HttpServer, AnswersGivenLaterFromAnotherThread) {
  common::IoPool pool(1);  // one thread: a blocked thread would stall the other connection
  std::mutex mu;
  std::vector<std::function<void(HttpResponse)>> waiting;
  HttpServer server(HttpServerOptions{}, pool, [&](const HttpRequest& r) {
    if (r.path == "/now") return HttpResponse{200, "now", "text/plain"};
    HttpResponse later;
    if (r.path == "/drop") {
      later.later = [](std::function<void(HttpResponse)>) {};
    } else {
      later.later = [&](std::function<void(HttpResponse)> answer) {
        std::lock_guard lock(mu);
        waiting.push_back(std::move(answer));
      };
    }
    return later;
  });
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  Client waiter(*port), other(*port), dropped(*port);
  ASSERT_TRUE(waiter.Send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(testutil::WaitFor([&] {
    std::lock_guard lock(mu);
    return waiting.size() == 1;
  }));
  ASSERT_TRUE(other.Send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(other.ReadResponse(), "200 now");
  std::thread([&] {
    std::lock_guard lock(mu);
    waiting[0](HttpResponse{202, "later", "text/plain"});
    waiting[0](HttpResponse{500, "twice", "text/plain"});  // only the first answer counts
  }).join();
  EXPECT_EQ(waiter.ReadResponse(), "202 later");
  ASSERT_TRUE(waiter.Send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(waiter.ReadResponse(), "200 now");
  ASSERT_TRUE(dropped.Send("GET /drop HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(dropped.ReadResponse(), "");
  server.StopAccepting();
  pool.Stop();
}

TEST(HttpServer, DestroyingThePoolFirstIsClean) {
  auto pool = std::make_unique<common::IoPool>(2);
  auto server = std::make_unique<HttpServer>(HttpServerOptions{}, *pool, Echo());
  auto port = server->Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool->Start("http-test");
  Client mid(*port);
  ASSERT_TRUE(mid.Send(kGet));
  EXPECT_EQ(mid.ReadResponse(), "200 /a #1");
  ASSERT_TRUE(mid.Send("GET /b HTTP/1.1\r\n"));
  pool->Stop();
  server.reset();  // with context 0 stopped: nothing to wait for
  pool.reset();
  EXPECT_EQ(mid.ReadResponse(), "");
}

TEST(HttpServer, StopAcceptingFromAHandlerRefusesNewConnections) {
  common::IoPool pool(2);
  HttpServer* self = nullptr;
  HttpServer server({}, pool, [&self](const HttpRequest&) {
    self->StopAccepting();  // on a pool thread, maybe context 0's own
    return HttpResponse{200, "stopped", "text/plain"};
  });
  self = &server;
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  Client first(*port);
  ASSERT_TRUE(first.Send(kGet));
  EXPECT_EQ(first.ReadResponse(), "200 stopped");
  Client second(*port);
  EXPECT_FALSE(second.connected());
  server.StopAccepting();  // idempotent
  pool.Stop();
}

TEST(HttpServer, UpgradeHandlerGetsTheIndexOfTheConnectionsContext) {
  common::IoPool pool(3);
  std::mutex mu;
  std::set<size_t> contexts;
  bool matches = true;
  HttpServer server(
      {}, pool, nullptr, [&](size_t context, ClientStream stream, BeastRequest, std::string) {
        std::lock_guard lock(mu);
        matches = matches && &stream.plain->get_executor().context() == &pool.context(context) &&
                  pool.context(context).get_executor().running_in_this_thread();
        contexts.insert(context);
      });
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  const std::string upgrade =
      "GET /app/key HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>(*port));
    ASSERT_TRUE(clients.back()->Send(upgrade));
  }
  EXPECT_TRUE(testutil::WaitFor([&] {
    std::lock_guard lock(mu);
    return contexts.size() == 3;
  }));
  pool.Stop();
  std::lock_guard lock(mu);
  EXPECT_TRUE(matches);
  EXPECT_EQ(contexts, (std::set<size_t>{0, 1, 2}));
}

}  // namespace
}  // namespace relay::transport

namespace relay::transport {
namespace {

TEST(HttpServer, ReadyAsksTheReadinessCheckAndHealthDoesNot) {
  common::IoPool pool(1);
  auto state = std::make_shared<std::atomic<int>>(0);  // 0 ready, 1 not ready, 2 throws
  HttpServerOptions options;
  options.readiness = [state]() -> Readiness {
    if (state->load() == 2) throw std::runtime_error("boom");
    if (state->load() == 1) return {false, "not attached to the control plane"};
    return {};
  };
  HttpServer server(std::move(options), pool, Echo());
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  Client c(*port);
  auto get = [&c](const std::string& path) {
    if (!c.Send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")) return std::string("send failed");
    return c.ReadResponse();
  };
  EXPECT_EQ(get("/ready"), R"(200 {"ready":true})");
  state->store(1);
  EXPECT_EQ(get("/ready"), R"(503 {"ready":false,"reason":"not attached to the control plane"})");
  EXPECT_EQ(get("/health"), R"(200 {"status":"ok"})");
  EXPECT_EQ(get("/"), "200 OK");
  state->store(2);
  EXPECT_EQ(get("/ready"), R"(503 {"ready":false,"reason":"the readiness check failed"})");
  EXPECT_EQ(get("/a"), "200 /a #1");  // other paths go to the handler
  pool.Stop();
}

TEST(HttpServer, UpgradesRefusedWith503WhileAcceptUpgradesSaysNo) {
  common::IoPool pool(1);
  auto refuse = std::make_shared<std::atomic<bool>>(true);
  auto upgrades = std::make_shared<std::atomic<int>>(0);
  HttpServerOptions options;
  options.accept_upgrades = [refuse]() -> Readiness {
    if (refuse->load()) return {false, "Server is draining"};
    return {};
  };
  HttpServer server(std::move(options), pool, Echo(),
                    [upgrades](size_t, ClientStream, BeastRequest, std::string) {
                      ++*upgrades;  // the stream closes with the handler
                    });
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  const std::string upgrade =
      "GET /app/k HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  Client refused(*port);
  ASSERT_TRUE(refused.Send(upgrade));
  EXPECT_EQ(refused.ReadResponse(), R"(503 {"error":"Server is draining","code":503})");
  EXPECT_EQ(upgrades->load(), 0);
  refuse->store(false);
  Client accepted(*port);
  ASSERT_TRUE(accepted.Send(upgrade));
  EXPECT_EQ(accepted.ReadResponse(), "");  // handed to the handler, which closed it
  EXPECT_EQ(upgrades->load(), 1);
  pool.Stop();
}

TEST(HttpServer, WithoutAReadinessCheckReadyIsAlwaysTrue) {
  common::IoPool pool(1);
  HttpServer server({}, pool, Echo());
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  pool.Start("http-test");
  Client c(*port);
  ASSERT_TRUE(c.Send("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.ReadResponse(), R"(200 {"ready":true})");
  pool.Stop();
}

}  // namespace
}  // namespace relay::transport
