// File: http_input.h
// Fuzz input -> HTTP request, parsed by Beast's request parser with the limits and the
// conversion the real front door uses (http-bridge/http_server.cc, HttpServerOptions defaults),
// so the fuzz targets see exactly what a socket would hand to the handlers.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "transport/http_server.h"
#include "transport/http_types.h"

namespace relay::fuzz {

// Parses one request from the front of `bytes`. On success returns true, with the request in
// `*out` and what follows it in `*leftover` (what a pipelining or impatient client sent next).
inline bool ParseHttpRequest(std::string_view bytes, transport::BeastRequest* out,
                             std::string* leftover) {
  namespace http = boost::beast::http;
  const transport::HttpServerOptions limits;
  http::request_parser<http::string_body> parser;
  parser.body_limit(limits.body_limit);
  parser.header_limit(limits.header_limit);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  // put() may stop between the header and the body; feed it until it is done or fails.
  while (!parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec == http::error::need_more && used + n == bytes.size()) {
      // The input ends: the socket would have seen EOF.
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return false;
      break;
    }
    if (ec && ec != http::error::need_more) return false;
    used += n;
    if (n == 0 && !parser.is_done()) {
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return false;
    }
  }
  *out = parser.release();
  leftover->assign(bytes.substr(used));
  return true;
}

}  // namespace relay::fuzz
