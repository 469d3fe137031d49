// Fuzzes Relay's own WebSocket implementation (dataplane/ws_conn.cc) with a hostile client.
// The first input byte picks the mode:
//   bit 0: the server allows permessage-deflate;
//   bit 1: the rest of the input is the whole client stream, upgrade request first, parsed by
//          Beast's request parser as the front door does; what follows the request is handed
//          to WsConn as `leftover`. Otherwise a valid upgrade (offering deflate) is used and
//          the rest of the input arrives over the socket as frames.
// The server end is a real socket (one end of a socketpair) on an io_context run by this thread;
// the listener reacts to messages the way a session can (echo, close, abort), so re-entrant
// paths are covered. Every run must end with OnWsClosed() once the client has shut its side.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tests/fuzz/http_input.h"
#include "transport/ws_conn.h"

namespace {

namespace net = boost::asio;
using relay::transport::WsConn;

constexpr char kUpgrade[] =
    "GET /app/key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

void Check(bool ok) {
  if (!ok) std::abort();
}

class Peer final : public WsConn::Listener {
 public:
  Peer(net::ip::tcp::socket s, const relay::transport::WsLimits& limits)
      : conn(std::move(s), limits) {}
  void OnWsMessage(std::string_view payload, bool) override {
    Check(!closed);
    Check(payload.size() <= relay::transport::WsLimits{}.max_message_bytes);
    // Like a session: answer, refuse, or drop the connection from inside the callback.
    if (payload.substr(0, 5) == "close") {
      conn.Close(4000, payload.substr(5));
    } else if (payload.substr(0, 5) == "abort") {
      conn.Abort();
    } else if (!payload.empty()) {
      conn.Send(std::make_shared<const std::string>(payload));
    }
  }
  void OnWsViolation(uint16_t code, std::string_view) override {
    Check(code == 1002 || code == 1007 || code == 1009);
  }
  void OnWsSent(size_t, size_t) override {}
  void OnWsClosed() override {
    Check(!closed);  // exactly once
    closed = true;
  }

  WsConn conn;
  bool closed = false;
};

// Reads and drops what the server wrote, so its writes never stall.
void Drain(int fd) {
  char buf[65536];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static net::io_context io;
  static const relay::transport::WsLimits limits;
  const uint8_t mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool deflate = (mode & 1) != 0;
  const bool raw_upgrade = (mode & 2) != 0;

  relay::transport::BeastRequest request;
  std::string leftover;
  std::string_view over_socket;
  if (raw_upgrade) {
    if (!relay::fuzz::ParseHttpRequest(rest, &request, &leftover)) return 0;
  } else {
    std::string ignored;
    Check(relay::fuzz::ParseHttpRequest(kUpgrade, &request, &ignored));
    over_socket = rest;
  }

  int fds[2];
  Check(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  int client = fds[1];
  // Room for the whole input, so the client writes it before the server runs.
  int buf = 1 << 20;
  setsockopt(client, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  fcntl(client, F_SETFL, O_NONBLOCK);
  net::ip::tcp::socket server(io);
  server.assign(net::ip::tcp::v4(), fds[0]);

  auto peer = std::make_shared<Peer>(std::move(server), limits);
  if (peer->conn.Accept(request, deflate, peer)) peer->conn.Start(std::move(leftover));
  size_t written = 0;
  bool shut = false;
  io.restart();
  // Bounded: a connection that does not end after the client is gone is a bug (a hang).
  for (int round = 0; round < 100000 && !peer->closed; ++round) {
    if (written < over_socket.size()) {
      ssize_t n = write(client, over_socket.data() + written, over_socket.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
    } else if (!shut) {
      shutdown(client, SHUT_WR);
      shut = true;
    }
    Drain(client);
    if (io.poll() == 0) io.run_one_for(std::chrono::milliseconds(1));
  }
  Check(peer->closed);
  io.poll();
  close(client);
  return 0;
}
