// File: ws_conn.h
// The server side of RFC 6455 over a plain TCP socket (or TLS, see the ClientStream constructor),
// with RFC 7692 permessage-deflate (without context takeover in either direction), shaped for
// fan-out:
// - an outbound message is a shared payload; only its 2-10 byte frame header is built per
//   connection, and everything queued goes out in one gather write, so a busy socket makes one
//   syscall for many messages instead of one per message;
// - inbound bytes are read only once the socket is readable, into a per-thread scratch buffer,
//   so an idle connection holds no read buffer (only a partial frame, while one is in flight).
// Lifetime: the owner (the Listener) holds the WsConn; every pending operation keeps the owner
// alive through the weak_ptr given to Accept(). OnWsClosed() runs exactly once, when the
// connection is finished for whatever reason.
// Not thread-safe: every call on the thread of the socket's io_context.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http_server.h"

namespace relay::transport {

// Close codes of RFC 6455 section 7.4.1 that Relay sends on its own.
inline constexpr uint16_t kWsCloseProtocolError = 1002;
inline constexpr uint16_t kWsCloseInvalidPayload = 1007;
inline constexpr uint16_t kWsCloseTooBig = 1009;

struct WsLimits {
  size_t max_message_bytes = 64 * 1024;      // inbound messages beyond this close with 1009
  size_t max_queue_bytes = 4 * 1024 * 1024;  // outbound bytes waiting on the socket
  size_t max_queue_frames = 4096;            // outbound messages waiting on the socket
};

class WsConn {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // A complete message from the peer. `payload` is valid only during the call.
    virtual void OnWsMessage(std::string_view payload, bool text) = 0;
    // The peer broke the protocol; the connection is closing with `code` (1002, 1007, 1009).
    virtual void OnWsViolation(uint16_t code, std::string_view why) = 0;
    // `messages` queued messages (`bytes` of payload, as sent: compressed when deflated)
    // reached the kernel.
    virtual void OnWsSent(size_t messages, size_t bytes) = 0;
    // The connection is finished (closing handshake done, peer gone, error or Abort()).
    virtual void OnWsClosed() = 0;
  };

  WsConn(boost::asio::ip::tcp::socket socket, const WsLimits& limits);
  // Plain TCP as above, or TLS: a TLS connection takes its own read and write path (an
  // asynchronous read into a small buffer of its own, one coalesced encrypted write per batch);
  // the queue, framing and bounds are the same.
  WsConn(ClientStream stream, const WsLimits& limits);
  ~WsConn();
  WsConn(const WsConn&) = delete;
  WsConn& operator=(const WsConn&) = delete;

  // Answers the upgrade request: queues the 101 response and returns true, or writes an HTTP
  // error (400, or 426 for an unsupported version), closes and returns false. `allow_deflate`
  // lets it accept a permessage-deflate offer.
  bool Accept(const transport::BeastRequest& request, bool allow_deflate,
              std::weak_ptr<Listener> owner);
  // Starts reading; `leftover` holds bytes that arrived after the upgrade request.
  void Start(std::string leftover);

  enum class SendResult { kQueued, kDropped, kOverBounds };
  // Queues a text message. kDropped once closing (nothing more goes out); kOverBounds when the
  // queue would pass its bounds (nothing queued: the caller decides, usually Abort()).
  SendResult Send(const std::shared_ptr<const std::string>& text);
  // Queues a close frame after everything queued; later Send()s are dropped. Once it is written
  // the socket's send side is shut and the connection ends with the peer's close or EOF.
  void Close(uint16_t code, std::string_view reason);
  // Closes the socket now; queued messages are discarded.
  void Abort();

  bool closing() const { return close_queued_ || finished_; }
  bool finished() const { return finished_; }
  bool deflate() const { return deflate_; }
  size_t queued_messages() const { return pending_.size() + writing_.size(); }
  size_t queued_bytes() const { return queued_bytes_; }

 private:
  struct Out {
    std::shared_ptr<const std::string> payload;
    uint8_t header[10];
    uint8_t header_len = 0;
    bool counted = false;  // a message of the caller's (not a control frame or the 101)
  };

  struct FlushList;
  void Queue(uint8_t first_byte, std::shared_ptr<const std::string> payload, bool counted);
  // Answers a ping, replacing a pong that has not been handed to the socket yet.
  void QueuePong(std::shared_ptr<const std::string> payload);
  // Writes what is queued once the thread's current burst of handlers is through.
  void ScheduleWrite();
  void DoWrite();
  void OnWritten(boost::system::error_code ec);
  void WaitReadable();
  void OnReadable(boost::system::error_code ec);
  void WriteTls();
  void ReadTls();
  void OnTlsRead(boost::system::error_code ec, size_t n);
  // Feeds bytes from the socket to the parser; false when reading must stop.
  bool Take(char* data, size_t size);
  // Parses and handles the frames in [data, data + size); returns the bytes used, or npos when
  // the connection stopped reading (close received, violation, finished).
  size_t Consume(char* data, size_t size);
  bool OnFrame(uint8_t opcode, bool fin, bool compressed, char* payload, size_t size);
  bool Deliver(std::string_view payload, bool text, bool compressed);
  void Violation(uint16_t code, std::string_view why);
  void Finish();
  std::shared_ptr<Listener> Owner() const { return owner_.lock(); }

  // What only a TLS connection has; null on plain TCP, whose socket is socket_ (for TLS socket_
  // stays closed and serves as the executor only).
  struct Tls;
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<Tls> tls_;
  const WsLimits& limits_;
  std::weak_ptr<Listener> owner_;
  std::vector<Out> pending_;  // queued, not yet handed to the socket
  std::vector<Out> writing_;  // the batch being written
  static constexpr size_t kNoPong = static_cast<size_t>(-1);
  size_t pending_pong_ = kNoPong;  // index of the pong waiting in pending_
  std::vector<boost::asio::const_buffer> iov_;
  size_t queued_bytes_ = 0;
  std::string partial_;  // bytes of an incomplete frame
  std::string message_;  // payload of a fragmented message being assembled
  bool in_message_ = false;
  bool discard_input_ = false;  // after a violation, until the peer closes
  bool message_text_ = false;
  bool message_compressed_ = false;
  bool deflate_ = false;
  uint8_t deflate_bits_ = 15;
  bool writing_active_ = false;
  bool flush_scheduled_ = false;
  bool close_queued_ = false;   // our close frame is queued or sent
  bool close_written_ = false;  // our close frame reached the kernel
  bool peer_closed_ = false;    // the peer's close frame arrived
  bool finished_ = false;
};

}  // namespace relay::transport
