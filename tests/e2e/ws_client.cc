#include "tests/e2e/ws_client.h"

#include <simdjson.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace relay::testutil {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct WsClient::Impl {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buffer;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> frames;
  bool closed = false;
  int close_code = 0;
  std::deque<std::pair<std::string, bool>> out;

  void Read() {
    ws.async_read(buffer, [this](beast::error_code ec, size_t) {
      std::lock_guard<std::mutex> lock(mu);
      if (ec) {
        closed = true;
        close_code = ws.reason().code;
        cv.notify_all();
        return;
      }
      frames.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
      cv.notify_all();
      net::post(ioc, [this] { Read(); });
    });
  }

  void Write() {
    ws.binary(out.front().second);
    ws.async_write(net::buffer(out.front().first), [this](beast::error_code, size_t) {
      out.pop_front();
      if (!out.empty()) Write();
    });
  }
};

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsClient::~WsClient() {
  net::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ec;
    impl->ws.next_layer().close(ec);
  });
  impl_->thread.join();
}

std::unique_ptr<WsClient> WsClient::Connect(uint16_t port, const std::string& target,
                                            bool deflate) {
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  if (deflate) {
    websocket::permessage_deflate pmd;
    pmd.client_enable = true;
    impl->ws.set_option(pmd);
  }
  impl->ws.next_layer().connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return nullptr;
  websocket::response_type res;
  impl->ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  if (ec) return nullptr;
  bool negotiated =
      std::string(res[beast::http::field::sec_websocket_extensions]).find("permessage-deflate") !=
      std::string::npos;
  impl->Read();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->ioc.run(); });
  auto client = std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
  client->deflate_ = negotiated;
  return client;
}

void WsClient::Send(const std::string& text) {
  net::post(impl_->ioc, [impl = impl_.get(), text] {
    impl->out.emplace_back(text, false);
    if (impl->out.size() == 1) impl->Write();
  });
}

void WsClient::SendBinary(const std::string& bytes) {
  net::post(impl_->ioc, [impl = impl_.get(), bytes] {
    impl->out.emplace_back(bytes, true);
    if (impl->out.size() == 1) impl->Write();
  });
}

std::optional<std::string> WsClient::Receive(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [this] { return !impl_->frames.empty() || impl_->closed; });
  if (impl_->frames.empty()) return std::nullopt;
  std::string f = std::move(impl_->frames.front());
  impl_->frames.pop_front();
  return f;
}

std::optional<std::string> WsClient::ReceiveEvent(const std::string& event,
                                                  std::chrono::milliseconds timeout,
                                                  const std::string& channel) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto f = Receive(left);
    if (!f) return std::nullopt;
    if (JsonField(*f, "event") == event &&
        (channel.empty() || JsonField(*f, "channel") == channel)) {
      return f;
    }
  }
}

bool WsClient::QuietFor(std::chrono::milliseconds window) { return !Receive(window).has_value(); }

int WsClient::WaitClosed(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [this] { return impl_->closed; });
  return impl_->closed ? impl_->close_code : 0;
}

bool WsClient::Established() {
  auto f = Receive();
  if (!f || JsonField(*f, "event") != "pusher:connection_established") return false;
  std::string data = JsonField(*f, "data");
  socket_id_ = JsonField(data, "socket_id");
  return !socket_id_.empty();
}

std::string JsonField(const std::string& json, const std::string& field) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(json).get(doc)) return {};
  simdjson::dom::element v;
  if (doc[field].get(v)) return {};
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) return std::string(s);
  return simdjson::minify(v);
}

}  // namespace relay::testutil
