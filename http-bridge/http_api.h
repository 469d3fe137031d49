// File: http_api.h
// The Pusher-compatible HTTP API. Each endpoint authenticates the caller (HMAC signature,
// X-Relay-Key + X-Relay-Secret, or Authorization: Bearer), translates the request into the
// matching relay.v1 call on controlplane::Api and renders the answer as Pusher's JSON.
// Routes are served under both /apps/{app} and /api/v1/apps/{app}; see docs/http-api.md. One
// route table (http_api.cc) maps method + path to one small function per endpoint; the checks
// every route shares (query, app, authentication, per-address limit, error mapping) run once in
// Handle before it.
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/pusher_auth.h"
#include "controlplane/api.h"
#include "controlplane/app_store.h"
#include "transport/http_types.h"

namespace relay::http_bridge {

using transport::HttpHandler;
using transport::HttpRequest;
using transport::HttpResponse;
using transport::JsonError;

class HttpApi {
 public:
  // `trusted_proxies`: peer addresses whose X-Forwarded-For is believed for the client address.
  // `clock` drives the signature's timestamp window, which previous secrets still verify and
  // Retry-After.
  explicit HttpApi(controlplane::Api& api, std::vector<std::string> trusted_proxies = {},
                   const common::Clock& clock = common::Clock::Real());

  // The client address of a request: the peer, or, behind a trusted proxy, the nearest
  // X-Forwarded-For entry that is not itself a trusted proxy.
  std::string ClientIp(const HttpRequest& request) const;

  // An event-sending request's 2xx is given only once the data planes acknowledged its events:
  // the response is then answered later (HttpResponse::later), from the thread that settles its
  // wait, with no thread waiting meanwhile.
  HttpResponse Handle(const HttpRequest& request);

  // Adds relay_http_requests_total (route, status); any thread.
  void WriteMetrics(common::MetricsWriter& w) const;

  // The handler bound to this object, for HttpServer.
  HttpHandler Handler() {
    return [this](const HttpRequest& r) { return Handle(r); };
  }

 private:
  // Everything before the endpoint: the answer's body, or the error Handle maps to a status.
  // `route` is set to the index of the route that matched (kRoutes in http_api.cc), if any.
  // `acks` receives the wait of an event-sending request (see controlplane::AckWait): its 2xx
  // waits for the data planes' acks.
  absl::StatusOr<std::string> Serve(const HttpRequest& request, controlplane::RateInfo* rate,
                                    size_t* route, std::shared_ptr<controlplane::AckWait>* acks);
  // The response for an endpoint's outcome, counted in requests_.
  HttpResponse Render(absl::StatusOr<std::string> body, const controlplane::RateInfo& rate,
                      size_t route);
  // HMAC signature, or key + secret headers, or a bearer token.
  absl::Status Authenticate(const relay::v1::App& app, const HttpRequest& request,
                            const common::QueryParams& params) const;
  absl::Status VerifySignature(const relay::v1::App& app, const HttpRequest& request,
                               const common::QueryParams& params) const;

  controlplane::Api& api_;
  std::vector<std::string> trusted_proxies_;
  const common::Clock& clock_;
  // Requests by route (the last slot: no route matched) and status (kCountedStatuses in
  // http_api.cc; the last slot: any other). Fixed, so the labels stay bounded.
  static constexpr size_t kRouteSlots = 9;
  static constexpr size_t kStatusSlots = 14;
  std::array<std::array<std::atomic<uint64_t>, kStatusSlots>, kRouteSlots> requests_{};
};

// The segments of a URL path, each percent-decoded (kept as given when that fails); empty
// segments are skipped.
std::vector<std::string> SplitPath(std::string_view path);

// HTTP status for a canonical status code (400, 401, 403, 404, 413, 429, ...).
int HttpStatusFor(const absl::Status& status);

}  // namespace relay::http_bridge
