// relay-bench: a load generator that speaks only the Pusher protocol and HTTP API, so it measures
// Relay and any other Pusher-compatible server alike. Loopback only; bounded in count and time.
#include <netinet/in.h>
#include <signal.h>
#include <simdjson.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/channel.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "common/io_pool.h"
#include "common/json.h"
#include "common/pusher_auth.h"
#include "common/strings.h"
#include "common/time.h"
#include "common/version.h"

namespace {

namespace common = relay::common;

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string scenario;
  std::string host = "127.0.0.1";
  uint64_t port = 6001;
  uint64_t http_port = 0;  // 0 = same as port
  std::string app_id = "app-id", app_key = "app-key", app_secret = "app-secret";
  uint64_t connections = 1000;
  uint64_t channels = 10;
  uint64_t rate = 100;           // publishes (or client events) per second
  uint64_t duration = 10;        // seconds of measurement
  uint64_t payload = 64;         // bytes of padding in each event
  uint64_t connect_rate = 2000;  // connections opened per second
  uint64_t threads = 1;
  uint64_t publishers = 4;  // concurrent HTTP publishing connections
  uint64_t pid = 0;         // server pid for memory readings
  std::string sources = "127.0.0.1";
  bool json = false;
  uint64_t hold = 0;       // connect: seconds to hold the connections after connecting
  std::string ready_file;  // subscribe, storm: created once every connection is subscribed
  // storm: where lost clients reconnect, how they notice a silent connection, the result's bound.
  std::string reconnect_ports;
  std::string user_prefix = "u";
  uint64_t pong_timeout = 30;    // pusher-js's pongTimeout, seconds
  uint64_t storm_timeout = 180;  // seconds from the first loss until every client must be back
  std::string done_file;         // storm: created once every lost client is subscribed again
};

// Log-linear latency histogram in microseconds: bounded memory whatever the sample count.
class Histogram {
 public:
  void Add(int64_t us) {
    if (us < 0) us = 0;
    ++buckets_[Bucket(us)];
    ++count_;
    max_ = std::max(max_, us);
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += o.buckets_[i];
    count_ += o.count_;
    max_ = std::max(max_, o.max_);
  }
  double Percentile(double p) const {
    if (count_ == 0) return 0;
    uint64_t target = static_cast<uint64_t>(std::ceil(p / 100.0 * count_));
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen >= target) return static_cast<double>(Upper(i)) / 1000.0;  // ms
    }
    return max_ / 1000.0;
  }
  uint64_t count() const { return count_; }
  double max_ms() const { return max_ / 1000.0; }

 private:
  // 16 linear sub-buckets per power of two.
  static size_t Bucket(int64_t v) {
    if (v < 16) return static_cast<size_t>(v);
    int e = 63 - __builtin_clzll(static_cast<uint64_t>(v));
    size_t sub = static_cast<size_t>((v >> (e - 4)) & 15);
    return std::min<size_t>(16 + (e - 4) * 16 + sub, kBuckets - 1);
  }
  static int64_t Upper(size_t b) {
    if (b < 16) return static_cast<int64_t>(b);
    int e = static_cast<int>((b - 16) / 16) + 4;
    int64_t sub = static_cast<int64_t>((b - 16) % 16);
    return ((16 + sub + 1) << (e - 4)) - 1;
  }
  static constexpr size_t kBuckets = 16 + 60 * 16;
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  int64_t max_ = 0;
};

// Shared counters of a run.
struct Stats {
  std::atomic<uint64_t> connected{0}, subscribed{0}, failed{0}, closed{0}, received{0};
  std::atomic<uint64_t> published{0}, publish_errors{0}, sent_client_events{0};
  std::mutex mu;
  Histogram latency;  // end-to-end delivery
  Histogram connect;  // time to connection_established
  // Why connections failed before connection_established: "stage: error" -> count (under mu).
  std::map<std::string, uint64_t> fail_reasons;

  void CountFailure(std::string reason) {
    std::lock_guard<std::mutex> lock(mu);
    ++fail_reasons[std::move(reason)];
  }
  std::string FailReasons() {
    std::lock_guard<std::mutex> lock(mu);
    std::string out;
    for (const auto& [why, n] : fail_reasons)
      common::StrAppend(&out, out.empty() ? "" : "; ", why, ": ", n);
    return out.empty() ? "none" : out;
  }
};

std::string ReadRss(uint64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kb = 0;
      std::sscanf(line.c_str(), "VmRSS: %lu kB", &kb);
      return std::to_string(kb);
    }
  }
  return "0";
}

uint64_t RssKb(uint64_t pid) { return pid == 0 ? 0 : std::stoull(ReadRss(pid)); }

// What the storm scenario learns from a client: its subscription succeeded, or the connection it
// had established ended without Close() (the server went away, or the client's pong timed out).
struct ClientHooks {
  std::function<void()> established;  // connection_established
  std::function<void()> subscribed;
  std::function<void(bool closed)> lost;  // closed: by the server or the network, not a pong
};

// One WebSocket client: connect, subscribe, record deliveries. It speaks RFC 6455 itself over a
// plain socket, as lean as it can be: server frames are parsed in place from a per-thread read
// buffer (an idle client holds no buffer), so the generator spends as little CPU per delivery as
// possible and leaves the cores it shares with the server to the server.
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(net::io_context& ioc, const Options& o, Stats& s, std::string channel,
         net::ip::address source, std::string user_id = {}, const ClientHooks* hooks = nullptr)
      : sock_(ioc),
        o_(o),
        s_(s),
        channel_(std::move(channel)),
        source_(source),
        user_id_(std::move(user_id)),
        hooks_(hooks) {}

  void Start(const tcp::endpoint& server) {
    started_ns_ = NowNs();
    beast::error_code ec;
    sock_.open(tcp::v4(), ec);
    if (ec) return Fail(ec);
    // Pick the source port at connect time (by the whole 4-tuple, reusing TIME_WAIT ports),
    // not at bind time: otherwise back-to-back runs exhaust the ephemeral ports.
    int one = 1;
    ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    sock_.bind(tcp::endpoint(source_, 0), ec);
    if (ec) return Fail(ec);
    sock_.async_connect(server, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Fail(ec);
      self->tcp_connected_ = true;
      beast::error_code nd;
      self->sock_.set_option(tcp::no_delay(true), nd);
      self->sock_.non_blocking(true, nd);
      self->Write(
          common::StrCat("GET /app/", self->o_.app_key,
                         "?protocol=7&client=relay-bench&version=1.0 HTTP/1.1\r\n"
                         "Host: ",
                         self->o_.host, ":", self->o_.port,
                         "\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: cmVsYXktYmVuY2gta2V5IQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n"),
          /*frame=*/false);
      self->WaitReadable();
    });
  }

  void SendClientEvent() {
    if (!subscribed_) return;
    Write(common::StrCat(R"({"event":"client-bench","channel":)", common::JsonQuote(channel_),
                         R"(,"data":{"t":)", NowNs(), R"(,"pad":")", std::string(o_.payload, 'x'),
                         R"("}})"));
    s_.sent_client_events++;
  }

  // Aborts the connection (RST): an orderly close would leave one TIME_WAIT socket per client
  // for 60 s, enough to exhaust loopback source ports for the next run.
  void Close() {
    closed_by_us_ = true;
    beast::error_code ec;
    sock_.set_option(net::socket_base::linger(true, 0), ec);
    sock_.close(ec);
  }

  bool subscribed() const { return subscribed_; }

  // pusher-js's activity check: after the server's activity_timeout (at most 120 s) without a
  // message it sends pusher:ping, and a connection that then stays silent for --pong-timeout is
  // given up (closed, then reported lost). Called periodically on the client's thread.
  void CheckActivity(int64_t now_ns) {
    if (!established_ || closed_by_us_ || ended_) return;
    if (!pinged_) {
      if (now_ns - last_rx_ns_ >= activity_seconds_ * 1'000'000'000) {
        Write(R"({"event":"pusher:ping","data":{}})");
        pinged_ = true;
        ping_ns_ = now_ns;
      }
    } else if (now_ns - ping_ns_ >= static_cast<int64_t>(o_.pong_timeout) * 1'000'000'000) {
      Close();
      ended_ = true;
      if (hooks_ != nullptr) hooks_->lost(false);
    }
  }

 private:
  static char* Scratch() {
    thread_local std::unique_ptr<char[]> buf(new char[kScratch]);
    return buf.get();
  }
  static constexpr size_t kScratch = 256 * 1024;

  // The connection ended (ec: the error that ended it; none for a protocol end: a refused upgrade
  // or a close frame).
  void Fail(const beast::error_code& ec = {}) {
    if (!failed_ && !established_) {
      failed_ = true;
      s_.failed++;
      s_.CountFailure(common::StrCat(!tcp_connected_ ? "connect"
                                     : !upgraded_    ? "upgrade"
                                                     : "before connection_established",
                                     " (", ec ? ec.message() : std::string("protocol"), ")"));
    } else if (established_ && !closed_) {
      closed_ = true;
      s_.closed++;
    }
    beast::error_code ignored;
    sock_.close(ignored);
    if (established_ && !closed_by_us_ && !ended_) {
      ended_ = true;
      if (hooks_ != nullptr) hooks_->lost(true);
    }
  }

  // Queues `text` as a masked text frame (or raw bytes), written one buffer at a time.
  void Write(std::string text, bool frame = true) {
    std::string out;
    if (frame) {
      size_t n = text.size();
      out.push_back(static_cast<char>(0x81));
      if (n < 126) {
        out.push_back(static_cast<char>(0x80 | n));
      } else {
        out.push_back(static_cast<char>(0x80 | 126));  // the generator's frames stay < 64 KiB
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n & 0xff));
      }
      const char mask[4] = {0x5a, 0x3c, 0x71, 0x0e};
      out.append(mask, 4);
      for (size_t i = 0; i < n; ++i) text[i] = static_cast<char>(text[i] ^ mask[i & 3]);
      out += text;
    } else {
      out = std::move(text);
    }
    out_.push_back(std::move(out));
    if (out_.size() == 1) DoWrite();
  }

  void DoWrite() {
    net::async_write(sock_, net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->out_.pop_front();
                       if (ec) return self->Fail(ec);
                       if (!self->out_.empty()) self->DoWrite();
                     });
  }

  void WaitReadable() {
    sock_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Fail(ec);
      self->OnReadable();
    });
  }

  void OnReadable() {
    char* buf = Scratch();
    for (int i = 0; i < 4; ++i) {
      beast::error_code ec;
      size_t n = sock_.read_some(net::buffer(buf, kScratch), ec);
      if (ec == net::error::would_block) break;
      if (ec) return Fail(ec);
      last_rx_ns_ = NowNs();
      pinged_ = false;  // any message answers an activity check
      if (!Take(buf, n)) return Fail();
      if (n < kScratch) break;
    }
    WaitReadable();
  }

  // Handles received bytes; false when the connection must end.
  bool Take(char* data, size_t n) {
    std::string_view in(data, n);
    if (!partial_.empty()) {
      partial_.append(data, n);
      in = partial_;
    }
    size_t pos = 0;
    if (!upgraded_) {
      size_t end = in.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (partial_.empty()) partial_.assign(data, n);
        return partial_.size() < 16384;
      }
      if (in.substr(0, 12) != "HTTP/1.1 101") return false;
      upgraded_ = true;
      pos = end + 4;
    }
    while (in.size() - pos >= 2) {
      auto b0 = static_cast<uint8_t>(in[pos]);
      auto b1 = static_cast<uint8_t>(in[pos + 1]);
      uint64_t len = b1 & 0x7f;
      size_t header = len == 126 ? 4 : len == 127 ? 10 : 2;
      if (in.size() - pos < header) break;
      if (len == 126) {
        len =
            (uint64_t{static_cast<uint8_t>(in[pos + 2])} << 8) | static_cast<uint8_t>(in[pos + 3]);
      } else if (len == 127) {
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | static_cast<uint8_t>(in[pos + 2 + k]);
      }
      if (in.size() - pos - header < len) break;
      std::string_view payload = in.substr(pos + header, len);
      pos += header + len;
      uint8_t opcode = b0 & 0x0f;
      if (opcode == 0x8) return false;  // the server closed
      if (opcode == 0x9) {
        WritePong(payload);
      } else if (opcode == 0x1) {
        OnFrame(payload);
      }
    }
    if (in.data() == partial_.data()) {
      partial_.erase(0, pos);
    } else {
      partial_.assign(in.data() + pos, in.size() - pos);
    }
    if (partial_.empty() && partial_.capacity() > 4096) std::string().swap(partial_);
    return true;
  }

  void WritePong(std::string_view payload) {
    std::string out = {
        static_cast<char>(0x8A), static_cast<char>(0x80 | payload.size()), 0, 0, 0, 0};
    out.append(payload);  // a zero mask leaves the payload as it is
    out_.push_back(std::move(out));
    if (out_.size() == 1) DoWrite();
  }

  void OnFrame(std::string_view text) {
    // Fast path for deliveries: find the timestamp without a full parse.
    size_t t = text.find("\\\"t\\\":");
    size_t shift = 6;
    if (t == std::string_view::npos) {
      t = text.find("\"t\":");
      shift = 4;
    }
    if (t != std::string_view::npos && text.find("pusher") == std::string_view::npos) {
      int64_t sent = 0;
      std::from_chars(text.data() + t + shift, text.data() + text.size(), sent);
      int64_t us = (NowNs() - sent) / 1000;
      s_.received++;
      std::lock_guard<std::mutex> lock(local_mu());
      local_latency().Add(us);
      return;
    }
    if (text.find("pusher:ping") != std::string_view::npos) {
      Write(R"({"event":"pusher:pong","data":{}})");
      return;
    }
    if (text.find("pusher:connection_established") != std::string_view::npos) {
      established_ = true;
      s_.connected++;
      {
        std::lock_guard<std::mutex> lock(local_mu());
        local_connect().Add((NowNs() - started_ns_) / 1000);
      }
      thread_local simdjson::dom::parser parser, p2;  // reused: no allocation per connection
      simdjson::dom::element doc;
      std::string_view data;
      if (parser.parse(text).get(doc) || doc["data"].get(data)) return;
      simdjson::dom::element inner;
      std::string_view sid;
      if (p2.parse(data).get(inner) || inner["socket_id"].get(sid)) return;
      socket_id_ = std::string(sid);
      if (hooks_ != nullptr) hooks_->established();
      uint64_t activity = 0;
      if (!inner["activity_timeout"].get(activity) && activity > 0) {
        activity_seconds_ = std::min<int64_t>(120, static_cast<int64_t>(activity));
      }
      if (channel_.empty()) return;
      Subscribe();
      return;
    }
    if (text.find("pusher_internal:subscription_succeeded") != std::string_view::npos) {
      subscribed_ = true;
      s_.subscribed++;
      {
        std::lock_guard<std::mutex> lock(local_mu());
        local_subscribe().Add((NowNs() - subscribe_ns_) / 1000);
      }
      if (hooks_ != nullptr) hooks_->subscribed();
    }
  }

  void Subscribe() {
    std::string auth, channel_data;
    common::ChannelKind kind = common::ClassifyChannel(channel_);
    if (kind.is_presence) {
      channel_data = common::StrCat(R"({"user_id":")", user_id_.empty() ? socket_id_ : user_id_,
                                    R"(","user_info":{}})");
    }
    if (kind.NeedsAuth()) {
      auth = common::SignToken(o_.app_key, o_.app_secret,
                               common::ChannelStringToSign(socket_id_, channel_, channel_data));
    }
    common::JsonWriter w;
    w.BeginObject().Key("event").String("pusher:subscribe").Key("data").BeginObject();
    w.Key("auth").String(auth).Key("channel").String(channel_);
    if (!channel_data.empty()) w.Key("channel_data").String(channel_data);
    w.EndObject().EndObject();
    subscribe_ns_ = NowNs();
    Write(w.Take());
  }

 public:
  // Per-thread histograms (merged at the end) keep the hot path free of contention.
  static std::mutex& local_mu() {
    thread_local std::mutex mu;
    return mu;
  }
  static Histogram& local_latency() {
    thread_local Histogram h;
    return h;
  }
  static Histogram& local_connect() {
    thread_local Histogram h;
    return h;
  }
  static Histogram& local_subscribe() {
    thread_local Histogram h;
    return h;
  }

 private:
  tcp::socket sock_;
  const Options& o_;
  Stats& s_;
  std::string channel_;
  net::ip::address source_;
  std::string user_id_;  // presence user id (default: the socket id)
  const ClientHooks* hooks_;
  std::string partial_, socket_id_;
  std::deque<std::string> out_;
  int64_t started_ns_ = 0, subscribe_ns_ = 0, last_rx_ns_ = 0, ping_ns_ = 0;
  int64_t activity_seconds_ = 120;
  bool tcp_connected_ = false, upgraded_ = false, established_ = false, subscribed_ = false,
       failed_ = false, closed_ = false, closed_by_us_ = false, ended_ = false, pinged_ = false;
};

// A keep-alive HTTP publisher signing each request like the pusher SDKs do.
class Publisher {
 public:
  Publisher(const Options& o, Stats& s) : o_(o), s_(s) {}

  bool Publish(const std::string& channel) {
    std::string data =
        common::StrCat(R"({"t":)", NowNs(), R"(,"pad":")", std::string(o_.payload, 'x'), R"("})");
    common::JsonWriter w;
    w.BeginObject().Key("name").String("bench").Key("channels").BeginArray().String(channel);
    w.EndArray().Key("data").String(data).EndObject();
    std::string body = w.Take();
    std::string path = common::StrCat("/apps/", o_.app_id, "/events");
    common::QueryParams q = {{"auth_key", o_.app_key},
                             {"auth_timestamp", std::to_string(common::NowUnixSeconds())},
                             {"auth_version", "1.0"},
                             {"body_md5", common::Md5Hex(body)}};
    std::string sig =
        common::HmacSha256Hex(o_.app_secret, common::HttpStringToSign("POST", path, q));
    std::string target = path + "?";
    for (const auto& [k, v] : q) target += k + "=" + v + "&";
    target += "auth_signature=" + sig;
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, o_.host);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    http::response<http::string_body> res;
    beast::error_code ec;
    // A server may close a kept-alive connection at any time: retry once on a fresh one.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!stream_) Connect();
      if (!stream_) break;
      stream_->expires_after(std::chrono::seconds(10));
      http::write(*stream_, req, ec);
      if (!ec) http::read(*stream_, buffer_, res, ec);
      if (!ec) break;
      stream_.reset();
      buffer_.clear();
    }
    if (ec || res.result_int() != 200) {
      s_.publish_errors++;
      stream_.reset();
      return false;
    }
    if (!res.keep_alive()) stream_.reset();
    s_.published++;
    return true;
  }

 private:
  void Connect() {
    stream_ = std::make_unique<beast::tcp_stream>(ioc_);
    beast::error_code ec;
    stream_->socket().connect(
        tcp::endpoint(net::ip::make_address(o_.host), static_cast<uint16_t>(o_.http_port)), ec);
    if (ec) {
      stream_.reset();
      s_.publish_errors++;
      return;
    }
    stream_->socket().set_option(tcp::no_delay(true), ec);
  }

  const Options& o_;
  Stats& s_;
  net::io_context ioc_;
  std::unique_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

struct Result {
  std::vector<std::pair<std::string, std::string>> fields;
  void Add(std::string k, std::string v) { fields.emplace_back(std::move(k), std::move(v)); }
  void Add(std::string k, double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.3f", v);
    fields.emplace_back(std::move(k), buf);
  }
  void Add(std::string k, uint64_t v) { fields.emplace_back(std::move(k), std::to_string(v)); }
  void Print(bool json) const {
    if (json) {
      common::JsonWriter w;
      w.BeginObject();
      for (const auto& [k, v] : fields) {
        bool numeric = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) ||
                                      v[0] == '-' || v[0] == '[');  // numbers and arrays
        w.Key(k);
        if (numeric)
          w.Raw(v);
        else
          w.String(v);
      }
      w.EndObject();
      std::cout << w.str() << "\n";
      return;
    }
    size_t width = 0;
    for (const auto& [k, v] : fields) width = std::max(width, k.size());
    for (const auto& [k, v] : fields) {
      std::cout << k << std::string(width - k.size() + 2, ' ') << v << "\n";
    }
  }
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {
    for (size_t i = 0; i < o.threads; ++i) {
      contexts_.push_back(std::make_unique<net::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
    for (absl::string_view s : absl::StrSplit(o.sources, ',', absl::SkipWhitespace())) {
      sources_.push_back(net::ip::make_address(std::string(s)));
    }
  }

  ~Bench() { Stop(); }

  // Stops the client threads (their objects stay, to be destroyed on this thread).
  void Stop() {
    guards_.clear();
    for (auto& c : contexts_) c->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void Run() {
    for (auto& c : contexts_) {
      threads_.emplace_back([ctx = c.get()] { ctx->run(); });
    }
  }

  using MakeClient = std::function<std::shared_ptr<Client>(net::io_context&, uint64_t)>;

  // Opens `n` connections at the configured rate; `channel_of(i)` names client i's channel;
  // `make`, if given, makes client i (on the given context) instead of the plain one.
  bool Connect(uint64_t n, const std::function<std::string(uint64_t)>& channel_of, double* seconds,
               const MakeClient& make = nullptr) {
    tcp::endpoint server(net::ip::make_address(o_.host), static_cast<uint16_t>(o_.port));
    auto start = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / o_.connect_rate));
      std::this_thread::sleep_until(due);  // pacing the load, not synchronizing
      auto& ctx = *contexts_[i % contexts_.size()];
      auto client = make ? make(ctx, i)
                         : std::make_shared<Client>(ctx, o_, stats_, channel_of(i),
                                                    sources_[i % sources_.size()]);
      clients_.push_back(client);
      net::post(ctx, [client, server] { client->Start(server); });
    }
    // Wait (bounded) until every connection is settled.
    auto deadline = Clock::now() + std::chrono::seconds(30 + n / 1000);
    uint64_t want_sub = 0;
    for (uint64_t i = 0; i < n; ++i) want_sub += channel_of(i).empty() ? 0 : 1;
    while (Clock::now() < deadline) {
      uint64_t settled = stats_.connected + stats_.failed;
      bool subs_done = stats_.subscribed + stats_.failed >= want_sub;
      if (settled >= n && subs_done) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    *seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return stats_.connected + stats_.failed >= n;
  }

  // Closes every client and waits (bounded) until the client threads have done it, so the
  // aborts happen before the process exits and closes the sockets the orderly way.
  void CloseAll() {
    for (size_t i = 0; i < clients_.size(); ++i) {
      auto c = clients_[i];
      net::post(*contexts_[i % contexts_.size()], [c] { c->Close(); });
    }
    for (auto& c : contexts_) {
      auto done = std::make_shared<std::promise<void>>();
      auto f = done->get_future();
      net::post(*c, [done] { done->set_value(); });
      f.wait_for(std::chrono::seconds(10));
    }
  }

  Histogram MergedLatency() { return Merged(&Client::local_latency); }
  Histogram MergedConnect() { return Merged(&Client::local_connect); }
  Histogram MergedSubscribe() { return Merged(&Client::local_subscribe); }

  // Empties the per-thread connect and subscribe histograms (a new phase of a run starts).
  void ResetConnectHistograms() {
    OnEachThread([] {
      Client::local_connect() = Histogram();
      Client::local_subscribe() = Histogram();
    });
  }

  // Collects one of the per-thread histograms from every client thread, on its own thread.
  Histogram Merged(Histogram& (*which)()) {
    Histogram h;
    OnEachThread([&h, which] { h.Merge(which()); });
    return h;
  }

  // Runs `fn` on every client thread in turn, holding that thread's histogram lock, and waits
  // for each.
  void OnEachThread(const std::function<void()>& fn) {
    for (auto& c : contexts_) {
      std::promise<void> p;
      auto f = p.get_future();
      net::post(*c, [&p, &fn] {
        {
          std::lock_guard<std::mutex> lock(Client::local_mu());
          fn();
        }
        p.set_value();
      });
      f.wait();
    }
  }

  Stats& stats() { return stats_; }
  std::vector<std::shared_ptr<Client>>& clients() { return clients_; }
  net::io_context& context(size_t i) { return *contexts_[i % contexts_.size()]; }
  size_t context_count() const { return contexts_.size(); }
  const net::ip::address& source(size_t i) const { return sources_[i % sources_.size()]; }

 private:
  const Options& o_;
  Stats stats_;
  std::vector<std::unique_ptr<net::io_context>> contexts_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::vector<net::ip::address> sources_;
  std::vector<std::shared_ptr<Client>> clients_;
};

void AddLatency(Result& r, const Histogram& h) {
  r.Add("latency_p50_ms", h.Percentile(50));
  r.Add("latency_p90_ms", h.Percentile(90));
  r.Add("latency_p99_ms", h.Percentile(99));
  r.Add("latency_p999_ms", h.Percentile(99.9));
  r.Add("latency_max_ms", h.max_ms());
}

int RunConnect(const Options& o) {
  Bench b(o);
  b.Run();
  uint64_t rss_before = RssKb(o.pid);
  double secs = 0;
  b.Connect(
      o.connections, [](uint64_t) { return std::string(); }, &secs);
  auto& s = b.stats();
  // Let the server settle before reading its memory (bounded).
  std::this_thread::sleep_for(std::chrono::seconds(std::min<uint64_t>(o.hold, 60) + 1));
  uint64_t rss_after = RssKb(o.pid);
  Histogram connect = b.MergedConnect();
  Result r;
  r.Add("scenario", std::string("connect"));
  r.Add("connections", o.connections);
  r.Add("established", s.connected.load());
  r.Add("failed", s.failed.load());
  r.Add("fail_reasons", s.FailReasons());
  r.Add("seconds", secs);
  r.Add("connections_per_second", s.connected.load() / std::max(secs, 1e-9));
  r.Add("connect_p50_ms", connect.Percentile(50));
  r.Add("connect_p99_ms", connect.Percentile(99));
  r.Add("connect_max_ms", connect.max_ms());
  if (o.pid != 0) {
    r.Add("server_rss_before_kib", rss_before);
    r.Add("server_rss_after_kib", rss_after);
    r.Add("server_bytes_per_connection",
          s.connected > 0 ? (rss_after - std::min(rss_after, rss_before)) * 1024 / s.connected : 0);
  }
  r.Print(o.json);
  b.CloseAll();
  return s.failed == 0 ? 0 : 1;
}

// Publishes at `rate` for `duration` seconds from `publishers` threads through the HTTP API.
void PublishLoop(const Options& o, Stats& s, const std::function<std::string(uint64_t)>& channel) {
  std::vector<std::thread> pubs;
  std::atomic<uint64_t> next{0};
  uint64_t total = o.rate * o.duration;
  auto start = Clock::now();
  for (uint64_t p = 0; p < o.publishers; ++p) {
    pubs.emplace_back([&, p] {
      Publisher pub(o, s);
      while (true) {
        uint64_t i = next.fetch_add(1);
        if (i >= total) return;
        auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / o.rate));
        std::this_thread::sleep_until(due);
        pub.Publish(channel(i));
      }
      (void)p;
    });
  }
  for (auto& t : pubs) t.join();
}

// The fan-out scenarios' channel of client (or publish) i: bench-<i % channels>, so that the
// clients of every process, and the publishes, spread evenly over the same channels.
std::string FanoutChannel(const Options& o, uint64_t i) {
  return common::StrCat("bench-", i % o.channels);
}

// What a publishing run reports: the rate asked and reached, the publishes and their errors.
void AddPublishing(Result& r, const Options& o, const Stats& s, double seconds) {
  r.Add("target_publish_rate", o.rate);
  r.Add("published", s.published.load());
  r.Add("publish_errors", s.publish_errors.load());
  r.Add("achieved_publish_rate", s.published.load() / std::max(seconds, 1e-9));
}

int RunFanout(const Options& o) {
  Bench b(o);
  b.Run();
  double secs = 0;
  auto channel_of = [&o](uint64_t i) { return FanoutChannel(o, i); };
  b.Connect(o.connections, channel_of, &secs);
  auto& s = b.stats();
  uint64_t subscribed = s.subscribed;
  // Subscribers per channel, to know how many deliveries each publish should cause.
  std::vector<uint64_t> per_channel(o.channels, 0);
  for (uint64_t i = 0; i < o.connections; ++i) per_channel[i % o.channels]++;
  auto pub_start = Clock::now();
  PublishLoop(o, s, [&o](uint64_t i) { return FanoutChannel(o, i); });
  double pub_secs = std::chrono::duration<double>(Clock::now() - pub_start).count();
  uint64_t expected = 0;
  for (uint64_t i = 0; i < s.published; ++i) expected += per_channel[i % o.channels];
  // Wait (bounded) for the tail of deliveries.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (s.received < expected && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double total_secs = std::chrono::duration<double>(Clock::now() - pub_start).count();
  Histogram h = b.MergedLatency();
  Result r;
  r.Add("scenario", std::string("fanout"));
  r.Add("connections", o.connections);
  r.Add("subscribed", subscribed);
  r.Add("channels", o.channels);
  AddPublishing(r, o, s, pub_secs);
  r.Add("expected_deliveries", expected);
  r.Add("deliveries", s.received.load());
  r.Add("delivery_ratio", expected ? static_cast<double>(s.received) / expected : 0.0);
  r.Add("deliveries_per_second", s.received.load() / std::max(total_secs, 1e-9));
  r.Add("disconnected", s.closed.load());
  AddLatency(r, h);
  r.Print(o.json);
  b.CloseAll();
  return 0;
}

// Blocks SIGINT and SIGTERM, to be waited for with sigtimedwait; call before any thread starts
// (they inherit the mask).
sigset_t BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

// One process of a multi-process fan-out (tools/bench/scale.sh): --connections subscribers over
// --channels public channels (client i on bench-<i % channels>, so every process has the same
// share of each channel), counting what arrives until SIGINT or SIGTERM (at most --duration
// seconds), then prints what it received and the latency percentiles.
int RunSubscribe(const Options& o) {
  sigset_t stop = BlockStopSignals();
  Bench b(o);
  b.Run();
  double secs = 0;
  auto channel_of = [&o](uint64_t i) { return FanoutChannel(o, i); };
  b.Connect(o.connections, channel_of, &secs);
  auto& s = b.stats();
  if (!o.ready_file.empty()) std::ofstream(o.ready_file) << s.subscribed.load() << "\n";
  timespec limit{static_cast<time_t>(o.duration), 0};
  sigtimedwait(&stop, nullptr, &limit);
  Histogram h = b.MergedLatency();
  Result r;
  r.Add("scenario", std::string("subscribe"));
  r.Add("connections", o.connections);
  r.Add("connected", s.connected.load());
  r.Add("subscribed", s.subscribed.load());
  r.Add("failed", s.failed.load());
  r.Add("fail_reasons", s.FailReasons());
  r.Add("connect_seconds", secs);
  r.Add("deliveries", s.received.load());
  r.Add("disconnected", s.closed.load());
  AddLatency(r, h);
  r.Print(o.json);
  b.CloseAll();
  return 0;
}

// One client of the storm scenario across its reconnections. Touched only on its io_context's
// thread (by its client's hooks and by that thread's sweep).
struct StormSlot {
  enum class State { kUp, kWaiting, kConnecting };
  State state = State::kConnecting;
  std::shared_ptr<Client> client;
  ClientHooks hooks;
  int64_t lost_ns = 0;      // when the connection was lost (0: never yet)
  int64_t due_ns = 0;       // kWaiting: when the next attempt starts
  int64_t deadline_ns = 0;  // kConnecting: when pusher-js gives the attempt up (until established)
  uint64_t attempts = 0;    // failed attempts of this reconnection
};

// What the storm's threads count; read by the main thread.
struct StormCounters {
  std::atomic<uint64_t> live{0};  // subscribed right now
  std::atomic<uint64_t> lost{0}, attempts{0}, abandoned_attempts{0}, resubscribed{0};
  std::atomic<uint64_t> clients_lost{0};  // clients that lost a connection at least once
  std::atomic<int64_t> first_loss_ns{0}, last_resubscribe_ns{0};
};

// A reconnect storm (tools/bench/storm.sh): --connections clients on --port, half of them on
// presence channels (client i: presence-storm-<i/2 % channels> for even i, with the user id
// <user-prefix><i>; storm-<i/2 % channels> for odd i). A client whose connection is lost
// reconnects and subscribes again as pusher-js 8 does over WebSocket: 1 s after a close (at
// once after its own pong timeout), to one of --reconnect-ports (client i's next one, as a load
// balancer would spread them); an attempt that has not connected within 15 s (doubling to 60 s)
// is abandoned for the next one, and a failed attempt waits out that time, like pusher-js's
// sequential strategy. It waits for the first loss (at most --duration s), then samples the
// clients subscribed every 100 ms until every client has lost its connection and is back (at
// most --storm-timeout s), writes --done-file, and holds the clients until SIGINT/SIGTERM (at
// most --duration s more) so that the rosters can be read.
int RunStorm(const Options& o) {
  sigset_t stop = BlockStopSignals();
  std::vector<tcp::endpoint> targets;
  for (absl::string_view p : absl::StrSplit(o.reconnect_ports, ',', absl::SkipWhitespace())) {
    uint16_t port = 0;
    if (std::from_chars(p.data(), p.data() + p.size(), port).ec != std::errc() || port == 0) {
      std::cerr << "relay-bench: bad --reconnect-ports\n";
      return 2;
    }
    targets.emplace_back(net::ip::make_address(o.host), port);
  }
  if (targets.empty()) {
    std::cerr << "relay-bench: storm needs --reconnect-ports\n";
    return 2;
  }
  auto channel_of = [&o](uint64_t i) {
    return common::StrCat(i % 2 == 0 ? "presence-storm-" : "storm-", (i / 2) % o.channels);
  };
  StormCounters sc;
  std::vector<StormSlot> slots(o.connections);
  Bench b(o);
  auto make = [&](net::io_context& ctx, uint64_t i) {
    return std::make_shared<Client>(ctx, o, b.stats(), channel_of(i), b.source(i),
                                    common::StrCat(o.user_prefix, i), &slots[i].hooks);
  };
  auto start_attempt = [&](uint64_t i, int64_t now) {
    StormSlot& slot = slots[i];
    if (slot.client) slot.client->Close();
    slot.state = StormSlot::State::kConnecting;
    int64_t timeout_s = std::min<int64_t>(60, int64_t{15} << std::min<uint64_t>(slot.attempts, 3));
    slot.deadline_ns = now + timeout_s * 1'000'000'000;
    slot.client = make(b.context(i), i);
    slot.client->Start(targets[(i + slot.attempts) % targets.size()]);
    sc.attempts++;
  };
  for (uint64_t i = 0; i < o.connections; ++i) {
    StormSlot& slot = slots[i];
    slot.deadline_ns = std::numeric_limits<int64_t>::max();  // a first connect is not retried
    // pusher-js's attempt timer ends with the handshake (connection_established), not with the
    // subscriptions that follow it.
    slot.hooks.established = [&slot] {
      slot.deadline_ns = std::numeric_limits<int64_t>::max();
      slot.attempts = 0;
    };
    slot.hooks.subscribed = [&sc, &slot] {
      slot.state = StormSlot::State::kUp;
      sc.live++;
      if (slot.lost_ns != 0) {
        sc.resubscribed++;
        int64_t now = NowNs();
        int64_t last = sc.last_resubscribe_ns.load();
        while (now > last && !sc.last_resubscribe_ns.compare_exchange_weak(last, now)) {
        }
      }
    };
    slot.hooks.lost = [&sc, &slot](bool closed) {
      int64_t now = NowNs();
      if (slot.state == StormSlot::State::kUp) sc.live--;
      slot.state = StormSlot::State::kWaiting;
      slot.attempts = 0;  // a new connect() starts from the first timeout again
      if (slot.lost_ns == 0) sc.clients_lost++;
      slot.lost_ns = now;
      slot.due_ns = now + (closed ? 1'000'000'000 : 0);  // retryIn(1000) / retryIn(0)
      sc.lost++;
      int64_t zero = 0;
      sc.first_loss_ns.compare_exchange_strong(zero, now);
    };
  }
  b.Run();
  double secs = 0;
  b.Connect(o.connections, channel_of, &secs, [&](net::io_context& ctx, uint64_t i) {
    slots[i].client = make(ctx, i);
    return slots[i].client;
  });
  uint64_t initially = b.stats().subscribed;
  b.ResetConnectHistograms();
  // Each thread sweeps its own slots every 20 ms: activity checks, due retries, attempts that
  // ran out of time.
  std::vector<std::unique_ptr<net::steady_timer>> sweeps;
  std::atomic<bool> stopping{false};
  std::function<void(size_t)> sweep = [&](size_t t) {
    if (stopping) return;
    int64_t now = NowNs();
    for (uint64_t i = t; i < slots.size(); i += b.context_count()) {
      StormSlot& slot = slots[i];
      switch (slot.state) {
        case StormSlot::State::kUp:
          slot.client->CheckActivity(now);
          break;
        case StormSlot::State::kWaiting:
          if (now >= slot.due_ns) start_attempt(i, now);
          break;
        case StormSlot::State::kConnecting:
          if (now >= slot.deadline_ns) {
            sc.abandoned_attempts++;
            slot.attempts++;
            start_attempt(i, now);
          }
          break;
      }
    }
    sweeps[t]->expires_after(std::chrono::milliseconds(20));
    sweeps[t]->async_wait([&, t](beast::error_code ec) {
      if (!ec) sweep(t);
    });
  };
  for (size_t t = 0; t < b.context_count(); ++t) {
    sweeps.push_back(std::make_unique<net::steady_timer>(b.context(t)));
  }
  for (size_t t = 0; t < b.context_count(); ++t) net::post(b.context(t), [&, t] { sweep(t); });
  if (!o.ready_file.empty()) std::ofstream(o.ready_file) << initially << "\n";

  // Wait for the storm, then follow it.
  timespec tick{0, 100'000'000};
  auto give_up = Clock::now() + std::chrono::seconds(o.duration);
  bool interrupted = false;
  while (sc.first_loss_ns == 0 && Clock::now() < give_up) {
    if (sigtimedwait(&stop, nullptr, &tick) > 0) {
      interrupted = true;
      break;
    }
  }
  std::string timeline = "[";
  bool complete = false;
  if (sc.first_loss_ns != 0 && !interrupted) {
    int64_t first = sc.first_loss_ns;
    int64_t end = first + static_cast<int64_t>(o.storm_timeout) * 1'000'000'000;
    while (true) {
      int64_t now = NowNs();
      common::StrAppend(&timeline, timeline.size() > 1 ? "," : "", "[", (now - first) / 1'000'000,
                        ",", sc.live.load(), ",", sc.attempts.load(), "]");
      // Back: every client has lost its connection (a cut is noticed by each client in its own
      // time) and every one is subscribed again.
      if (sc.clients_lost == o.connections && sc.live == o.connections) {
        complete = true;
        break;
      }
      if (now >= end) break;
      if (sigtimedwait(&stop, nullptr, &tick) > 0) {
        interrupted = true;
        break;
      }
    }
  }
  timeline += "]";
  if (!o.done_file.empty()) std::ofstream(o.done_file) << sc.live.load() << "\n";
  if (!interrupted) {
    timespec hold{static_cast<time_t>(o.duration), 0};
    sigtimedwait(&stop, nullptr, &hold);
  }
  Histogram connect = b.MergedConnect(), subscribe = b.MergedSubscribe();
  Result r;
  r.Add("scenario", std::string("storm"));
  r.Add("connections", o.connections);
  r.Add("initially_subscribed", initially);
  r.Add("lost", sc.lost.load());
  r.Add("clients_lost", sc.clients_lost.load());
  r.Add("resubscribed", sc.resubscribed.load());
  r.Add("subscribed_at_end", sc.live.load());
  r.Add("complete", std::string(complete ? "yes" : "no"));
  r.Add("reconnect_attempts", sc.attempts.load());
  r.Add("abandoned_attempts", sc.abandoned_attempts.load());
  if (sc.first_loss_ns != 0) {
    r.Add("first_loss_unix_ms",
          static_cast<uint64_t>(common::NowUnixMs() - (NowNs() - sc.first_loss_ns) / 1'000'000));
  }
  r.Add("storm_seconds", sc.first_loss_ns != 0 && sc.last_resubscribe_ns != 0
                             ? (sc.last_resubscribe_ns - sc.first_loss_ns) / 1e9
                             : 0.0);
  r.Add("connect_p50_ms", connect.Percentile(50));
  r.Add("connect_p99_ms", connect.Percentile(99));
  r.Add("connect_max_ms", connect.max_ms());
  r.Add("subscribe_p50_ms", subscribe.Percentile(50));
  r.Add("subscribe_p99_ms", subscribe.Percentile(99));
  r.Add("subscribe_max_ms", subscribe.max_ms());
  r.Add("timeline_ms_subscribed_attempts", timeline);
  r.Print(o.json);
  // Close on the client threads, stop them, then let the clients go before their contexts do.
  stopping = true;
  for (size_t t = 0; t < b.context_count(); ++t) {
    net::post(b.context(t), [&, t] {
      for (uint64_t i = t; i < slots.size(); i += b.context_count()) {
        if (slots[i].client) slots[i].client->Close();
      }
    });
  }
  b.CloseAll();
  b.Stop();
  sweeps.clear();
  for (auto& slot : slots) slot.client.reset();
  return complete ? 0 : 1;
}

// The publishing side of a multi-process fan-out: --rate signed HTTP publishes per second for
// --duration seconds, round the --channels channels, no WebSocket connection.
int RunPublish(const Options& o) {
  Stats s;
  auto start = Clock::now();
  PublishLoop(o, s, [&o](uint64_t i) { return FanoutChannel(o, i); });
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  Result r;
  r.Add("scenario", std::string("publish"));
  r.Add("channels", o.channels);
  AddPublishing(r, o, s, secs);
  r.Print(o.json);
  return s.publish_errors == 0 ? 0 : 1;
}

int RunClientEvents(const Options& o) {
  Bench b(o);
  b.Run();
  double secs = 0;
  auto channel_of = [&o](uint64_t i) { return common::StrCat("private-bench-", i % o.channels); };
  b.Connect(o.connections, channel_of, &secs);
  auto& s = b.stats();
  std::vector<uint64_t> per_channel(o.channels, 0);
  for (uint64_t i = 0; i < o.connections; ++i) per_channel[i % o.channels]++;
  auto start = Clock::now();
  uint64_t total = o.rate * o.duration;
  auto& clients = b.clients();
  for (uint64_t i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start +
                                  std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / o.rate)));
    size_t idx = i % clients.size();
    auto c = clients[idx];
    net::post(b.context(idx), [c] { c->SendClientEvent(); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  uint64_t expected = 0;
  uint64_t sent = s.sent_client_events;
  for (uint64_t i = 0; i < sent; ++i)
    expected += per_channel[(i % clients.size()) % o.channels] - 1;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (s.received < expected && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double total_secs = std::chrono::duration<double>(Clock::now() - start).count();
  Histogram h = b.MergedLatency();
  Result r;
  r.Add("scenario", std::string("client-events"));
  r.Add("connections", o.connections);
  r.Add("subscribed", s.subscribed.load());
  r.Add("client_events_sent", sent);
  r.Add("expected_deliveries", expected);
  r.Add("deliveries", s.received.load());
  r.Add("delivery_ratio", expected ? static_cast<double>(s.received) / expected : 0.0);
  r.Add("deliveries_per_second", s.received.load() / std::max(total_secs, 1e-9));
  AddLatency(r, h);
  r.Print(o.json);
  b.CloseAll();
  return 0;
}

int RunPresence(const Options& o) {
  // Join/leave churn: waves of connections subscribing to presence channels, then leaving.
  Result r;
  r.Add("scenario", std::string("presence"));
  uint64_t waves = std::max<uint64_t>(1, o.duration);
  uint64_t joined = 0, failed = 0;
  Histogram join;
  auto start = Clock::now();
  for (uint64_t w = 0; w < waves; ++w) {
    Bench b(o);
    b.Run();
    double secs = 0;
    b.Connect(
        o.connections,
        [&o](uint64_t i) { return common::StrCat("presence-bench-", i % o.channels); }, &secs);
    joined += b.stats().subscribed;
    failed +=
        b.stats().failed + (o.connections - std::min(o.connections, b.stats().subscribed.load()));
    join.Merge(b.MergedConnect());
    b.CloseAll();
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  r.Add("waves", waves);
  r.Add("members_joined", joined);
  r.Add("not_joined", failed);
  r.Add("joins_per_second", joined / std::max(secs, 1e-9));
  r.Add("connect_p50_ms", join.Percentile(50));
  r.Add("connect_p99_ms", join.Percentile(99));
  r.Print(o.json);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace relay;
  if (common::VersionRequested(argc, argv)) {
    std::cout << common::VersionLine("relay-bench") << "\n";
    return 0;
  }
  Options o;
  common::FlagSet f(
      "relay-bench SCENARIO [flags]",
      "A Pusher-protocol load generator for Relay or any Pusher-compatible server (loopback "
      "only).\nScenarios:\n"
      "  connect        open --connections at --connect-rate; time to connection_established,\n"
      "                 failures, and the server's RSS per connection with --pid\n"
      "  fanout         --connections subscribers over --channels public channels; --rate signed\n"
      "                 HTTP publishes per second for --duration seconds: deliveries/s, delivery\n"
      "                 ratio and end-to-end latency percentiles (timestamp in the payload)\n"
      "  presence       --duration waves of --connections presence joins and leaves\n"
      "  client-events  --connections on --channels private channels send --rate client events\n"
      "                 per second in total (the server must allow client events and their rate)\n"
      "  subscribe      one process of a multi-process fan-out: --connections subscribers over\n"
      "                 --channels, counting deliveries until SIGINT/SIGTERM (at most --duration "
      "s)\n"
      "  publish        the other side: --rate HTTP publishes per second round --channels for\n"
      "                 --duration seconds (tools/bench/scale.sh runs both)\n"
      "  storm          --connections clients (half presence) that reconnect like pusher-js to\n"
      "                 --reconnect-ports when their server goes away: a timeline until every one\n"
      "                 is subscribed again (tools/bench/storm.sh)");
  f.String("host", &o.host, "Server address (127.0.0.x only)");
  f.Uint("port", &o.port, "WebSocket port");
  f.Uint("http-port", &o.http_port, "HTTP API port (default: --port)");
  f.String("app-id", &o.app_id, "App id");
  f.String("app-key", &o.app_key, "App key");
  f.String("app-secret", &o.app_secret, "App secret");
  f.Uint("connections", &o.connections, "WebSocket connections");
  f.Uint("channels", &o.channels, "Channels the connections are spread over");
  f.Uint("rate", &o.rate, "Publishes (or client events) per second");
  f.Uint("duration", &o.duration, "Seconds of publishing (presence: waves)");
  f.Uint("payload", &o.payload, "Padding bytes per event");
  f.Uint("connect-rate", &o.connect_rate, "New connections per second");
  f.Uint("threads", &o.threads, "Client I/O threads");
  f.Uint("publishers", &o.publishers, "Concurrent HTTP publishing connections");
  f.Uint("pid", &o.pid, "Server pid, for memory readings");
  f.String("sources", &o.sources, "Comma-separated 127.0.0.x source addresses (64k ports each)");
  f.Uint("hold", &o.hold, "connect: seconds to hold connections before measuring memory");
  f.String("ready-file", &o.ready_file,
           "subscribe: file written (with the subscribed count) once every connection subscribed");
  f.String("done-file", &o.done_file,
           "storm: file written once every lost client is subscribed again (or time ran out)");
  f.String("reconnect-ports", &o.reconnect_ports,
           "storm: comma-separated ports lost clients reconnect to");
  f.String("user-prefix", &o.user_prefix, "storm: presence user ids are <prefix><client index>");
  f.Uint("pong-timeout", &o.pong_timeout,
         "storm: seconds a client waits for pusher:pong (pusher-js pongTimeout)");
  f.Uint("storm-timeout", &o.storm_timeout,
         "storm: seconds from the first loss within which every client must be back");
  f.Bool("json", &o.json, "Print the result as JSON");
  std::vector<std::string> positional;
  if (auto st = f.Parse(argc, argv, &positional); !st.ok()) {
    std::cerr << "relay-bench: " << st.message() << "\n";
    return 2;
  }
  if (f.help_requested() || positional.size() != 1) {
    std::cout << f.Usage();
    return f.help_requested() ? 0 : 2;
  }
  o.scenario = positional[0];
  common::RaiseFileLimit();
  if (o.http_port == 0) o.http_port = o.port;
  // Loopback only, bounded in count and time.
  auto loopback = [](const std::string& a) { return a.rfind("127.", 0) == 0; };
  if (!loopback(o.host)) return std::cerr << "relay-bench: --host must be a 127.x address\n", 2;
  for (absl::string_view s : absl::StrSplit(o.sources, ',', absl::SkipWhitespace())) {
    if (!loopback(std::string(s))) return std::cerr << "relay-bench: sources must be 127.x\n", 2;
  }
  if (o.connections == 0 || o.connections > 200000 || o.duration > 600 || o.rate == 0 ||
      o.channels == 0 || o.threads == 0 || o.threads > 64 || o.connect_rate == 0 ||
      o.publishers == 0 || o.payload > 1 << 20 || o.pong_timeout == 0 || o.pong_timeout > 600 ||
      o.storm_timeout == 0 || o.storm_timeout > 600) {
    std::cerr << "relay-bench: out of bounds (connections 1..200000, duration <= 600, rate, "
                 "channels, threads 1..64, connect-rate, publishers > 0, pong-timeout 1..600, "
                 "payload <= 1 MiB, "
                 "storm-timeout 1..600)\n";
    return 2;
  }
  if (o.scenario == "connect") return RunConnect(o);
  if (o.scenario == "fanout") return RunFanout(o);
  if (o.scenario == "presence") return RunPresence(o);
  if (o.scenario == "client-events") return RunClientEvents(o);
  if (o.scenario == "subscribe") return RunSubscribe(o);
  if (o.scenario == "publish") return RunPublish(o);
  if (o.scenario == "storm") return RunStorm(o);
  std::cerr << "relay-bench: unknown scenario '" << o.scenario << "'\n";
  return 2;
}
