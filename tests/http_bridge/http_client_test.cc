// The webhook HTTP client against hostile endpoints (responses that made Beast throw or buffer
// without bound) and its delivery-time address check (DNS rebinding to refused addresses).
#include "http-bridge/http_client.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <atomic>
#include <string>
#include <thread>

namespace relay::http_bridge {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// A one-connection HTTP "endpoint" on 127.0.0.1 that answers any request with `response`.
class CannedEndpoint {
 public:
  explicit CannedEndpoint(std::string response) : response_(std::move(response)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      tcp::socket s = acceptor_.accept(ec);
      if (ec) return;
      accepted_ = true;
      net::streambuf buf;
      net::read_until(s, buf, "\r\n\r\n", ec);
      net::write(s, net::buffer(response_), ec);
      s.shutdown(tcp::socket::shutdown_send, ec);
      // Wait for the client to hang up, so it never sees a reset before reading.
      char c;
      while (!ec) s.read_some(net::buffer(&c, 1), ec);
    });
  }
  ~CannedEndpoint() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool accepted() const { return accepted_; }

 private:
  net::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::string response_;
  std::atomic<bool> accepted_{false};
  std::thread thread_;
};

controlplane::PostResult PostTo(uint16_t port, const controlplane::WebhookTargets* targets,
                                const std::string& host = "127.0.0.1") {
  return HttpPost("http://" + host + ":" + std::to_string(port) + "/hook", {}, "{}",
                  std::chrono::milliseconds(5000), targets);
}

TEST(HttpPost, SucceedsAgainstANormalEndpoint) {
  CannedEndpoint ep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
  auto r = PostTo(ep.port(), nullptr);
  EXPECT_EQ(r.status, 200) << r.error;
}

// Responses that made Beast throw std::length_error ("field value too large": a 64 KiB field,
// in the trailer, which header_limit does not cover) -- which used to end the control plane --
// or buffer without bound (chunk extensions). Each fails its delivery only.
TEST(HttpPost, HostileResponsesFailTheDeliveryOnly) {
  const std::string big(65534, 'a');
  for (const std::string& response : {
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + big + "\r\n\r\n",
           "HTTP/1.1 200 OK\r\nX: " + big + "\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + big + big + big +
               "\r\nx\r\n0\r\n\r\n"}) {
    CannedEndpoint ep(response);
    auto r = PostTo(ep.port(), nullptr);
    EXPECT_EQ(r.status, 0) << response.substr(0, 60);
    EXPECT_NE(r.error, "");
  }
}

// At delivery the resolved addresses are checked again (the name may have been re-pointed
// since the webhook was added): this server's own ports are never connected to.
TEST(HttpPost, RefusesOwnPortsAfterResolution) {
  CannedEndpoint ep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  controlplane::WebhookTargets targets(false, false);
  targets.AddOwnPort(ep.port());
  auto r = PostTo(ep.port(), &targets, "localhost");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("own ports"), std::string::npos) << r.error;
  EXPECT_FALSE(ep.accepted());
  controlplane::WebhookTargets allowing(false, true);
  allowing.AddOwnPort(ep.port());
  EXPECT_EQ(PostTo(ep.port(), &allowing, "localhost").status, 200);
  EXPECT_TRUE(ep.accepted());
}

TEST(HttpPost, OtherLoopbackPortsStayAllowed) {
  CannedEndpoint ep("HTTP/1.1 204 No Content\r\n\r\n");
  controlplane::WebhookTargets targets(false, false);
  targets.AddOwnPort(static_cast<uint16_t>(ep.port() == 1 ? 2 : 1));
  EXPECT_EQ(PostTo(ep.port(), &targets).status, 204);
}

}  // namespace
}  // namespace relay::http_bridge
