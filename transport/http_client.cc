#include "transport/http_client.h"

#include <openssl/ssl.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace relay::transport {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// Writes the request and reads the response on `ioc`, every step bounded by `timeout`.
template <typename Stream>
HttpPostResult Send(net::io_context& ioc, Stream& stream, beast::tcp_stream& lowest,
                    const HttpUrl& u,
                    const std::vector<std::pair<std::string, std::string>>& headers,
                    const std::string& body, std::chrono::milliseconds timeout) {
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  // The endpoint is untrusted: bound what its response may make us buffer. The buffer holds at
  // most a head, chunk header or trailer (Beast throws past 64 KiB per field, and the trailer is
  // not covered by header_limit), the parser caps head and body, and chunk extensions are refused.
  beast::flat_buffer buffer(32 * 1024);
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  parser.header_limit(16 * 1024);
  auto on_chunk_header = [](uint64_t, beast::string_view ext, beast::error_code& ec) {
    if (ext.size() > 1024) ec = http::error::bad_chunk_extension;
  };
  parser.on_chunk_header(on_chunk_header);
  HttpPostResult result{0, "no response"};
  lowest.expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code e, size_t) {
    if (e) {
      result = {0, common::StrCat("write: ", e.message())};
      return;
    }
    http::async_read(stream, buffer, parser, [&](beast::error_code e2, size_t) {
      result = e2 ? HttpPostResult{0, common::StrCat("read: ", e2.message())}
                  : HttpPostResult{static_cast<int>(parser.get().result_int()), ""};
    });
  });
  ioc.restart();
  try {
    ioc.run();
  } catch (const std::exception& e) {
    // Beast throws on some hostile responses; the delivery fails, the process carries on.
    return {0, common::StrCat("read: malformed response (", e.what(), ")")};
  }
  return result;
}

}  // namespace

bool ParseHttpUrl(const std::string& url, HttpUrl* out) {
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
    out->tls = false;
  } else if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    out->tls = true;
  } else {
    return false;
  }
  size_t end = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, end);
  // The fragment never goes on the wire.
  out->target = end == std::string::npos ? "/" : rest.substr(end, rest.find('#', end) - end);
  if (out->target.empty() || out->target.front() != '/') out->target.insert(0, "/");
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  std::string port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return false;
    out->host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      port_text = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    out->host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  uint32_t p = out->tls ? 443 : 80;
  if (!port_text.empty() &&
      (!absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &p) || p == 0 ||
       p > 65535)) {
    return false;
  }
  out->port = static_cast<uint16_t>(p);
  return !out->host.empty();
}

HttpPostResult HttpPost(const std::string& url,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        const std::string& body, std::chrono::milliseconds timeout,
                        const AddressCheck& check) {
  HttpUrl u;
  if (!ParseHttpUrl(url, &u)) return {0, "invalid URL"};
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto resolved = resolver.resolve(u.host, std::to_string(u.port), ec);
  if (ec) return {0, common::StrCat("resolve ", u.host, ": ", ec.message())};
  std::vector<tcp::endpoint> endpoints;
  std::string refused;
  for (const auto& r : resolved) {
    absl::Status st =
        check ? check(r.endpoint().address().to_string(), r.endpoint().port()) : absl::OkStatus();
    if (st.ok()) {
      endpoints.push_back(r.endpoint());
    } else {
      refused = std::string(st.message());
    }
  }
  if (endpoints.empty()) return {0, refused.empty() ? "no address" : refused};
  beast::tcp_stream tcp_stream(ioc);
  tcp_stream.expires_after(timeout);
  // The blocking connect of tcp_stream ignores the expiry, so connect asynchronously.
  tcp_stream.async_connect(endpoints, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
  ioc.run();
  ioc.restart();
  if (ec) return {0, common::StrCat("connect ", u.host, ":", u.port, ": ", ec.message())};
  if (!u.tls) return Send(ioc, tcp_stream, tcp_stream, u, headers, body, timeout);
  HttpPostResult result;
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

}  // namespace relay::transport
