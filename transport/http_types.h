// File: http_types.h
// Plain HTTP request/response values passed between the HTTP front door and the handlers, so
// handlers never see Beast types.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relay::transport {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // raw path, not decoded
  std::string query;   // raw query string without '?'
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer_ip;

  // The first header named `name` (case-insensitive), or empty.
  std::string_view Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// Handles one request; called on an I/O thread, must not block.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Whether a server should get traffic now (GET /ready, the gRPC health service), and if not why,
// in words an operator reads in a probe's failure.
struct Readiness {
  bool ready = true;
  std::string reason;  // empty when ready
};
// Asked on an I/O thread for every probe: must be cheap and must not block.
using ReadinessCheck = std::function<Readiness()>;

// {"error":message,"code":status}, the JSON error body every endpoint uses.
HttpResponse JsonError(int status, std::string_view message);

}  // namespace relay::transport
