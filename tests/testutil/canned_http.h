// File: canned_http.h
// A one-connection HTTP endpoint on 127.0.0.1 for client tests: it answers whatever arrives with
// a fixed response, so a test can hand the client hostile bytes.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <thread>

namespace relay::testutil {

namespace canned_net = boost::asio;

// A one-connection HTTP "endpoint" on 127.0.0.1 that answers any request with `response`.
class CannedEndpoint {
 public:
  explicit CannedEndpoint(std::string response) : response_(std::move(response)) {
    acceptor_.open(canned_net::ip::tcp::v4());
    acceptor_.bind({canned_net::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      canned_net::ip::tcp::socket s = acceptor_.accept(ec);
      if (ec) return;
      accepted_ = true;
      canned_net::streambuf buf;
      canned_net::read_until(s, buf, "\r\n\r\n", ec);
      canned_net::write(s, canned_net::buffer(response_), ec);
      s.shutdown(canned_net::ip::tcp::socket::shutdown_send, ec);
      // Wait for the client to hang up, so it never sees a reset before reading.
      char c;
      while (!ec) s.read_some(canned_net::buffer(&c, 1), ec);
    });
  }
  ~CannedEndpoint() {
    boost::system::error_code ec;
    // Closing the acceptor from this thread does not wake a blocking accept() everywhere
    // (not under ASan): when no client came, be the client, so the thread returns.
    if (!accepted_) {
      canned_net::ip::tcp::socket wake(io_);
      wake.connect(acceptor_.local_endpoint(), ec);
      wake.close(ec);
    }
    acceptor_.close(ec);
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool accepted() const { return accepted_; }

 private:
  canned_net::io_context io_;
  canned_net::ip::tcp::acceptor acceptor_{io_};
  std::string response_;
  std::atomic<bool> accepted_{false};
  std::thread thread_;
};

}  // namespace relay::testutil
