#include "transport/http_server.h"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cerrno>
#include <chrono>
#include <exception>
#include <optional>
#include <type_traits>

#include "absl/synchronization/mutex.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strings.h"

namespace relay::transport {

HttpRequest ToHttpRequest(BeastRequest req, std::string peer_ip) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  std::string_view target = req.target();
  size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  for (const auto& field : req) {
    r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  r.body = std::move(req.body());
  r.peer_ip = std::move(peer_ip);
  return r;
}

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return v;
    }
  }
  return {};
}

HttpResponse JsonError(int status, std::string_view message) {
  common::JsonWriter w;
  w.BeginObject().Key("error").String(message).Key("code").Int(status).EndObject();
  return HttpResponse{status, w.Take()};
}

uint64_t ThrottledEvent::Count(int64_t now_ms) {
  total_.fetch_add(1, std::memory_order_relaxed);
  pending_.fetch_add(1, std::memory_order_relaxed);
  int64_t next = next_log_ms_.load(std::memory_order_relaxed);
  if (now_ms < next) return 0;
  // One thread wins the line for this interval; the others' events stay pending for the next.
  if (!next_log_ms_.compare_exchange_strong(next, now_ms + interval_ms_)) return 0;
  return pending_.exchange(0, std::memory_order_relaxed);
}

struct HttpServer::Shared {
  HttpServerOptions options;
  HttpHandler handler;
  UpgradeHandler upgrade;
  HttpServerStats stats;
};

namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Chunk extensions carry nothing we use; a long one is only ever an attempt to make us buffer.
constexpr size_t kMaxChunkExtension = 1024;
// Beast keeps a field's length in 16 bits and throws std::length_error past it; the read buffer
// (which must hold a whole head, chunk header or trailer before Beast parses it) stays far below.
constexpr size_t kMaxReadBuffer = 60 * 1024;

// One HTTP connection; lives while an operation is in flight (shared_from_this), and keeps what
// it uses of its server (`shared_`) alive with it.
// Reads with its own loop around parser.put() instead of http::async_read, so that an exception
// Beast throws on hostile bytes is caught here, for this connection only, instead of unwinding
// through io_context::run() and ending the process.
// `Stream` is beast::tcp_stream (plain HTTP) or TlsStream (HTTPS: the handshake comes first).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Session(tcp::socket socket, std::shared_ptr<HttpServer::Shared> shared, size_t context,
          std::shared_ptr<net::ssl::context> tls_context = nullptr)
      : stream_(MakeStream(std::move(socket), tls_context.get())),
        buffer_(std::min<size_t>(shared->options.header_limit + 1024, kMaxReadBuffer)),
        shared_(std::move(shared)),
        tls_context_(std::move(tls_context)),
        context_(context) {
    on_chunk_header_ = [](uint64_t, beast::string_view extensions, beast::error_code& ec) {
      if (extensions.size() > kMaxChunkExtension) ec = http::error::bad_chunk_extension;
    };
  }

  ~Session() {
    // Destroyed with its io_context (the server stopped) while a stream was open.
    if (body_stream_ && !stream_ended_) {
      stream_ended_ = true;
      {
        absl::MutexLock lock(&wake_state_->mu);
        wake_state_->ended = true;
      }
      body_stream_->Stop();
    }
  }

  void Run() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Handshake();
      } else {
        self->DoRead();
      }
    });
  }

 private:
  static Stream MakeStream(tcp::socket socket, net::ssl::context* tls_context) {
    if constexpr (kTls) {
      return Stream(beast::tcp_stream(std::move(socket)), *tls_context);
    } else {
      return Stream(std::move(socket));
    }
  }

  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  // A client has 10 s for its handshake; one that fails (garbage, an untrusted certificate, a
  // plain HTTP request on the TLS port) is counted and closed, logged at most once an interval.
  void Handshake() {
    Tcp().expires_after(std::chrono::seconds(10));
    stream_.async_handshake(net::ssl::stream_base::server, [self = this->shared_from_this()](
                                                               beast::error_code ec) {
      if (!ec) return self->DoRead();
      if (uint64_t n = self->shared_->stats.tls_failures.Count(SteadyMs())) {
        RELAY_LOG(kInfo, "http", n, " TLS handshake(s) failed (",
                  self->shared_->stats.tls_failures.total(), " in total); latest: ", ec.message());
      }
      self->Close();
    });
  }

  void DoRead() {
    parser_.emplace();
    parser_->eager(true);
    parser_->body_limit(shared_->options.body_limit);
    parser_->header_limit(shared_->options.header_limit);
    parser_->on_chunk_header(on_chunk_header_);
    Tcp().expires_after(std::chrono::seconds(30));
    // A pipelining client may already have sent the next request.
    if (buffer_.size() > 0) return Parse();
    ReadSome();
  }

  void ReadSome() {
    size_t size = beast::read_size(buffer_, 65536);
    if (size == 0) {
      // The buffer is full and the parser still wants more: a head, chunk header or trailer
      // larger than the limit.
      return Reject(431, "Request header fields, chunk header or trailer too large", "buffer full");
    }
    stream_.async_read_some(
        buffer_.prepare(size),
        [self = this->shared_from_this()](beast::error_code ec, size_t n) { self->OnSome(ec, n); });
  }

  void OnSome(beast::error_code ec, size_t n) {
    buffer_.commit(n);
    if (ec == net::error::eof && parser_->got_some()) {
      // The peer half-closed mid-request: nobody is left to read an error reply.
      try {
        parser_->put_eof(ec);
      } catch (const std::exception&) {
        ec = http::error::partial_message;
      }
      if (!ec) return OnMessage();
      return Close();
    }
    if (ec) return Close();  // eof between requests, timeout, reset, aborted
    Parse();
  }

  void Parse() {
    beast::error_code ec;
    try {
      while (!parser_->is_done()) {
        if (buffer_.size() == 0) {
          ec = http::error::need_more;
          break;
        }
        size_t used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec) break;
        if (used == 0) {
          ec = http::error::need_more;
          break;
        }
      }
    } catch (const std::exception& e) {
      // Beast throws (e.g. std::length_error "field value too large") on some inputs.
      return Reject(400, "Malformed HTTP request", e.what());
    }
    if (ec == http::error::need_more) return ReadSome();
    if (ec == http::error::body_limit) {
      return Reject(413, "Request body is too large", ec.message());
    }
    if (ec == http::error::header_limit) {
      return Reject(431, "Request header fields too large", ec.message());
    }
    if (ec) {
      return Reject(400, common::StrCat("Malformed HTTP request: ", ec.message()), ec.message());
    }
    OnMessage();
  }

  // Refuses the request with `status` and closes; counts it and logs at most once an interval.
  void Reject(int status, std::string_view message, std::string_view why) {
    if (uint64_t n = shared_->stats.rejected.Count(SteadyMs())) {
      RELAY_LOG(kWarn, "http", "refused ", n, " malformed or oversized request(s) (",
                shared_->stats.rejected.total(), " in total); latest: ", status, " ", why);
    }
    lingering_ = true;
    Reply(JsonError(status, message), false);
  }

  void HandlerFailed(std::string_view what) {
    if (uint64_t n = shared_->stats.handler_errors.Count(SteadyMs())) {
      RELAY_LOG(kError, "http", n, " request(s) failed with an exception; latest: ", what);
    }
  }

  void OnMessage() {
    BeastRequest req = parser_->release();
    if (shared_->upgrade && beast::websocket::is_upgrade(req)) {
      if (shared_->options.accept_upgrades) {
        Readiness accept = shared_->options.accept_upgrades();
        if (!accept.ready) {
          HttpResponse refused = JsonError(503, accept.reason);
          refused.headers.emplace_back("Retry-After", "5");
          return Reply(std::move(refused), false);
        }
      }
      Tcp().expires_never();
      try {
        ClientStream client;
        if constexpr (kTls) {
          client.tls = std::make_unique<TlsStream>(std::move(stream_));
          client.tls_context = tls_context_;
        } else {
          client.plain.emplace(std::move(stream_));
        }
        shared_->upgrade(context_, std::move(client), std::move(req),
                         beast::buffers_to_string(buffer_.data()));
      } catch (const std::exception& e) {
        HandlerFailed(e.what());  // the stream went to the handler; it closes with it
      }
      return;
    }
    shared_->stats.requests.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ep_ec;
    auto ep = Tcp().socket().remote_endpoint(ep_ec);
    HttpRequest r = ToHttpRequest(std::move(req), ep_ec ? "" : ep.address().to_string());
    HttpResponse response;
    bool probe = r.method == "GET" || r.method == "HEAD";
    if (probe && r.path == "/") {
      // Liveness for load balancers that probe the root, on every HTTP port.
      response = HttpResponse{200, "OK", "text/plain"};
    } else if (probe && r.path == "/health") {
      // Liveness: the process serves. Never depends on the control plane or a drain, so a
      // liveness probe does not restart a node that is only waiting for its control plane.
      response = HttpResponse{200, R"({"status":"ok"})"};
    } else if (probe && r.path == "/ready") {
      response = ReadyResponse();
    } else if (shared_->handler) {
      try {
        response = shared_->handler(r);
      } catch (const std::exception& e) {
        HandlerFailed(e.what());
        response = JsonError(500, "Internal error while handling the request");
      }
    } else {
      response = JsonError(404, common::StrCat("No route for ", r.method, " ", r.path,
                                               ": this is a data plane; the HTTP API is served "
                                               "by the control plane (relay-controlplane --port)"));
    }
    if (response.stream) return StartStream(std::move(response));
    if (response.later) return AnswerLater(std::move(response.later), req.keep_alive());
    Reply(std::move(response), req.keep_alive());
  }

  // A response the handler gives later (HttpResponse::later), from any thread: the answer is
  // posted to the connection's thread. Until then the connection is kept alive by the answer
  // function alone (no read is pending, no timer runs: the handler bounds the wait); dropping
  // the function unanswered closes the connection.
  void AnswerLater(std::function<void(std::function<void(HttpResponse)>)> later, bool keep_alive) {
    struct Pending {
      absl::Mutex mu;
      std::shared_ptr<Session> session ABSL_GUARDED_BY(mu);
    };
    auto pending = std::make_shared<Pending>();
    {
      absl::MutexLock lock(&pending->mu);
      pending->session = this->shared_from_this();
    }
    later([pending, keep_alive](HttpResponse response) {
      std::shared_ptr<Session> session;
      {
        absl::MutexLock lock(&pending->mu);
        session = std::move(pending->session);  // answered once
      }
      if (!session) return;
      auto executor = session->stream_.get_executor();
      net::post(executor,
                [session = std::move(session), response = std::move(response),
                 keep_alive]() mutable { session->Reply(std::move(response), keep_alive); });
    });
  }

  // A streamed response (HttpResponse::stream): the head, then the producer's bytes as it has
  // them, one write at a time, until the stream ends or the peer goes; then the connection
  // closes. Meanwhile a read waits for the peer's close (an SSE client sends nothing more).
  void StartStream(HttpResponse response) {
    body_stream_ = std::move(response.stream);
    wake_state_ = std::make_shared<StreamWake>();
    auto head = std::make_shared<http::response<http::empty_body>>();
    head->result(static_cast<unsigned>(response.status));
    head->version(11);
    head->set(http::field::server, "relay");
    head->set(http::field::content_type, response.content_type);
    for (auto& [k, v] : response.headers) head->set(k, v);
    head->keep_alive(false);  // no length: the body ends with the connection
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*head);
    Tcp().expires_never();
    stream_timer_.emplace(stream_.get_executor());
    writing_ = true;
    ArmStreamTimer(kStreamWriteTimeout);
    http::async_write_header(
        stream_, *serializer,
        [self = this->shared_from_this(), head, serializer](beast::error_code ec, size_t) {
          self->writing_ = false;
          if (ec) return self->EndStream();
          self->OnStreamHead();
        });
  }

  void OnStreamHead() {
    std::weak_ptr<Session> weak = this->weak_from_this();
    body_stream_->Start([state = wake_state_, weak, executor = stream_.get_executor()] {
      // Under the lock, so no post starts once the connection ended (its io_context may go).
      absl::MutexLock lock(&state->mu);
      if (state->ended) return;
      net::post(executor, [weak] {
        if (auto self = weak.lock()) self->PumpStream();
      });
    });
    ReadUntilClosed();
    ArmStreamTimer(kStreamKeepAlive);
    PumpStream();
  }

  void ReadUntilClosed() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(std::min<size_t>(buffer_.max_size(), 4096)),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->EndStream();
                              self->ReadUntilClosed();  // discarded
                            });
  }

  void PumpStream() {
    if (stream_ended_ || writing_) return;
    ResponseStream::Pulled next = body_stream_->Pull();
    if (next.bytes.empty()) {
      if (next.end) EndStream();
      return;  // the producer wakes us
    }
    WriteStream(std::move(next.bytes), next.end);
  }

  void WriteStream(std::string bytes, bool end) {
    stream_out_ = std::move(bytes);
    writing_ = true;
    ArmStreamTimer(kStreamWriteTimeout);
    net::async_write(stream_, net::buffer(stream_out_),
                     [self = this->shared_from_this(), end](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       if (ec || end) return self->EndStream();
                       self->ArmStreamTimer(kStreamKeepAlive);
                       self->PumpStream();
                     });
  }

  // While a write is in flight: the bound on it (a peer that stops reading is cut). Otherwise:
  // when to write a keep-alive. Only the latest arming counts (`timer_generation_`).
  void ArmStreamTimer(std::chrono::seconds after) {
    uint64_t generation = ++timer_generation_;
    stream_timer_->expires_after(after);
    stream_timer_->async_wait([self = this->shared_from_this(), generation](beast::error_code ec) {
      if (ec || generation != self->timer_generation_ || self->stream_ended_) return;
      if (self->writing_) return self->EndStream();
      std::string keep_alive = self->body_stream_->KeepAlive();
      if (keep_alive.empty()) return self->ArmStreamTimer(kStreamKeepAlive);
      self->WriteStream(std::move(keep_alive), false);
    });
  }

  void EndStream() {
    if (stream_ended_) return;
    stream_ended_ = true;
    {
      absl::MutexLock lock(&wake_state_->mu);
      wake_state_->ended = true;
    }
    if (stream_timer_) stream_timer_->cancel();
    body_stream_->Stop();
    Close();
  }

  HttpResponse ReadyResponse() {
    Readiness readiness;
    if (shared_->options.readiness) {
      try {
        readiness = shared_->options.readiness();
      } catch (const std::exception& e) {
        HandlerFailed(e.what());
        readiness = {false, "the readiness check failed"};
      }
    }
    common::JsonWriter w;
    w.BeginObject().Key("ready").Bool(readiness.ready);
    if (!readiness.ready) w.Key("reason").String(readiness.reason);
    w.EndObject();
    return HttpResponse{readiness.ready ? 200 : 503, w.Take()};
  }

  void Reply(HttpResponse response, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(static_cast<unsigned>(response.status));
    res->version(11);
    res->set(http::field::server, "relay");
    res->set(http::field::content_type, response.content_type);
    for (auto& [k, v] : response.headers) res->set(k, v);
    res->keep_alive(keep_alive);
    res->body() = std::move(response.body);
    res->prepare_payload();
    response_ = res;
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (!ec && self->lingering_) return self->LingerThenClose();
                        if (ec || !keep_alive) return self->Close();
                        self->DoRead();
                      });
  }

  // After refusing a request the peer may still be sending it; closing with unread bytes would
  // reset the connection and could destroy our error reply before the peer reads it. So
  // half-close, then discard what arrives (into the bounded buffer: no memory grows) until the
  // peer closes or 2 s pass.
  void LingerThenClose() {
    beast::error_code ec;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    Tcp().expires_after(std::chrono::seconds(2));
    Discard();
  }

  void Discard() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(std::min<size_t>(buffer_.max_size(), 16 * 1024)),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->Discard();
                            });
  }

  void Close() {
    beast::error_code ec;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    Tcp().socket().close(ec);
  }

  // A streamed response's state (StartStream); on the connection's thread, but for StreamWake.
  static constexpr std::chrono::seconds kStreamWriteTimeout{30};
  static constexpr std::chrono::seconds kStreamKeepAlive{15};
  struct StreamWake {
    absl::Mutex mu;
    bool ended ABSL_GUARDED_BY(mu) = false;
  };
  std::shared_ptr<ResponseStream> body_stream_;
  std::shared_ptr<StreamWake> wake_state_;
  std::optional<net::steady_timer> stream_timer_;
  uint64_t timer_generation_ = 0;
  std::string stream_out_;  // the write in flight
  bool writing_ = false;
  bool stream_ended_ = false;

  Stream stream_;
  // Bounded: holds at most one head, chunk header or trailer (plus read-ahead), never a body.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // The parser keeps a reference to its chunk-header callback, so it lives here.
  std::function<void(uint64_t, beast::string_view, beast::error_code&)> on_chunk_header_;
  std::shared_ptr<http::response<http::string_body>> response_;
  const std::shared_ptr<HttpServer::Shared> shared_;
  const std::shared_ptr<net::ssl::context> tls_context_;  // TLS: the one this handshake used
  const size_t context_;    // the index of the pool's io_context this connection lives on
  bool lingering_ = false;  // the request was refused; drain before closing
};

}  // namespace

// The accept loop. Shared with the loop's pending operations, so that an accept or a retry
// timer completing after the server is gone finds it closed instead of freed memory. The mutex
// serializes the acceptor between context 0 (the loop) and whichever thread closes it: Close()
// neither posts nor waits, so it is safe on any thread, also when context 0 no longer runs.
class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(common::IoPool& pool, std::shared_ptr<Shared> shared)
      : pool_(pool),
        shared_(std::move(shared)),
        acceptor_(pool.context(0)),
        retry_(pool.context(0)) {}

  absl::StatusOr<uint16_t> Listen(const tcp::endpoint& endpoint) {
    uint16_t port = 0;
    {
      absl::MutexLock lock(&mu_);
      beast::error_code ec;
      acceptor_.open(endpoint.protocol(), ec);
      if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
      if (!ec) acceptor_.bind(endpoint, ec);
      if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
      if (ec) return absl::UnavailableError(ec.message());
      port = acceptor_.local_endpoint().port();
    }
    net::post(pool_.context(0), [self = shared_from_this()] { self->AcceptNext(); });
    return port;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
  }

  uint64_t failures() const { return failures_.total(); }

 private:
  // On context 0.
  void AcceptNext() {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    // Round-robin over the pool; the index goes with the connection (UpgradeHandler).
    size_t context = next_context_;
    next_context_ = (next_context_ + 1) % pool_.size();
    acceptor_.async_accept(pool_.context(context), [self = shared_from_this(), context](
                                                       beast::error_code ec, tcp::socket socket) {
      self->OnAccept(ec, std::move(socket), context);
    });
  }

  void OnAccept(beast::error_code ec, tcp::socket socket, size_t context) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return;  // a connection accepted as the server closed closes with `socket`
    }
    if (ec == net::error::operation_aborted) return;
    if (ec) return OnAcceptError(ec);
    backoff_ = std::chrono::milliseconds(0);
    errors_in_a_row_ = 0;
    beast::error_code nd;
    socket.set_option(tcp::no_delay(true), nd);
    if (shared_->options.tls) {
      std::make_shared<Session<TlsStream>>(std::move(socket), shared_, context,
                                           shared_->options.tls->Current())
          ->Run();
    } else {
      std::make_shared<Session<beast::tcp_stream>>(std::move(socket), shared_, context)->Run();
    }
    AcceptNext();
  }

  // After a failed accept: on EMFILE, ENFILE, ENOBUFS, ENOMEM (or a run of other errors) waits
  // before trying again, since retrying at once spins a core while the failure lasts; logs at
  // most once an interval. On context 0.
  void OnAcceptError(beast::error_code ec) {
    // Out of descriptors (or kernel memory) the pending connection stays queued and accept fails
    // again at once: back off 100 ms, doubling to 2 s, until an accept succeeds. Other errors
    // concern one connection (a peer that gave up): retry at once, unless they keep coming.
    bool exhausted = ec == net::error::no_descriptors || ec.value() == ENFILE ||
                     ec == net::error::no_buffer_space || ec == net::error::no_memory;
    bool retry_now = !exhausted && ++errors_in_a_row_ < 10;
    if (uint64_t n = failures_.Count(SteadyMs())) {
      RELAY_LOG(kWarn, "http", "accept failed ", n, " time(s) since the last report (",
                failures_.total(), " in total): ", ec.message(), retry_now ? "" : "; backing off");
    }
    if (retry_now) return AcceptNext();
    backoff_ =
        std::clamp(backoff_ * 2, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    retry_.expires_after(backoff_);
    retry_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
      if (!wait_ec) self->AcceptNext();
    });
  }

  common::IoPool& pool_;  // outlives the listener: only the pool's handlers keep it after Close()
  const std::shared_ptr<Shared> shared_;
  absl::Mutex mu_;
  tcp::acceptor acceptor_ ABSL_GUARDED_BY(mu_);
  net::steady_timer retry_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The accept loop's own state, on context 0 only.
  size_t next_context_ = 0;
  std::chrono::milliseconds backoff_{0};
  int errors_in_a_row_ = 0;
  ThrottledEvent failures_{10'000};
};

HttpServer::HttpServer(HttpServerOptions options, common::IoPool& pool, HttpHandler handler,
                       UpgradeHandler upgrade)
    : shared_(std::make_shared<Shared>()) {
  shared_->options = std::move(options);
  shared_->handler = std::move(handler);
  shared_->upgrade = std::move(upgrade);
  listener_ = std::make_shared<Listener>(pool, shared_);
}

HttpServer::~HttpServer() { StopAccepting(); }

absl::StatusOr<uint16_t> HttpServer::Start() {
  const HttpServerOptions& options = shared_->options;
  beast::error_code ec;
  auto address = net::ip::make_address(options.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(common::StrCat("invalid host '", options.host, "'"));
  }
  auto port = listener_->Listen(tcp::endpoint(address, options.port));
  if (!port.ok()) {
    return absl::UnavailableError(common::StrCat("cannot listen on ", options.host, ":",
                                                 options.port, ": ", port.status().message()));
  }
  port_ = *port;
  return port_;
}

void HttpServer::StopAccepting() { listener_->Close(); }

uint64_t HttpServer::requests_served() const { return shared_->stats.requests.load(); }

uint64_t HttpServer::requests_rejected() const { return shared_->stats.rejected.total(); }

uint64_t HttpServer::accept_failures() const { return listener_->failures(); }

uint64_t HttpServer::tls_handshake_failures() const { return shared_->stats.tls_failures.total(); }

}  // namespace relay::transport
