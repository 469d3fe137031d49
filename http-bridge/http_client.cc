#include "http-bridge/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace relay::http_bridge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

bool ParseUrl(const std::string& url, Url* out) {
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    out->tls = true;
    rest = url.substr(8);
  } else {
    return false;
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  out->target = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    out->host = authority.substr(0, colon);
    out->port = authority.substr(colon + 1);
  } else {
    out->host = authority;
    out->port = out->tls ? "443" : "80";
  }
  if (!out->host.empty() && out->host.front() == '[') {
    out->host = out->host.substr(1, out->host.size() - 2);
  }
  return !out->host.empty();
}

// Writes the request and reads the response on `ioc`, every step bounded by `timeout`.
template <typename Stream>
controlplane::PostResult Send(net::io_context& ioc, Stream& stream, beast::tcp_stream& lowest,
                              const Url& u,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, std::chrono::milliseconds timeout) {
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  controlplane::PostResult result{0, "no response"};
  lowest.expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code e, size_t) {
    if (e) {
      result = {0, common::StrCat("write: ", e.message())};
      return;
    }
    http::async_read(stream, buffer, parser, [&](beast::error_code e2, size_t) {
      result = e2 ? controlplane::PostResult{0, common::StrCat("read: ", e2.message())}
                  : controlplane::PostResult{static_cast<int>(parser.get().result_int()), ""};
    });
  });
  ioc.restart();
  ioc.run();
  return result;
}

}  // namespace

controlplane::PostResult HttpPost(const std::string& url,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout) {
  Url u;
  if (!ParseUrl(url, &u)) return {0, "invalid URL"};
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(u.host, u.port, ec);
  if (ec) return {0, common::StrCat("resolve ", u.host, ": ", ec.message())};
  beast::tcp_stream tcp_stream(ioc);
  tcp_stream.expires_after(timeout);
  // The blocking connect of tcp_stream ignores the expiry, so connect asynchronously.
  tcp_stream.async_connect(endpoints, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
  ioc.run();
  ioc.restart();
  if (ec) return {0, common::StrCat("connect ", u.host, ":", u.port, ": ", ec.message())};
  if (!u.tls) return Send(ioc, tcp_stream, tcp_stream, u, headers, body, timeout);
  controlplane::PostResult result;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.set_default_verify_paths();
  ctx.set_verify_mode(net::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), u.host.c_str())) {
    return {0, "cannot set SNI"};
  }
  stream.set_verify_callback(net::ssl::host_name_verification(u.host));
  beast::get_lowest_layer(stream).expires_after(timeout);
  stream.async_handshake(net::ssl::stream_base::client, [&](beast::error_code e) {
    if (e) {
      result = {0, common::StrCat("TLS handshake: ", e.message())};
      return;
    }
    result = {-1, ""};
  });
  ioc.run();
  ioc.restart();
  if (result.status != -1) return result;
  return Send(ioc, stream, beast::get_lowest_layer(stream), u, headers, body, timeout);
}

}  // namespace relay::http_bridge
