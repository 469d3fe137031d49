// File: http_server.h
// The HTTP/1.1 front door shared by the control plane (HTTP API) and the data plane (WebSocket
// upgrades, plus the HTTP API in the one-process `relay`). Accepts on one thread and hands each
// connection to a context of an IoPool for life; keep-alive, header and body limits, timeouts.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/io_pool.h"
#include "http-bridge/http_types.h"

namespace relay::http_bridge {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// Takes over a connection whose request is a WebSocket upgrade. Called on the connection's
// io_context thread. `leftover` holds bytes the client sent after the request (a client that
// does not wait for the 101 response); they belong to the WebSocket stream.
using UpgradeHandler = std::function<void(boost::beast::tcp_stream stream, BeastRequest request,
                                          std::string leftover)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port (see HttpServer::port()).
  uint64_t body_limit = 256 * 1024;
  uint32_t header_limit = 16 * 1024;
};

// Thread-safe to Stop() from any thread. Owned by the process's server object.
class HttpServer {
 public:
  HttpServer(HttpServerOptions options, common::IoPool& pool, HttpHandler handler,
             UpgradeHandler upgrade = nullptr);
  ~HttpServer();

  // Binds and starts accepting. Returns the bound port.
  absl::StatusOr<uint16_t> Start();
  // Stops accepting new connections; open connections finish their current request.
  void StopAccepting();
  uint16_t port() const { return port_; }
  uint64_t requests_served() const { return requests_->load(); }

 private:
  void DoAccept();

  HttpServerOptions options_;
  common::IoPool& pool_;
  HttpHandler handler_;
  UpgradeHandler upgrade_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::shared_ptr<std::atomic<uint64_t>> requests_ = std::make_shared<std::atomic<uint64_t>>(0);
};

}  // namespace relay::http_bridge
