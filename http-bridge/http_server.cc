#include "http-bridge/http_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <future>
#include <optional>

#include "common/strings.h"
#include "common/json.h"
#include "common/log.h"

namespace relay::http_bridge {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
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

namespace {

// One HTTP connection; lives while an operation is in flight (shared_from_this).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler,
          const UpgradeHandler& upgrade, std::shared_ptr<std::atomic<uint64_t>> requests)
      : stream_(std::move(socket)),
        options_(options),
        handler_(handler),
        upgrade_(upgrade),
        requests_(std::move(requests)) {}

  void Run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::DoRead, shared_from_this()));
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->body_limit(options_.body_limit);
    parser_->header_limit(options_.header_limit);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
        ec == beast::error::timeout || ec == net::error::connection_reset) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return Reply(JsonError(413, "Request body is too large"), false);
    }
    if (ec) {
      return Reply(JsonError(400, common::StrCat("Malformed HTTP request: ", ec.message())), false);
    }
    BeastRequest req = parser_->release();
    if (upgrade_ && beast::websocket::is_upgrade(req)) {
      stream_.expires_never();
      upgrade_(std::move(stream_), std::move(req), beast::buffers_to_string(buffer_.data()));
      return;
    }
    requests_->fetch_add(1, std::memory_order_relaxed);
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
    beast::error_code ep_ec;
    auto ep = stream_.socket().remote_endpoint(ep_ec);
    if (!ep_ec) r.peer_ip = ep.address().to_string();
    HttpResponse response;
    bool health = (r.method == "GET" || r.method == "HEAD") &&
                  (r.path == "/" || r.path == "/ready" || r.path == "/health");
    if (health) {
      // Liveness for load balancers, on every HTTP port (relay, control plane, data plane).
      response = HttpResponse{200, "OK", "text/plain"};
    } else if (handler_) {
      response = handler_(r);
    } else {
      response = JsonError(404, common::StrCat("No route for ", r.method, " ", r.path,
                                               ": this is a data plane; the HTTP API is served "
                                               "by the control plane (relay-controlplane --port)"));
    }
    Reply(std::move(response), req.keep_alive());
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
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (ec || !keep_alive) return self->Close();
                        self->DoRead();
                      });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  const UpgradeHandler& upgrade_;
  std::shared_ptr<std::atomic<uint64_t>> requests_;
};

}  // namespace

HttpServer::HttpServer(HttpServerOptions options, common::IoPool& pool, HttpHandler handler,
                       UpgradeHandler upgrade)
    : options_(std::move(options)),
      pool_(pool),
      handler_(std::move(handler)),
      upgrade_(std::move(upgrade)),
      acceptor_(pool.context(0)) {}

HttpServer::~HttpServer() { StopAccepting(); }

absl::StatusOr<uint16_t> HttpServer::Start() {
  beast::error_code ec;
  auto address = net::ip::make_address(options_.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(common::StrCat("invalid host '", options_.host, "'"));
  }
  tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(common::StrCat("cannot listen on ", options_.host, ":",
                                               options_.port, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  net::dispatch(acceptor_.get_executor(), [this] { DoAccept(); });
  return port_;
}

void HttpServer::StopAccepting() {
  // The acceptor belongs to context 0; close it there unless that context is already stopped.
  if (!acceptor_.is_open()) return;
  std::promise<void> done;
  auto fut = done.get_future();
  net::post(acceptor_.get_executor(), [this, &done] {
    beast::error_code ec;
    acceptor_.close(ec);
    done.set_value();
  });
  if (fut.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    beast::error_code ec;
    acceptor_.close(ec);
  }
}

void HttpServer::DoAccept() {
  acceptor_.async_accept(pool_.Next(), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      beast::error_code nd;
      socket.set_option(tcp::no_delay(true), nd);
      std::make_shared<Session>(std::move(socket), options_, handler_, upgrade_, requests_)->Run();
    } else {
      RELAY_LOG(kWarn, "http", "accept failed: ", ec.message());
    }
    DoAccept();
  });
}

}  // namespace relay::http_bridge
