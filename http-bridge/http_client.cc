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

// Host and port the same way the webhook target check reads them, so the address vetted at
// Add is the one connected to.
bool ParseUrl(const std::string& url, Url* out) {
  uint16_t port = 0;
  if (!controlplane::SplitWebhookUrl(url, &out->host, &port)) return false;
  out->tls = url.rfind("https://", 0) == 0;
  out->port = std::to_string(port);
  std::string rest = url.substr(out->tls ? 8 : 7);
  size_t slash = rest.find('/');
  out->target = slash == std::string::npos ? "/" : rest.substr(slash);
  return true;
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
  try {
    ioc.run();
  } catch (const std::exception& e) {
    // Beast throws on some hostile responses; the delivery fails, the process carries on.
    return {0, common::StrCat("read: malformed response (", e.what(), ")")};
  }
  return result;
}

}  // namespace

controlplane::PostResult HttpPost(const std::string& url,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout,
                                  const controlplane::WebhookTargets* targets) {
  Url u;
  if (!ParseUrl(url, &u)) return {0, "invalid URL"};
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto resolved = resolver.resolve(u.host, u.port, ec);
  if (ec) return {0, common::StrCat("resolve ", u.host, ": ", ec.message())};
  std::vector<tcp::endpoint> endpoints;
  std::string refused;
  for (const auto& r : resolved) {
    absl::Status st = targets ? targets->CheckAddress(r.endpoint().address().to_string(),
                                                      r.endpoint().port())
                              : absl::OkStatus();
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

controlplane::HttpPost GuardedHttpPost(
    std::shared_ptr<const controlplane::WebhookTargets> targets) {
  return [targets = std::move(targets)](
             const std::string& url,
             const std::vector<std::pair<std::string, std::string>>& headers,
             const std::string& body, std::chrono::milliseconds timeout) {
    return HttpPost(url, headers, body, timeout, targets.get());
  };
}

}  // namespace relay::http_bridge
