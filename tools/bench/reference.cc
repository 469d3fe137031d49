// relay-reference: the physical reference for docs/benchmarks.md (issue #16). The least a Pusher
// fan-out server must do, and nothing else: accept, upgrade to WebSocket, answer
// pusher:connection_established and pusher:subscribe, and on an HTTP trigger write one shared
// frame to every subscriber of its channels. It checks no signature, keeps no state beyond the
// channel index, and uses the system calls Relay could use (epoll through Asio, one writev per
// socket per batch of frames, one io_context per core owning its sockets and channel index).
// relay-bench measures it exactly like Relay, so Relay's fan-out and latency can be stated as a
// fraction of what this machine's kernel allows. Loopback only; never a production server.
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <simdjson.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>
#include <csignal>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/flags.h"
#include "common/io_pool.h"
#include "common/strings.h"

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Frame = std::shared_ptr<const std::string>;

// Server-to-client text frame (unmasked) around `payload`.
std::string TextFrame(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  out.push_back(static_cast<char>(0x81));
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(payload.size()));
  } else if (payload.size() < 65536) {
    out.push_back(126);
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    out.push_back(127);
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  }
  out.append(payload);
  return out;
}

std::string AcceptKey(std::string_view key) {
  std::string in = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(b64), n);
}

// Case-insensitive header value from a raw request head ("" when absent).
std::string_view Header(std::string_view head, std::string_view name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(start, end - start);
    size_t colon = line.find(':');
    if (colon == name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\r')) v.remove_suffix(1);
      return v;
    }
    pos = end;
  }
  return {};
}

class Shard;

// One socket: first an HTTP request (upgrade or trigger), then WebSocket frames if upgraded.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(tcp::socket socket, Shard& shard, std::vector<Shard*>& shards)
      : socket_(std::move(socket)), shard_(shard), shards_(shards) {}
  void Start() { Read(); }
  void Send(Frame frame) {
    out_.push_back(std::move(frame));
    if (!writing_) Flush();
  }
  void Close();

 private:
  void Read();
  void OnData();
  bool OnHttp();
  bool OnWebSocket();
  void OnText(std::string_view text);
  void Flush();

  tcp::socket socket_;
  Shard& shard_;
  std::vector<Shard*>& shards_;
  std::string in_;
  char buf_[16384];
  bool upgraded_ = false;
  bool closed_ = false;
  bool writing_ = false;
  std::deque<Frame> out_;
  std::vector<Frame> in_flight_;
  std::vector<std::string> channels_;
};

class Shard {
 public:
  explicit Shard(net::io_context& ioc) : ioc_(ioc) {}
  net::io_context& ioc() { return ioc_; }
  void Subscribe(const std::string& channel, const std::shared_ptr<Conn>& c) {
    index_[channel].insert(c.get());
    live_[c.get()] = c;
  }
  void Forget(Conn* c, const std::vector<std::string>& channels) {
    for (const auto& ch : channels) {
      auto it = index_.find(ch);
      if (it == index_.end()) continue;
      it->second.erase(c);
      if (it->second.empty()) index_.erase(it);
    }
    live_.erase(c);
  }
  // On this shard's thread: the frame to every local subscriber of `channel`.
  void Broadcast(const std::string& channel, const Frame& frame) {
    auto it = index_.find(channel);
    if (it == index_.end()) return;
    for (Conn* c : it->second) c->Send(frame);
  }

 private:
  net::io_context& ioc_;
  std::unordered_map<std::string, std::unordered_set<Conn*>> index_;
  std::unordered_map<Conn*, std::shared_ptr<Conn>> live_;
};

std::atomic<uint64_t> next_socket_id{1};

void Conn::Read() {
  auto self = shared_from_this();
  socket_.async_read_some(net::buffer(buf_), [self](boost::system::error_code ec, size_t n) {
    if (ec) return self->Close();
    self->in_.append(self->buf_, n);
    self->OnData();
    if (!self->closed_) self->Read();
  });
}

void Conn::OnData() {
  while (!closed_) {
    bool progressed = upgraded_ ? OnWebSocket() : OnHttp();
    if (!progressed) return;
  }
}

bool Conn::OnHttp() {
  size_t end = in_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (in_.size() > 65536) Close();
    return false;
  }
  std::string_view head(in_.data(), end + 4);
  std::string_view ws_key = Header(head, "Sec-WebSocket-Key");
  if (!ws_key.empty()) {
    std::string reply = relay::common::StrCat(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ",
        AcceptKey(ws_key), "\r\n\r\n");
    in_.erase(0, end + 4);
    upgraded_ = true;
    Send(std::make_shared<const std::string>(std::move(reply)));
    uint64_t id = next_socket_id.fetch_add(1, std::memory_order_relaxed);
    Send(std::make_shared<const std::string>(TextFrame(relay::common::StrCat(
        R"({"event":"pusher:connection_established","data":"{\"socket_id\":\")", id, ".", id,
        R"(\",\"activity_timeout\":120}"})"))));
    return true;
  }
  size_t length = 0;
  std::string_view cl = Header(head, "Content-Length");
  for (char ch : cl) length = length * 10 + static_cast<size_t>(ch - '0');
  if (in_.size() < end + 4 + length) return false;
  std::string body = in_.substr(end + 4, length);
  in_.erase(0, end + 4 + length);
  // A trigger: {"name":..., "channels":[...], "data":"..."}; one frame for every channel.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view name, data;
  simdjson::dom::array channels;
  int status = 200;
  if (parser.parse(body).get(doc) || doc["name"].get(name) || doc["data"].get(data) ||
      doc["channels"].get(channels)) {
    status = 400;
  } else {
    for (simdjson::dom::element ch : channels) {
      std::string_view channel;
      if (ch.get(channel)) continue;
      // The data string re-encoded as a JSON string: the bench's payload needs only quotes
      // escaped (no control characters).
      std::string escaped;
      escaped.reserve(data.size() + 16);
      for (char c : data) {
        if (c == '"' || c == '\\') escaped.push_back('\\');
        escaped.push_back(c);
      }
      auto frame = std::make_shared<const std::string>(TextFrame(relay::common::StrCat(
          R"({"event":")", name, R"(","channel":")", channel, R"(","data":")", escaped, "\"}")));
      std::string channel_copy(channel);
      for (Shard* s : shards_) {
        net::post(s->ioc(), [s, channel_copy, frame] { s->Broadcast(channel_copy, frame); });
      }
    }
  }
  std::string_view reply_body = status == 200 ? "{}" : R"({"error":"bad trigger"})";
  Send(std::make_shared<const std::string>(relay::common::StrCat(
      "HTTP/1.1 ", status, status == 200 ? " OK" : " Bad Request",
      "\r\nContent-Type: application/json\r\nContent-Length: ", reply_body.size(), "\r\n\r\n",
      reply_body)));
  return true;
}

bool Conn::OnWebSocket() {
  if (in_.size() < 2) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(in_.data());
  uint8_t opcode = p[0] & 0x0f;
  bool masked = (p[1] & 0x80) != 0;
  uint64_t len = p[1] & 0x7f;
  size_t header = 2;
  if (len == 126) {
    if (in_.size() < 4) return false;
    len = (uint64_t{p[2]} << 8) | p[3];
    header = 4;
  } else if (len == 127) {
    if (in_.size() < 10) return false;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
    header = 10;
  }
  if (len > (1 << 20)) {
    Close();
    return false;
  }
  size_t mask_at = header;
  if (masked) header += 4;
  if (in_.size() < header + len) return false;
  std::string payload = in_.substr(header, len);
  if (masked) {
    for (size_t i = 0; i < payload.size(); ++i) payload[i] ^= in_[mask_at + (i & 3)];
  }
  in_.erase(0, header + len);
  if (opcode == 0x8) {
    Close();
    return false;
  }
  if (opcode == 0x9) {
    std::string pong = TextFrame(payload);
    pong[0] = static_cast<char>(0x8A);
    Send(std::make_shared<const std::string>(std::move(pong)));
  } else if (opcode == 0x1) {
    OnText(payload);
  }
  return true;
}

void Conn::OnText(std::string_view text) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view event;
  if (parser.parse(text).get(doc) || doc["event"].get(event)) return;
  if (event == "pusher:ping") {
    Send(std::make_shared<const std::string>(TextFrame(R"({"event":"pusher:pong","data":"{}"})")));
    return;
  }
  if (event != "pusher:subscribe") return;
  std::string_view channel;
  if (doc["data"]["channel"].get(channel)) return;
  channels_.emplace_back(channel);
  shard_.Subscribe(channels_.back(), shared_from_this());
  Send(std::make_shared<const std::string>(TextFrame(
      relay::common::StrCat(R"({"event":"pusher_internal:subscription_succeeded","channel":")",
                            channel, R"(","data":"{}"})"))));
}

// Everything queued goes out in one gather write (writev); frames queued meanwhile wait for
// the next one.
void Conn::Flush() {
  if (out_.empty() || closed_) return;
  writing_ = true;
  in_flight_.assign(std::make_move_iterator(out_.begin()), std::make_move_iterator(out_.end()));
  out_.clear();
  std::vector<net::const_buffer> buffers;
  buffers.reserve(in_flight_.size());
  for (const auto& f : in_flight_) buffers.emplace_back(f->data(), f->size());
  auto self = shared_from_this();
  net::async_write(socket_, buffers, [self](boost::system::error_code ec, size_t) {
    self->writing_ = false;
    self->in_flight_.clear();
    if (ec) return self->Close();
    self->Flush();
  });
}

void Conn::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  shard_.Forget(this, channels_);  // may drop the last reference: nothing after this line
}

void Accept(tcp::acceptor& acceptor, std::vector<Shard*>& shards, size_t& next) {
  Shard& shard = *shards[next++ % shards.size()];
  acceptor.async_accept(shard.ioc(), [&acceptor, &shards, &next, &shard](
                                         boost::system::error_code ec, tcp::socket socket) {
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      net::post(shard.ioc(),
                [&shard, &shards, s = std::make_shared<tcp::socket>(std::move(socket))]() mutable {
                  auto conn = std::make_shared<Conn>(std::move(*s), shard, shards);
                  conn->Start();
                  // Kept alive by its pending read until it subscribes (then by the shard).
                });
    }
    Accept(acceptor, shards, next);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  uint64_t port = 6001;
  uint64_t threads = std::max(1u, std::thread::hardware_concurrency());
  relay::common::FlagSet f(
      "relay-reference",
      "The physical reference for relay-bench (docs/benchmarks.md): accept, upgrade, subscribe,\n"
      "and write one shared frame to every subscriber of a triggered channel. No auth, no\n"
      "protocol beyond that. WebSocket and the trigger endpoint share --port. Loopback only.");
  f.set_env(false);  // only the command line: a RELAY_PORT meant for relay must not move it
  f.String("host", &host, "Listen address (127.x only)");
  f.Uint("port", &port, "Port for WebSocket and HTTP triggers");
  f.Uint("threads", &threads, "I/O threads (one io_context each)");
  std::vector<std::string> positional;
  if (auto st = f.Parse(argc, argv, &positional); !st.ok()) {
    std::cerr << "relay-reference: " << st.message() << "\n";
    return 2;
  }
  if (f.help_requested()) return std::cout << f.Usage(), 0;
  if (host.rfind("127.", 0) != 0 || port == 0 || port > 65535 || threads == 0 || threads > 64 ||
      !positional.empty()) {
    std::cerr << "relay-reference: --host must be 127.x, --port 1..65535, --threads 1..64\n";
    return 2;
  }
  relay::common::RaiseFileLimit();
  relay::common::IoPool pool(threads);
  std::vector<std::unique_ptr<Shard>> owned;
  std::vector<Shard*> shards;
  for (size_t i = 0; i < pool.size(); ++i) {
    owned.push_back(std::make_unique<Shard>(pool.context(i)));
    shards.push_back(owned.back().get());
  }
  net::io_context main_ioc;
  boost::system::error_code ec;
  tcp::acceptor acceptor(main_ioc);
  tcp::endpoint ep(net::ip::make_address(host, ec), static_cast<uint16_t>(port));
  if (!ec) acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(4096, ec);
  if (ec) {
    std::cerr << "relay-reference: cannot listen on " << host << ":" << port << ": " << ec.message()
              << "\n";
    return 1;
  }
  size_t next = 0;
  Accept(acceptor, shards, next);
  net::signal_set signals(main_ioc, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { main_ioc.stop(); });
  pool.Start("reference");
  std::cout << "relay-reference listening on " << host << ":" << port << "\n" << std::flush;
  main_ioc.run();
  pool.Stop();
  return 0;
}
