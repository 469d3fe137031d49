// File: http_server.h
// The HTTP/1.1 front door shared by the control plane (HTTP API) and the data plane (WebSocket
// upgrades, plus the HTTP API in the one-process `relay`). Accepts on one thread and hands each
// connection to a context of an IoPool for life; keep-alive, header and body limits, timeouts.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/io_pool.h"
#include "transport/http_types.h"
#include "transport/tls.h"

namespace relay::transport {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// The handler's view of a parsed request (the body is moved out of `req`).
HttpRequest ToHttpRequest(BeastRequest req, std::string peer_ip);

using TlsStream = boost::asio::ssl::stream<boost::beast::tcp_stream>;

// The connection a WebSocket upgrade takes over: plain TCP (`plain`), or TLS over TCP (`tls`,
// with the context its handshake used, kept alive as long as the connection).
struct ClientStream {
  std::optional<boost::beast::tcp_stream> plain;
  std::unique_ptr<TlsStream> tls;
  std::shared_ptr<boost::asio::ssl::context> tls_context;
};

// Takes over a connection whose request is a WebSocket upgrade. Called on the connection's
// io_context thread; `context` is that io_context's index in the server's IoPool (the data plane
// runs one shard per context). `leftover` holds bytes the client sent after the request (a
// client that does not wait for the 101 response); they belong to the WebSocket stream.
using UpgradeHandler = std::function<void(size_t context, ClientStream stream, BeastRequest request,
                                          std::string leftover)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port (see HttpServer::port()).
  uint64_t body_limit = 256 * 1024;
  // Bounds the request line plus headers, and separately each chunk header (size and
  // extensions) and the chunked trailer: none of them may buffer more than this.
  uint32_t header_limit = 16 * 1024;
  // Answers GET /ready (200, or 503 with the reason); null = always ready. /health and / are
  // liveness: 200 whenever the server answers at all.
  ReadinessCheck readiness;
  // When set and not ready, WebSocket upgrade requests are answered 503 with the reason (and
  // Retry-After) instead of reaching the upgrade handler: a draining node keeps its port open for
  // probes and HTTP without taking new clients. A refused handshake makes pusher-js back off,
  // where a 4200 close after the handshake would make it reconnect at once, in a loop.
  ReadinessCheck accept_upgrades;
  // When set, every connection is TLS (https:// and wss://): the handshake comes first, with
  // the context current at accept (TlsServerContext::Reload() affects later connections only).
  std::shared_ptr<TlsServerContext> tls;
};

// Counts an event that hostile peers can repeat at will (malformed requests, failing accepts)
// and decides when to log it: at most one line per interval, carrying how many happened since
// the last line, so a flood cannot flood the log. Thread-safe.
class ThrottledEvent {
 public:
  explicit ThrottledEvent(int64_t interval_ms) : interval_ms_(interval_ms) {}
  // Counts one event at `now_ms`. Returns how many events the caller should report now (this
  // one included), or 0 when a line was written less than an interval ago.
  uint64_t Count(int64_t now_ms);
  uint64_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  const int64_t interval_ms_;
  std::atomic<int64_t> next_log_ms_{0};
  std::atomic<uint64_t> pending_{0};
  std::atomic<uint64_t> total_{0};
};

// Counters shared by the server and its connections.
struct HttpServerStats {
  std::atomic<uint64_t> requests{0};
  // Requests refused before a handler saw them (malformed, too large, parser exceptions).
  ThrottledEvent rejected{10'000};
  // Handler or upgrade exceptions caught at the connection.
  ThrottledEvent handler_errors{10'000};
  // TLS handshakes that failed or timed out (scanners, clients that do not trust the cert).
  ThrottledEvent tls_failures{10'000};
};

// Owned by the process's server object. StopAccepting() and the destructor may run on any
// thread, also one of the pool's, and never wait for the pool. Connections own (shared) the
// options, handlers and counters they use, so a connection still open when the server is
// destroyed finishes on its own: the pool (which must outlive the server) runs it to its end,
// or destroys it with its io_context. What the handlers capture must live as long as that.
class HttpServer {
 public:
  HttpServer(HttpServerOptions options, common::IoPool& pool, HttpHandler handler,
             UpgradeHandler upgrade = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Returns the bound port.
  absl::StatusOr<uint16_t> Start();
  // Stops accepting new connections; open connections finish their current request (and keep
  // serving keep-alive requests until they close). Idempotent.
  void StopAccepting();
  uint16_t port() const { return port_; }
  uint64_t requests_served() const;
  uint64_t requests_rejected() const;
  uint64_t accept_failures() const;
  uint64_t tls_handshake_failures() const;

  // What connections share with the server (http_server.cc).
  struct Shared;

 private:
  class Listener;

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<Listener> listener_;
  uint16_t port_ = 0;
};

}  // namespace relay::transport
