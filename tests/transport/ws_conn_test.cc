// WsConn at the byte level: a raw TCP client sends hand-made handshakes and frames (masked,
// fragmented, compressed, hostile) and reads what the server writes back.
#include "transport/ws_conn.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <zlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "tests/testutil/wait_for.h"

namespace relay::transport {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr char kKey[] = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 section 1.3

// The server end: records what WsConn reports, on the io_context's thread.
class Recorder final : public WsConn::Listener, public std::enable_shared_from_this<Recorder> {
 public:
  Recorder(tcp::socket s, const WsLimits& limits) : conn(std::move(s), limits) {}
  void OnWsMessage(std::string_view payload, bool text) override {
    std::lock_guard lock(mu);
    messages.emplace_back(std::string(payload), text);
  }
  void OnWsViolation(uint16_t code, std::string_view) override {
    std::lock_guard lock(mu);
    violation = code;
  }
  void OnWsSent(size_t n, size_t bytes) override {
    sent += n;
    sent_bytes += bytes;
  }
  void OnWsClosed() override { closed = true; }

  WsConn conn;
  std::mutex mu;
  std::vector<std::pair<std::string, bool>> messages;
  uint16_t violation = 0;
  std::atomic<size_t> sent{0};
  std::atomic<size_t> sent_bytes{0};
  std::atomic<bool> closed{false};
};

// A client frame, masked.
std::string Frame(uint8_t first, const std::string& payload, bool mask = true) {
  std::string f(1, static_cast<char>(first));
  size_t n = payload.size();
  uint8_t m = mask ? 0x80 : 0;
  if (n < 126) {
    f += static_cast<char>(m | n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((uint64_t{n} >> (8 * i)) & 0xff);
  }
  if (!mask) return f + payload;
  const char key[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(key, 4);
  for (size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ key[i & 3]);
  return f;
}

class WsConnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acceptor_.open(tcp::v4());
    acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] {
      auto guard = net::make_work_guard(io_);
      io_.run();
    });
  }
  void TearDown() override {
    OnServer([this] {
      if (server_) server_->conn.Abort();
      server_.reset();
      return true;
    });
    io_.stop();
    thread_.join();
  }

  // Connects, sends `request` (plus `extra` bytes in the same write), and hands the server's
  // side to a WsConn. Returns whether it accepted.
  bool Open(const std::string& request, const std::string& extra = "", bool deflate = false) {
    client_.open(tcp::v4());
    if (client_rcvbuf_) client_.set_option(net::socket_base::receive_buffer_size(client_rcvbuf_));
    client_.connect(acceptor_.local_endpoint());
    timeval tv{5, 0};
    setsockopt(client_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    net::write(client_, net::buffer(request + extra));
    tcp::socket s = acceptor_.accept(io_);
    if (server_sndbuf_) s.set_option(net::socket_base::send_buffer_size(server_sndbuf_));
    boost::beast::flat_buffer buf;
    transport::BeastRequest req;
    boost::beast::http::read(s, buf, req);
    std::string leftover(static_cast<const char*>(buf.data().data()), buf.size());
    std::promise<bool> accepted;
    net::post(io_, [&, sock = std::move(s)]() mutable {
      server_ = std::make_shared<Recorder>(std::move(sock), limits_);
      bool ok = server_->conn.Accept(req, deflate, server_);
      if (ok) server_->conn.Start(leftover);
      accepted.set_value(ok);
    });
    return accepted.get_future().get();
  }

  static std::string Request(const std::string& headers = "") {
    return std::string(
               "GET /app/k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n") +
           headers + "\r\n";
  }
  static std::string Upgrade(const std::string& extra_headers = "") {
    return Request(std::string("Sec-WebSocket-Key: ") + kKey + "\r\nSec-WebSocket-Version: 13\r\n" +
                   extra_headers);
  }

  std::string ReadHttpHead() {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos) {
      boost::system::error_code ec;
      if (net::read(client_, net::buffer(&c, 1), ec) != 1) break;
      head += c;
    }
    return head;
  }

  // One server frame: (first byte, payload); first byte 0 when the connection ended.
  std::pair<uint8_t, std::string> ReadFrame() {
    uint8_t h[2];
    boost::system::error_code ec;
    if (net::read(client_, net::buffer(h, 2), ec) != 2) return {0, ""};
    EXPECT_EQ(h[1] & 0x80, 0) << "server frames are never masked";
    uint64_t n = h[1] & 0x7f;
    if (n >= 126) {
      uint8_t ext[8];
      size_t len = n == 126 ? 2 : 8;
      net::read(client_, net::buffer(ext, len), ec);
      n = 0;
      for (size_t i = 0; i < len; ++i) n = (n << 8) | ext[i];
    }
    std::string payload(n, '\0');
    if (n) net::read(client_, net::buffer(payload), ec);
    return {h[0], payload};
  }

  static uint16_t CloseCode(const std::string& payload) {
    return payload.size() < 2 ? 0
                              : static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                                      static_cast<uint8_t>(payload[1]));
  }

  // Runs `f` on the server's thread and waits for it.
  bool OnServer(const std::function<bool()>& f) {
    std::promise<bool> p;
    net::post(io_, [&] { p.set_value(f()); });
    return p.get_future().get();
  }

  std::vector<std::pair<std::string, bool>> Messages() {
    std::lock_guard lock(server_->mu);
    return server_->messages;
  }

  net::io_context io_;
  tcp::acceptor acceptor_{io_};
  tcp::socket client_{io_};
  std::thread thread_;
  WsLimits limits_;
  int client_rcvbuf_ = 0;  // socket buffer sizes, when a test wants the socket to fill up
  int server_sndbuf_ = 0;
  std::shared_ptr<Recorder> server_;
};

TEST_F(WsConnTest, HandshakeAnswersWithTheRfcAcceptKey) {
  ASSERT_TRUE(Open(Upgrade()));
  std::string head = ReadHttpHead();
  EXPECT_NE(head.find("HTTP/1.1 101 Switching Protocols\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Sec-WebSocket-Extensions"), std::string::npos);
}

TEST_F(WsConnTest, WrongVersionGets426) {
  ASSERT_FALSE(Open(
      Request(std::string("Sec-WebSocket-Key: ") + kKey + "\r\nSec-WebSocket-Version: 8\r\n")));
  std::string head = ReadHttpHead();
  EXPECT_NE(head.find("HTTP/1.1 426"), std::string::npos) << head;
  EXPECT_NE(head.find("Sec-WebSocket-Version: 13"), std::string::npos);
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->closed.load(); }));
}

TEST_F(WsConnTest, MissingKeyGets400) {
  ASSERT_FALSE(Open(Request("Sec-WebSocket-Version: 13\r\n")));
  EXPECT_NE(ReadHttpHead().find("HTTP/1.1 400"), std::string::npos);
}

TEST_F(WsConnTest, MessagesPipelinedWithTheRequestAndFragmentsAreDelivered) {
  ASSERT_TRUE(Open(Upgrade(), Frame(0x81, "first")));
  ReadHttpHead();
  net::write(client_, net::buffer(Frame(0x01, "frag") + Frame(0x89, "pi") + Frame(0x80, "mented")));
  ASSERT_TRUE(testutil::WaitFor([&] { return Messages().size() == 2; }));
  EXPECT_EQ(Messages()[0].first, "first");
  EXPECT_EQ(Messages()[1].first, "fragmented");
  EXPECT_TRUE(Messages()[1].second);
  auto pong = ReadFrame();  // the ping in the middle of the fragments is answered
  EXPECT_EQ(pong.first, 0x8A);
  EXPECT_EQ(pong.second, "pi");
}

TEST_F(WsConnTest, MessageSplitAcrossReadsIsReassembled) {
  limits_.max_message_bytes = 100000;
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  std::string big(70000, 'x');
  std::string f = Frame(0x82, big);
  net::write(client_, net::buffer(f.substr(0, 3)));
  net::write(client_, net::buffer(f.substr(3, 40000)));
  net::write(client_, net::buffer(f.substr(40003)));
  ASSERT_TRUE(testutil::WaitFor([&] { return Messages().size() == 1; }));
  EXPECT_EQ(Messages()[0].first, big);
  EXPECT_FALSE(Messages()[0].second);  // binary
}

TEST_F(WsConnTest, QueuedMessagesGoOutInOrderAndCloseFollowsThem) {
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  OnServer([&] {
    for (int i = 0; i < 100; ++i) {
      server_->conn.Send(std::make_shared<const std::string>("m" + std::to_string(i)));
    }
    server_->conn.Send(std::make_shared<const std::string>(std::string(300, 'L')));
    server_->conn.Close(4200, "bye");
    // Once closing, nothing more is queued.
    return server_->conn.Send(std::make_shared<const std::string>("late")) ==
           WsConn::SendResult::kDropped;
  });
  for (int i = 0; i < 100; ++i) {
    auto f = ReadFrame();
    ASSERT_EQ(f.first, 0x81);
    ASSERT_EQ(f.second, "m" + std::to_string(i));
  }
  EXPECT_EQ(ReadFrame().second, std::string(300, 'L'));
  auto close = ReadFrame();
  EXPECT_EQ(close.first, 0x88);
  EXPECT_EQ(CloseCode(close.second), 4200);
  EXPECT_EQ(close.second.substr(2), "bye");
  // Counted once the batch has left (the client may read it a moment before).
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->sent.load() == 101u; }));
  // Payload bytes of the messages (m0..m99 and the 300-byte one), not the close frame.
  EXPECT_EQ(server_->sent_bytes.load(), 10u * 2 + 90u * 3 + 300u);
  EXPECT_FALSE(server_->closed.load());  // waits for the client's close
  net::write(client_, net::buffer(Frame(0x88, close.second)));
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->closed.load(); }));
}

TEST_F(WsConnTest, PeerCloseIsEchoed) {
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  net::write(client_, net::buffer(Frame(0x88, std::string("\x03\xe9", 2))));  // 1001
  auto close = ReadFrame();
  EXPECT_EQ(close.first, 0x88);
  EXPECT_EQ(CloseCode(close.second), 1001);
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->closed.load(); }));
  EXPECT_EQ(ReadFrame().first, 0);  // then the TCP connection ends
}

struct Violation {
  const char* name;
  std::string bytes;
  uint16_t code;
};

class WsConnViolation : public WsConnTest, public ::testing::WithParamInterface<Violation> {};

TEST_P(WsConnViolation, ClosesWithItsCode) {
  limits_.max_message_bytes = 1000;
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  net::write(client_, net::buffer(GetParam().bytes));
  auto close = ReadFrame();
  EXPECT_EQ(close.first, 0x88);
  EXPECT_EQ(CloseCode(close.second), GetParam().code);
  {
    std::lock_guard lock(server_->mu);
    EXPECT_EQ(server_->violation, GetParam().code);
  }
  EXPECT_TRUE(Messages().empty());
  // Anything after the violation is ignored; the client's close ends it.
  net::write(client_, net::buffer(Frame(0x81, "ignored") + Frame(0x88, "")));
  client_.close();
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->closed.load(); }));
  EXPECT_TRUE(Messages().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, WsConnViolation,
    ::testing::Values(
        Violation{"Unmasked", Frame(0x81, "hi", false), kWsCloseProtocolError},
        Violation{"ReservedBits", Frame(0xC1, "hi"), kWsCloseProtocolError},
        Violation{"ReservedOpcode", Frame(0x83, "hi"), kWsCloseProtocolError},
        Violation{"FragmentedPing", Frame(0x09, "hi"), kWsCloseProtocolError},
        Violation{"LoneContinuation", Frame(0x80, "hi"), kWsCloseProtocolError},
        Violation{"TooBig", Frame(0x81, std::string(1001, 'a')), kWsCloseTooBig},
        Violation{"TooBigInFragments",
                  Frame(0x01, std::string(600, 'a')) + Frame(0x80, std::string(600, 'a')),
                  kWsCloseTooBig},
        Violation{"InvalidUtf8", Frame(0x81, "\xc3\x28"), kWsCloseInvalidPayload},
        Violation{"BadCloseCode", Frame(0x88, std::string("\x03\xed", 2)), kWsCloseProtocolError},
        Violation{"InvalidUtf8CloseReason", Frame(0x88, std::string("\x03\xe8\xc3\x28", 4)),
                  kWsCloseInvalidPayload}),
    [](const auto& info) { return std::string(info.param.name); });

std::string Deflate(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(in.size() + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out - 4);  // without 00 00 ff ff
  deflateEnd(&z);
  return out;
}

std::string Inflate(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, -15);
  std::string src = in + std::string("\0\0\xff\xff", 4);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(src.data());
  z.avail_in = static_cast<uInt>(src.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  inflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  return out;
}

TEST_F(WsConnTest, PermessageDeflateBothWays) {
  ASSERT_TRUE(
      Open(Upgrade("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), "",
           /*deflate=*/true));
  std::string head = ReadHttpHead();
  EXPECT_NE(head.find("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover\r\n"),
            std::string::npos)
      << head;
  std::string text = std::string(500, 'z') + "{\"event\":\"x\"}";
  net::write(client_, net::buffer(Frame(0xC1, Deflate(text)) + Frame(0x81, "plain")));
  ASSERT_TRUE(testutil::WaitFor([&] { return Messages().size() == 2; }));
  EXPECT_EQ(Messages()[0].first, text);
  EXPECT_EQ(Messages()[1].first, "plain");
  OnServer([&] {
    server_->conn.Send(std::make_shared<const std::string>(text));
    server_->conn.Send(std::make_shared<const std::string>("tiny"));  // sent as it is
    return true;
  });
  auto big = ReadFrame();
  EXPECT_EQ(big.first, 0xC1);
  EXPECT_LT(big.second.size(), text.size());
  EXPECT_EQ(Inflate(big.second), text);
  auto tiny = ReadFrame();
  EXPECT_EQ(tiny.first, 0x81);
  EXPECT_EQ(tiny.second, "tiny");
}

TEST_F(WsConnTest, DeflateNotOfferedOrNotAllowedIsNotUsed) {
  ASSERT_TRUE(Open(Upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n"), "", false));
  EXPECT_EQ(ReadHttpHead().find("Sec-WebSocket-Extensions"), std::string::npos);
  // Without the extension a compressed frame is a protocol error.
  net::write(client_, net::buffer(Frame(0xC1, Deflate("x"))));
  EXPECT_EQ(CloseCode(ReadFrame().second), kWsCloseProtocolError);
}

TEST_F(WsConnTest, QueueBoundsRefuseInsteadOfGrowing) {
  limits_.max_queue_frames = 3;
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  // The 101 reply may still be queued; fill up to the bound, the next is refused.
  bool refused = OnServer([&] {
    for (int i = 0; i < 10; ++i) {
      if (server_->conn.Send(std::make_shared<const std::string>("m")) ==
          WsConn::SendResult::kOverBounds) {
        return true;
      }
    }
    return false;
  });
  EXPECT_TRUE(refused);
}

// A peer that pings and never reads: once the socket is full, the pong still waiting is
// replaced by each new one instead of the queue growing by a pong per ping (RFC 6455 section
// 5.5.3 allows answering only the most recent ping).
TEST_F(WsConnTest, PingFloodFromAPeerThatNeverReadsQueuesOnePong) {
  client_rcvbuf_ = 4096;
  server_sndbuf_ = 4096;
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  std::string pings;
  for (int i = 0; i < 1000; ++i) pings += Frame(0x89, std::string(125, 'p'));
  for (int round = 0; round < 20; ++round) net::write(client_, net::buffer(pings));  // 2.5 MB
  net::write(client_, net::buffer(Frame(0x89, "last") + Frame(0x81, "done")));
  ASSERT_TRUE(testutil::WaitFor([&] { return Messages().size() == 1; }));
  size_t queued_bytes = 0, queued_frames = 0;
  OnServer([&] {
    queued_bytes = server_->conn.queued_bytes();
    queued_frames = server_->conn.queued_messages();
    return true;
  });
  EXPECT_LE(queued_frames, 2u);
  EXPECT_LE(queued_bytes, 2u * 125);
  // Once the peer reads, the answer to its latest ping arrives.
  for (int i = 0; i < 30000; ++i) {
    auto f = ReadFrame();
    ASSERT_EQ(f.first, 0x8A);
    if (f.second == "last") return;
  }
  FAIL() << "no pong for the last ping";
}

}  // namespace
}  // namespace relay::transport

namespace relay::transport {
namespace {

// Garbage after the handshake (random bytes, some of them shaped like frame headers) never
// crashes the parser: the connection ends, by a violation or by the client going away.
class WsConnGarbage : public WsConnTest, public ::testing::WithParamInterface<int> {};

TEST_P(WsConnGarbage, EndsCleanly) {
  std::mt19937 rng(static_cast<uint32_t>(GetParam()));
  std::string bytes;
  while (bytes.size() < 8192) {
    if (rng() % 3 == 0) {
      std::string payload(rng() % 300, static_cast<char>(rng()));
      bytes += Frame(static_cast<uint8_t>(rng()), payload, rng() % 4 != 0);
    } else {
      bytes += static_cast<char>(rng());
    }
  }
  ASSERT_TRUE(Open(Upgrade()));
  ReadHttpHead();
  boost::system::error_code ec;
  net::write(client_, net::buffer(bytes), ec);
  client_.close();
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->closed.load(); }));
}

INSTANTIATE_TEST_SUITE_P(Seeds, WsConnGarbage, ::testing::Range(1, 21));

}  // namespace
}  // namespace relay::transport
