// File: http_api.h
// The Pusher-compatible HTTP API. Each endpoint authenticates the caller (HMAC signature,
// X-Relay-Key + X-Relay-Secret, or Authorization: Bearer), translates the request into the
// matching relay.v1 call on controlplane::Api and renders the answer as Pusher's JSON.
// Routes are served under both /apps/{app} and /api/v1/apps/{app}; see docs/http-api.md.
// Thread-safe.
#pragma once

#include <string>
#include <vector>

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
  HttpApi(controlplane::Api& api, controlplane::AppStore& store,
          std::vector<std::string> trusted_proxies = {});

  // The client address of a request: the peer, or, behind a trusted proxy, the nearest
  // X-Forwarded-For entry that is not itself a trusted proxy.
  std::string ClientIp(const HttpRequest& request) const;

  HttpResponse Handle(const HttpRequest& request);

  // The handler bound to this object, for HttpServer.
  HttpHandler Handler() {
    return [this](const HttpRequest& r) { return Handle(r); };
  }

 private:
  controlplane::Api& api_;
  controlplane::AppStore& store_;
  std::vector<std::string> trusted_proxies_;
};

// HTTP status for a canonical status code (400, 401, 403, 404, 413, 429, ...).
int HttpStatusFor(const absl::Status& status);

}  // namespace relay::http_bridge
