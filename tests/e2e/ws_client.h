// File: ws_client.h
// A WebSocket test client: connects to 127.0.0.1, reads frames on its own thread into a queue,
// and lets tests wait for frames with a bound. The only test TU that instantiates Beast's
// websocket stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace relay::testutil {

class WsClient {
 public:
  // Connects and completes the WebSocket handshake on `target` ("/app/key?protocol=7").
  // Returns null when the TCP connection or the handshake fails.
  // `deflate` offers permessage-deflate.
  static std::unique_ptr<WsClient> Connect(uint16_t port, const std::string& target,
                                           bool deflate = false);
  // Whether the server accepted permessage-deflate.
  bool deflate_negotiated() const { return deflate_; }
  ~WsClient();

  void Send(const std::string& text);
  void SendBinary(const std::string& bytes);
  // The next frame, or nullopt after `timeout`.
  std::optional<std::string> Receive(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Skips frames until one whose "event" is `event` (and, when given, whose "channel" is
  // `channel`); nullopt after `timeout`.
  std::optional<std::string> ReceiveEvent(
      const std::string& event, std::chrono::milliseconds timeout = std::chrono::seconds(5),
      const std::string& channel = "");
  // True when no frame arrives within `window` (used to check that something is NOT sent;
  // bounded, and always after a later positive check in the same test).
  bool QuietFor(std::chrono::milliseconds window);
  // The close code once the server closed the connection (waits up to `timeout`), else 0.
  int WaitClosed(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The socket id from pusher:connection_established.
  const std::string& socket_id() const { return socket_id_; }
  // Reads connection_established and remembers the socket id; false on anything else.
  bool Established();

 private:
  struct Impl;
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string socket_id_;
  bool deflate_ = false;
};

// The value of a top-level string field of a JSON frame ("" when absent).
std::string JsonField(const std::string& json, const std::string& field);

}  // namespace relay::testutil
