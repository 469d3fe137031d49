#include "transport/ws_conn.h"

#include <openssl/evp.h>
#include <simdjson.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "transport/http_types.h"

namespace relay::transport {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr uint8_t kOpContinuation = 0x0;
constexpr uint8_t kOpText = 0x1;
constexpr uint8_t kOpBinary = 0x2;
constexpr uint8_t kOpClose = 0x8;
constexpr uint8_t kOpPing = 0x9;
constexpr uint8_t kOpPong = 0xA;
constexpr uint8_t kFin = 0x80;
constexpr uint8_t kRsv1 = 0x40;
constexpr size_t kScratchBytes = 64 * 1024;
constexpr int kReadsPerWakeup = 4;   // then yield to the other sockets of the shard
constexpr size_t kKeepCapacity = 8;  // queue slots an idle connection may keep

// Sec-WebSocket-Accept for `key` (RFC 6455 section 4.2.2).
std::string AcceptKey(std::string_view key) {
  std::string in = common::StrCat(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), digest, &len, EVP_sha1(), nullptr);
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

bool ValidKey(std::string_view key) {
  // 16 random bytes, base64: 24 characters ending in "==".
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.end() - 2, [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
  });
}

bool HeaderHasToken(std::string_view value, std::string_view token) {
  for (absl::string_view part : absl::StrSplit(common::AbslView(value), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part), common::AbslView(token))) {
      return true;
    }
  }
  return false;
}

// The response to the first acceptable permessage-deflate offer in `header`, or "" when none is
// acceptable. Relay never keeps compression context between messages, in either direction, so a
// connection needs no zlib state of its own.
std::string NegotiateDeflate(std::string_view header, uint8_t* server_bits) {
  for (absl::string_view offer : absl::StrSplit(common::AbslView(header), ',')) {
    std::vector<absl::string_view> params = absl::StrSplit(offer, ';');
    if (params.empty() || absl::StripAsciiWhitespace(params[0]) != "permessage-deflate") continue;
    bool ok = true;
    int bits = 0;
    for (size_t i = 1; i < params.size() && ok; ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(params[i], '=');
      absl::string_view name = absl::StripAsciiWhitespace(kv.first);
      absl::string_view value = absl::StripAsciiWhitespace(kv.second);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      if (name == "server_no_context_takeover" || name == "client_no_context_takeover") {
        ok = value.empty();
      } else if (name == "client_max_window_bits") {
        int b = 0;
        ok = value.empty() || (absl::SimpleAtoi(value, &b) && b >= 8 && b <= 15);
      } else if (name == "server_max_window_bits") {
        // zlib cannot make raw deflate streams with an 8-bit window.
        ok = absl::SimpleAtoi(value, &bits) && bits >= 9 && bits <= 15;
      } else {
        ok = false;
      }
    }
    if (!ok) continue;
    *server_bits = static_cast<uint8_t>(bits ? bits : 15);
    std::string response =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    if (bits) response += common::StrCat("; server_max_window_bits=", bits);
    return response;
  }
  return "";
}

// Per-thread zlib streams, reset for every message (no context takeover).
class Zlib {
 public:
  static Zlib& ForThread() {
    thread_local Zlib z;
    return z;
  }
  ~Zlib() {
    for (auto& d : deflaters_) {
      if (d) deflateEnd(d.get());
    }
    if (inflater_) inflateEnd(inflater_.get());
  }

  // Raw deflate of `in` with the sync-flush tail removed (RFC 7692 section 7.2.1).
  std::string Compress(std::string_view in, uint8_t bits) {
    auto& d = deflaters_[bits];
    if (!d) {
      d = std::make_unique<z_stream>();
      std::memset(d.get(), 0, sizeof(z_stream));
      deflateInit2(d.get(), Z_BEST_SPEED, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY);
    } else {
      deflateReset(d.get());
    }
    std::string out(deflateBound(d.get(), in.size()) + 16, '\0');
    d->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    d->avail_in = static_cast<uInt>(in.size());
    d->next_out = reinterpret_cast<Bytef*>(out.data());
    d->avail_out = static_cast<uInt>(out.size());
    deflate(d.get(), Z_SYNC_FLUSH);
    out.resize(out.size() - d->avail_out);
    if (out.size() >= 4 &&
        out.compare(out.size() - 4, 4, std::string_view("\0\0\xff\xff", 4)) == 0) {
      out.resize(out.size() - 4);
    }
    return out;
  }

  // Inflates one message; false when it is corrupt or larger than `max` bytes.
  bool Decompress(std::string_view in, size_t max, std::string* out) {
    if (!inflater_) {
      inflater_ = std::make_unique<z_stream>();
      std::memset(inflater_.get(), 0, sizeof(z_stream));
      inflateInit2(inflater_.get(), -15);
    } else {
      inflateReset(inflater_.get());
    }
    static constexpr char kTail[4] = {0, 0, '\xff', '\xff'};
    out->clear();
    z_stream* z = inflater_.get();
    char chunk[16 * 1024];
    bool ended = false;
    for (std::string_view part : {in, std::string_view(kTail, 4)}) {
      if (ended) break;
      z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
      z->avail_in = static_cast<uInt>(part.size());
      do {
        z->next_out = reinterpret_cast<Bytef*>(chunk);
        z->avail_out = sizeof(chunk);
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return false;
        size_t produced = sizeof(chunk) - z->avail_out;
        if (out->size() + produced > max) return false;
        out->append(chunk, produced);
        if (rc == Z_STREAM_END) ended = true;
        if (rc != Z_OK) break;  // the end, or no progress possible without more input
      } while (z->avail_in > 0 || z->avail_out == 0);
    }
    return true;
  }

 private:
  std::array<std::unique_ptr<z_stream>, 16> deflaters_;
  std::unique_ptr<z_stream> inflater_;
};

}  // namespace

// Connections with bytes to write, flushed together once the handlers that are already queued on
// this thread (a burst of deliveries, say) have run: a socket that gets many messages in one burst
// takes one gather write for all of them.
struct WsConn::FlushList {
  std::vector<std::pair<std::shared_ptr<Listener>, WsConn*>> conns;
  bool scheduled = false;

  static FlushList& ForThread() {
    thread_local FlushList list;
    return list;
  }
  void Run() {
    scheduled = false;
    std::vector<std::pair<std::shared_ptr<Listener>, WsConn*>> now;
    now.swap(conns);
    for (auto& [owner, conn] : now) {
      conn->flush_scheduled_ = false;
      conn->DoWrite();
    }
    now.clear();
    if (conns.empty()) conns.swap(now);  // keep the grown buffer for the next burst
  }
};

namespace {

char* Scratch() {
  thread_local std::unique_ptr<char[]> buffer(new char[kScratchBytes]);
  return buffer.get();
}

std::string HttpError(int status, std::string_view reason, std::string_view message,
                      std::string_view extra_headers = "") {
  std::string body = transport::JsonError(status, message).body;  // the HTTP API's error shape
  return common::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nServer: relay\r\n", extra_headers,
                        "Content-Type: application/json\r\nContent-Length: ", body.size(),
                        "\r\nConnection: close\r\n\r\n", body);
}

bool ValidCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

}  // namespace

struct WsConn::Tls {
  static constexpr size_t kReadBytes = 4096;  // TLS records are decrypted inside OpenSSL first
  std::unique_ptr<TlsStream> stream;
  std::shared_ptr<net::ssl::context> context;  // the one the handshake used
  std::string out;                             // the batch being written, coalesced
  std::unique_ptr<char[]> in;                  // a read is always pending on it
};

WsConn::WsConn(tcp::socket socket, const WsLimits& limits)
    : socket_(std::move(socket)), limits_(limits) {}

WsConn::~WsConn() = default;

WsConn::WsConn(ClientStream stream, const WsLimits& limits)
    : socket_(stream.tls ? tcp::socket(stream.tls->get_executor())
                         : stream.plain->release_socket()),
      limits_(limits) {
  if (stream.tls) {
    tls_ = std::make_unique<Tls>();
    tls_->stream = std::move(stream.tls);
    tls_->context = std::move(stream.tls_context);
  }
}

bool WsConn::Accept(const transport::BeastRequest& request, bool allow_deflate,
                    std::weak_ptr<Listener> owner) {
  owner_ = std::move(owner);
  // Writes go straight to the socket (DoWrite), so it is non-blocking from the first byte on.
  error_code nb;
  socket_.non_blocking(true, nb);
  if (tls_) boost::beast::get_lowest_layer(*tls_->stream).socket().non_blocking(true, nb);
  namespace http = boost::beast::http;
  std::string_view key = request[http::field::sec_websocket_key];
  std::string_view version = request[http::field::sec_websocket_version];
  std::string refusal;
  if (request.version() < 11) {
    refusal = HttpError(400, "Bad Request", "WebSocket upgrades need HTTP/1.1");
  } else if (version != "13") {
    refusal = HttpError(426, "Upgrade Required", "Only WebSocket version 13 is supported",
                        "Sec-WebSocket-Version: 13\r\n");
  } else if (!ValidKey(key)) {
    refusal = HttpError(400, "Bad Request", "Sec-WebSocket-Key must be 16 bytes in base64");
  } else if (!HeaderHasToken(request[http::field::connection], "upgrade")) {
    refusal = HttpError(400, "Bad Request", "Connection must include 'upgrade'");
  }
  if (!refusal.empty()) {
    close_queued_ = true;
    close_written_ = true;  // nothing more to send after the refusal: finish once written
    peer_closed_ = true;
    Queue(0, std::make_shared<const std::string>(std::move(refusal)), false);
    return false;
  }
  std::string extensions;
  if (allow_deflate) {
    extensions = NegotiateDeflate(request[http::field::sec_websocket_extensions], &deflate_bits_);
    deflate_ = !extensions.empty();
  }
  std::string reply = common::StrCat(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Server: relay\r\nSec-WebSocket-Accept: ",
      AcceptKey(key), "\r\n");
  if (deflate_) reply += common::StrCat("Sec-WebSocket-Extensions: ", extensions, "\r\n");
  reply += "\r\n";
  Queue(0, std::make_shared<const std::string>(std::move(reply)), false);
  return true;
}

void WsConn::Start(std::string leftover) {
  // Accept() could not make it so
  if (!tls_ && !socket_.non_blocking()) return Finish();
  if (!leftover.empty() && !Take(leftover.data(), leftover.size())) return;
  WaitReadable();
}

bool WsConn::Take(char* data, size_t size) {
  if (discard_input_) return true;
  size_t used;
  if (partial_.empty()) {
    used = Consume(data, size);
    if (used != std::string::npos && used < size) partial_.assign(data + used, size - used);
  } else {
    partial_.append(data, size);
    used = Consume(partial_.data(), partial_.size());
    if (used != std::string::npos) partial_.erase(0, used);
  }
  if (used == std::string::npos) {
    if (finished_ || peer_closed_) return false;
    // A violation: the close frame is queued; whatever else the peer sends is dropped until
    // it closes (the session bounds how long that may take).
    discard_input_ = true;
    partial_ = std::string();
  }
  if (partial_.empty() && partial_.capacity() > 1024) std::string().swap(partial_);
  return true;
}

WsConn::SendResult WsConn::Send(const std::shared_ptr<const std::string>& text) {
  if (closing()) return SendResult::kDropped;
  if (queued_messages() >= limits_.max_queue_frames ||
      queued_bytes_ + text->size() > limits_.max_queue_bytes) {
    return SendResult::kOverBounds;
  }
  if (deflate_ && text->size() >= 64) {
    Queue(kFin | kRsv1 | kOpText,
          std::make_shared<const std::string>(Zlib::ForThread().Compress(*text, deflate_bits_)),
          true);
  } else {
    Queue(kFin | kOpText, text, true);
  }
  return SendResult::kQueued;
}

void WsConn::Close(uint16_t code, std::string_view reason) {
  if (closing()) return;
  close_queued_ = true;
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xff));
  payload.append(reason.substr(0, 123));
  Queue(kFin | kOpClose, std::make_shared<const std::string>(std::move(payload)), false);
}

void WsConn::Abort() { Finish(); }

void WsConn::Queue(uint8_t first_byte, std::shared_ptr<const std::string> payload, bool counted) {
  Out out;
  size_t n = payload->size();
  if (first_byte != 0) {
    out.header[0] = first_byte;
    if (n < 126) {
      out.header[1] = static_cast<uint8_t>(n);
      out.header_len = 2;
    } else if (n <= 0xffff) {
      out.header[1] = 126;
      out.header[2] = static_cast<uint8_t>(n >> 8);
      out.header[3] = static_cast<uint8_t>(n);
      out.header_len = 4;
    } else {
      out.header[1] = 127;
      for (int i = 0; i < 8; ++i)
        out.header[2 + i] = static_cast<uint8_t>(uint64_t{n} >> (56 - 8 * i));
      out.header_len = 10;
    }
  }
  out.counted = counted;
  queued_bytes_ += n;
  out.payload = std::move(payload);
  pending_.push_back(std::move(out));
  ScheduleWrite();
}

void WsConn::QueuePong(std::shared_ptr<const std::string> payload) {
  // A peer that pings without reading would otherwise grow the queue by a pong per ping, outside
  // the bounds Send() keeps. RFC 6455 section 5.5.3 lets us answer only the most recent ping, so
  // a pong still waiting in pending_ takes the new payload: at most one pong waits there (and one
  // more may be in the batch being written).
  if (pending_pong_ < pending_.size()) {
    Out& out = pending_[pending_pong_];
    queued_bytes_ -= out.payload->size();
    queued_bytes_ += payload->size();
    out.header[1] = static_cast<uint8_t>(payload->size());  // control payloads are under 126
    out.payload = std::move(payload);
    return;
  }
  pending_pong_ = pending_.size();
  Queue(kFin | kOpPong, std::move(payload), false);
}

void WsConn::ScheduleWrite() {
  if (writing_active_ || flush_scheduled_ || finished_) return;
  flush_scheduled_ = true;
  FlushList& list = FlushList::ForThread();
  list.conns.emplace_back(Owner(), this);
  if (!list.scheduled) {
    list.scheduled = true;
    net::post(socket_.get_executor(), [&list] { list.Run(); });
  }
}

void WsConn::DoWrite() {
  if (finished_ || pending_.empty()) return;
  writing_active_ = true;
  std::swap(writing_, pending_);
  pending_pong_ = kNoPong;
  iov_.clear();
  iov_.reserve(writing_.size() * 2);
  for (const Out& o : writing_) {
    if (o.header_len) iov_.emplace_back(o.header, o.header_len);
    iov_.emplace_back(o.payload->data(), o.payload->size());
  }
  if (tls_) return WriteTls();
  // The socket is non-blocking: write at once and go through the reactor only for what the
  // kernel does not take now (most batches complete here, with no operation to allocate).
  error_code ec;
  while (!iov_.empty()) {
    size_t n = socket_.write_some(iov_, ec);
    if (ec) break;
    size_t done = 0;
    while (done < iov_.size() && n >= iov_[done].size()) n -= iov_[done++].size();
    if (done < iov_.size()) iov_[done] += n;
    iov_.erase(iov_.begin(), iov_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  if (iov_.empty()) return OnWritten({});
  if (ec != net::error::would_block && ec != net::error::try_again) return OnWritten(ec);
  net::async_write(socket_, iov_, [this, keep = Owner()](error_code ec, size_t) { OnWritten(ec); });
}

void WsConn::OnWritten(error_code ec) {
  writing_active_ = false;
  size_t messages = 0;
  size_t message_bytes = 0;
  bool close_sent = false;
  for (const Out& o : writing_) {
    queued_bytes_ -= o.payload->size();
    if (o.counted) {
      ++messages;
      message_bytes += o.payload->size();
    }
    if (o.header_len && (o.header[0] & 0x0f) == kOpClose) close_sent = true;
  }
  writing_.clear();
  if (writing_.capacity() > kKeepCapacity) std::vector<Out>().swap(writing_);
  if (iov_.capacity() > 2 * kKeepCapacity) std::vector<net::const_buffer>().swap(iov_);
  if (finished_) return;
  if (ec) return Finish();
  if (messages > 0) {
    if (auto owner = Owner()) owner->OnWsSent(messages, message_bytes);
  }
  if (!pending_.empty()) return ScheduleWrite();
  if (close_queued_ && (close_sent || close_written_)) {
    close_written_ = true;
    if (peer_closed_) return Finish();  // both close frames are through
    // Under TLS a TCP half-close would cut the record stream; the peer's close frame (or the
    // session's bound) ends the connection instead.
    if (tls_) return;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);  // then wait for the peer's close
  }
}

// TLS: one coalesced buffer per batch, so that a batch of small frames makes full TLS records
// (Asio's TLS stream would write each buffer of a gather list as its own record). The frame
// bytes are still serialized once; only this connection's encryption copies them.
void WsConn::WriteTls() {
  std::string& out = tls_->out;
  out.clear();
  for (const auto& b : iov_) out.append(static_cast<const char*>(b.data()), b.size());
  iov_.clear();
  net::async_write(*tls_->stream, net::buffer(out), [this, keep = Owner()](error_code ec, size_t) {
    if (tls_->out.capacity() > 16 * 1024) std::string().swap(tls_->out);
    OnWritten(ec);
  });
}

void WsConn::ReadTls() {
  if (!tls_->in) tls_->in.reset(new char[Tls::kReadBytes]);
  tls_->stream->async_read_some(
      net::buffer(tls_->in.get(), Tls::kReadBytes),
      [this, keep = Owner()](error_code ec, size_t n) { OnTlsRead(ec, n); });
}

void WsConn::OnTlsRead(error_code ec, size_t n) {
  if (finished_) return;
  if (ec) return Finish();  // EOF, reset or a TLS error: the peer is gone
  if (!Take(tls_->in.get(), n)) return;
  WaitReadable();
}

void WsConn::WaitReadable() {
  if (finished_) return;
  if (tls_) return ReadTls();
  socket_.async_wait(tcp::socket::wait_read,
                     [this, keep = Owner()](error_code ec) { OnReadable(ec); });
}

void WsConn::OnReadable(error_code ec) {
  if (finished_) return;
  if (ec) return Finish();
  char* scratch = Scratch();
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    size_t n = socket_.read_some(net::buffer(scratch, kScratchBytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) break;
    if (ec) return Finish();  // EOF or reset: the peer is gone
    if (!Take(scratch, n)) return;
    if (n < kScratchBytes) break;
  }
  WaitReadable();
}

size_t WsConn::Consume(char* data, size_t size) {
  size_t pos = 0;
  while (size - pos >= 2) {
    auto* p = reinterpret_cast<uint8_t*>(data + pos);
    bool fin = (p[0] & kFin) != 0;
    uint8_t rsv = p[0] & 0x70;
    uint8_t opcode = p[0] & 0x0f;
    bool masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7f;
    if (!masked) {
      Violation(kWsCloseProtocolError, "client frames must be masked");
      return std::string::npos;
    }
    size_t header = 2;
    if (len == 126) {
      header = 4;
    } else if (len == 127) {
      header = 10;
    }
    if (size - pos < header + 4) break;
    if (len == 126) {
      len = (uint64_t{p[2]} << 8) | p[3];
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
    }
    bool control = opcode >= 0x8;
    bool compressed = rsv == kRsv1 && deflate_ && (opcode == kOpText || opcode == kOpBinary);
    if ((rsv != 0 && !compressed)) {
      Violation(kWsCloseProtocolError, "reserved bits set");
      return std::string::npos;
    }
    if (control ? (opcode > kOpPong || !fin || len > 125) : opcode > kOpBinary) {
      Violation(kWsCloseProtocolError, "invalid opcode or control frame");
      return std::string::npos;
    }
    if (!control &&
        (len > limits_.max_message_bytes ||
         (opcode == kOpContinuation && message_.size() + len > limits_.max_message_bytes))) {
      Violation(kWsCloseTooBig, "message too big");
      return std::string::npos;
    }
    if (size - pos - header - 4 < len) break;
    uint8_t mask[4];
    std::memcpy(mask, p + header, 4);
    char* payload = data + pos + header + 4;
    for (size_t i = 0; i < len; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
    pos += header + 4 + len;
    if (!OnFrame(opcode, fin, compressed, payload, len)) return std::string::npos;
  }
  return pos;
}

bool WsConn::OnFrame(uint8_t opcode, bool fin, bool compressed, char* payload, size_t size) {
  switch (opcode) {
    case kOpText:
    case kOpBinary:
      if (in_message_) {
        Violation(kWsCloseProtocolError, "new message inside a fragmented one");
        return false;
      }
      if (fin) return Deliver({payload, size}, opcode == kOpText, compressed);
      in_message_ = true;
      message_text_ = opcode == kOpText;
      message_compressed_ = compressed;
      message_.assign(payload, size);
      return true;
    case kOpContinuation: {
      if (!in_message_) {
        Violation(kWsCloseProtocolError, "continuation without a message");
        return false;
      }
      message_.append(payload, size);
      if (!fin) return true;
      in_message_ = false;
      std::string whole = std::move(message_);
      message_ = std::string();
      return Deliver(whole, message_text_, message_compressed_);
    }
    case kOpPing:
      if (!closing()) QueuePong(std::make_shared<const std::string>(payload, size));
      return true;
    case kOpPong:
      return true;
    case kOpClose: {
      uint16_t code = 1000;
      if (size == 1) {
        Violation(kWsCloseProtocolError, "close frame with a one-byte payload");
        return false;
      }
      if (size >= 2) {
        code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                     static_cast<uint8_t>(payload[1]));
        if (!ValidCloseCode(code)) {
          Violation(kWsCloseProtocolError, "invalid close code");
          return false;
        }
        // The reason is UTF-8 text like a text message (RFC 6455 sections 5.5.1 and 8.1).
        if (!simdjson::validate_utf8(payload + 2, size - 2)) {
          Violation(kWsCloseInvalidPayload, "close reason is not valid UTF-8");
          return false;
        }
      }
      peer_closed_ = true;
      if (close_written_) {
        Finish();
      } else if (!close_queued_) {
        Close(code, "");  // echo the peer's code; finishes once written
      }
      return false;  // nothing is read after a close frame
    }
    default:
      return true;
  }
}

bool WsConn::Deliver(std::string_view payload, bool text, bool compressed) {
  if (close_queued_) return true;  // closing: what the peer still sends is not acted on
  std::string inflated;
  if (compressed) {
    if (!Zlib::ForThread().Decompress(payload, limits_.max_message_bytes, &inflated)) {
      Violation(kWsCloseTooBig, "compressed message is corrupt or too big");
      return false;
    }
    payload = inflated;
  }
  if (text && !simdjson::validate_utf8(payload.data(), payload.size())) {
    Violation(kWsCloseInvalidPayload, "text message is not valid UTF-8");
    return false;
  }
  auto owner = Owner();
  if (!owner) return false;
  owner->OnWsMessage(payload, text);
  return !finished_;
}

void WsConn::Violation(uint16_t code, std::string_view why) {
  if (auto owner = Owner()) owner->OnWsViolation(code, why);
  Close(code, why);
}

void WsConn::Finish() {
  if (finished_) return;
  finished_ = true;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  if (tls_) {
    // Without close_notify: the peer has gone or is being cut off. The stream itself (and its
    // OpenSSL state) lives until the connection does, as pending handlers may still touch it.
    auto& tcp_socket = boost::beast::get_lowest_layer(*tls_->stream).socket();
    tcp_socket.shutdown(tcp::socket::shutdown_both, ignored);
    tcp_socket.close(ignored);
  }
  pending_.clear();
  pending_pong_ = kNoPong;
  partial_ = std::string();
  message_ = std::string();
  if (auto owner = Owner()) owner->OnWsClosed();
}

}  // namespace relay::transport
