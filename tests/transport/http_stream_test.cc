// Streamed responses (HttpResponse::stream): the head goes out without a length, the producer's
// bytes follow as it wakes the connection from another thread, an end closes the connection, a
// peer that goes away stops the producer, and a server torn down (pool stopped and destroyed)
// with a stream open stops it exactly once (run under ASan in CI).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/io_pool.h"
#include "tests/testutil/raw_socket.h"
#include "tests/testutil/wait_for.h"
#include "transport/http_server.h"

namespace relay::transport {
namespace {

// Hands out what a test queues with Add()/Finish() from its own thread.
class Producer final : public ResponseStream {
 public:
  void Add(std::string bytes, bool end = false) {
    std::function<void()> wake;
    {
      absl::MutexLock lock(&mu_);
      queued_ += bytes;
      end_ |= end;
      wake = wake_;
    }
    if (wake) wake();
  }
  void Start(std::function<void()> wake) override {
    absl::MutexLock lock(&mu_);
    wake_ = std::move(wake);
  }
  Pulled Pull() override {
    absl::MutexLock lock(&mu_);
    Pulled p{std::move(queued_), end_};
    queued_.clear();
    return p;
  }
  std::string KeepAlive() override { return ": keep-alive\n\n"; }
  void Stop() override { stops.fetch_add(1); }

  std::atomic<int> stops{0};

 private:
  absl::Mutex mu_;
  std::string queued_ ABSL_GUARDED_BY(mu_);
  bool end_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
};

struct Server {
  explicit Server(std::shared_ptr<Producer> producer) {
    pool = std::make_unique<common::IoPool>(1);
    http = std::make_unique<HttpServer>(HttpServerOptions{}, *pool, [producer](const HttpRequest&) {
      HttpResponse r{200, "ignored", "text/event-stream"};
      r.headers.emplace_back("X-Test", "1");
      r.stream = producer;
      return r;
    });
    port = *http->Start();
    pool->Start("stream-test");
  }
  std::unique_ptr<common::IoPool> pool;
  std::unique_ptr<HttpServer> http;
  uint16_t port = 0;
};

constexpr char kRequest[] = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(HttpStream, WritesTheHeadThenWhatTheProducerHasUntilItEnds) {
  auto producer = std::make_shared<Producer>();
  Server server(producer);
  testutil::RawSocket c(server.port);
  ASSERT_TRUE(c.Send(kRequest));
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(c.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << c.received();
  EXPECT_NE(c.received().find("X-Test: 1\r\n"), std::string::npos);
  EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(c.received().find("Content-Length"), std::string::npos);
  producer->Add("one\n");
  ASSERT_TRUE(c.ReadUntil("one\n"));
  producer->Add("two\n", /*end=*/true);
  EXPECT_TRUE(c.ReadToEnd());
  EXPECT_NE(c.received().find("one\ntwo\n"), std::string::npos);
  EXPECT_EQ(c.received().find("ignored"), std::string::npos);
  EXPECT_TRUE(testutil::WaitFor([&] { return producer->stops.load() == 1; }));
}

TEST(HttpStream, APeerThatGoesAwayStopsTheProducer) {
  auto producer = std::make_shared<Producer>();
  Server server(producer);
  {
    testutil::RawSocket c(server.port);
    ASSERT_TRUE(c.Send(kRequest));
    ASSERT_TRUE(c.ReadUntil("\r\n\r\n"));
  }
  EXPECT_TRUE(testutil::WaitFor([&] { return producer->stops.load() == 1; }));
  producer->Add("after\n");  // the wake of an ended stream does nothing
  EXPECT_EQ(producer->stops.load(), 1);
}

TEST(HttpStream, AServerTornDownWithAStreamOpenStopsItOnce) {
  auto producer = std::make_shared<Producer>();
  auto server = std::make_unique<Server>(producer);
  testutil::RawSocket c(server->port);
  ASSERT_TRUE(c.Send(kRequest));
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n"));
  server->http.reset();
  server->pool->Stop();
  server->pool.reset();  // destroys the connection with its io_context
  EXPECT_EQ(producer->stops.load(), 1);
  producer->Add("late\n");  // a wake after the io_context is gone must not touch it
  EXPECT_EQ(producer->stops.load(), 1);
}

}  // namespace
}  // namespace relay::transport
