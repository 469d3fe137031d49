#include "http-bridge/http_api.h"

#include <simdjson.h>

#include <algorithm>
#include <initializer_list>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/app_secrets.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/strings.h"

namespace relay::http_bridge {
namespace {

using controlplane::ChannelView;
using controlplane::InfoAttrs;
using relay::v1::App;

constexpr int64_t kTimestampWindowSeconds = 600;

std::string Param(const common::QueryParams& params, std::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

bool HasParam(const common::QueryParams& params, std::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) return true;
  }
  return false;
}

// One field of a JSON request body: a string; objects and arrays given for `data` are minified
// into a JSON string.
struct Field {
  std::string_view name;
  std::string* out;
  bool required = false;
};

absl::Status ReadFields(simdjson::dom::object obj, std::initializer_list<Field> fields) {
  for (const Field& f : fields) {
    simdjson::dom::element e;
    if (obj[f.name].get(e)) {
      if (f.required) return absl::InvalidArgumentError(common::StrCat("missing '", f.name, "'"));
      continue;
    }
    std::string_view s;
    if (e.get(s) == simdjson::SUCCESS) {
      *f.out = std::string(s);
    } else if (f.name == "data" && (e.is_object() || e.is_array())) {
      *f.out = simdjson::minify(e);
    } else {
      return absl::InvalidArgumentError(common::StrCat("'", f.name, "' must be a string"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<simdjson::dom::object> ParseBody(const std::string& body) {
  simdjson::dom::element doc;
  if (body.empty()) return absl::InvalidArgumentError("the request body is empty");
  if (common::ThreadParser().parse(body).get(doc)) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  simdjson::dom::object obj;
  if (doc.get(obj)) return absl::InvalidArgumentError("the request body must be a JSON object");
  return obj;
}

// A channel as Pusher prints it: the attributes the Api says it gives, in Pusher's order.
std::string ChannelJson(const relay::v1::ChannelInfo& c, const InfoAttrs& attrs, bool occupied) {
  common::JsonWriter w;
  w.BeginObject();
  if (occupied) w.Key("occupied").Bool(c.occupied());
  if (attrs.user_count) w.Key("user_count").Uint(c.user_count());
  if (attrs.subscription_count) w.Key("subscription_count").Uint(c.subscription_count());
  if (attrs.cache) {
    w.Key("cache");
    if (c.has_cache()) {
      w.BeginObject()
          .Key("event")
          .String(c.cache().event())
          .Key("data")
          .String(c.cache().data())
          .Key("ttl")
          .Uint(c.cache().ttl_seconds())
          .EndObject();
    } else {
      w.Null();
    }
  }
  w.EndObject();
  return w.Take();
}

std::string ChannelJson(const ChannelView& view, bool occupied) {
  return ChannelJson(view.info, view.attrs, occupied);
}

// One authenticated request on its way to its endpoint.
struct Call {
  controlplane::Api& api;
  const HttpRequest& request;
  const common::QueryParams& params;
  const App& app;
  std::vector<std::string> args;  // the path segments matched by "{}", in order
  controlplane::RateInfo* rate;
  std::shared_ptr<controlplane::AckWait>* acks;

  // An event-sending endpoint's wait for the data planes' acks (kept in `acks` for Handle).
  absl::StatusOr<std::shared_ptr<controlplane::AckWait>> BeginAcks() const {
    auto wait = api.BeginAcks();
    if (wait.ok()) *acks = *wait;
    return wait;
  }
};

// The endpoints: each turns its request into one Api call and renders the answer as the body
// of a 200; an error status is mapped by Handle.
using Endpoint = absl::StatusOr<std::string> (*)(const Call&);

// POST events
absl::StatusOr<std::string> PostEvents(const Call& call) {
  auto body = ParseBody(call.request.body);
  if (!body.ok()) return body.status();
  std::string name, data, socket_id, info;
  if (auto st = ReadFields(*body, {{"name", &name, true},
                                   {"data", &data, true},
                                   {"socket_id", &socket_id},
                                   {"info", &info}});
      !st.ok()) {
    return st;
  }
  relay::v1::TriggerRequest t;
  t.set_name(name);
  t.set_data(data);
  t.set_socket_id(socket_id);
  t.set_info(info);
  simdjson::dom::array channels;
  std::string_view single;
  if ((*body)["channels"].get(channels) == simdjson::SUCCESS) {
    for (auto c : channels) {
      std::string_view s;
      if (c.get(s)) return absl::InvalidArgumentError("channels must be strings");
      t.add_channels(std::string(s));
    }
  } else if ((*body)["channel"].get(single) == simdjson::SUCCESS) {
    t.add_channels(std::string(single));
  } else {
    return absl::InvalidArgumentError("missing 'channels' (array) or 'channel' (string)");
  }
  auto acks = call.BeginAcks();
  if (!acks.ok()) return acks.status();
  auto r = call.api.Trigger(call.app, t, call.rate, *acks);
  if (!r.ok()) return r.status();
  if (info.empty()) return std::string("{}");
  common::JsonWriter w;
  w.BeginObject().Key("channels").BeginObject();
  for (const ChannelView& c : r->channels) w.Key(c.info.name()).Raw(ChannelJson(c, false));
  w.EndObject().EndObject();
  return w.Take();
}

// POST batch_events
absl::StatusOr<std::string> PostBatchEvents(const Call& call) {
  auto body = ParseBody(call.request.body);
  if (!body.ok()) return body.status();
  simdjson::dom::array batch;
  if ((*body)["batch"].get(batch)) return absl::InvalidArgumentError("missing 'batch' (array)");
  relay::v1::TriggerBatchRequest b;
  for (auto item : batch) {
    simdjson::dom::object o;
    if (item.get(o)) return absl::InvalidArgumentError("batch items must be objects");
    if (!o["channels"].error()) {
      return absl::InvalidArgumentError("batch items take one 'channel', not 'channels'");
    }
    auto* e = b.add_batch();
    if (auto st = ReadFields(o, {{"channel", e->mutable_channel(), true},
                                 {"name", e->mutable_name(), true},
                                 {"data", e->mutable_data(), true},
                                 {"socket_id", e->mutable_socket_id()},
                                 {"info", e->mutable_info()}});
        !st.ok()) {
      return st;
    }
  }
  auto acks = call.BeginAcks();
  if (!acks.ok()) return acks.status();
  auto r = call.api.TriggerBatch(call.app, b, call.rate, *acks);
  if (!r.ok()) return r.status();
  if (!r->proto.has_info()) return std::string("{}");
  common::JsonWriter w;
  w.BeginObject().Key("batch").BeginArray();
  for (const ChannelView& c : r->batch) w.Raw(ChannelJson(c, false));
  w.EndArray().EndObject();
  return w.Take();
}

// GET channels
absl::StatusOr<std::string> GetChannels(const Call& call) {
  relay::v1::ListChannelsRequest l;
  l.set_filter_by_prefix(Param(call.params, "filter_by_prefix"));
  l.set_info(Param(call.params, "info"));
  auto r = call.api.ListChannels(call.app, l);
  if (!r.ok()) return r.status();
  common::JsonWriter w;
  w.BeginObject().Key("channels").BeginObject();
  for (const auto& c : r->proto.channels()) w.Key(c.name()).Raw(ChannelJson(c, r->attrs, false));
  w.EndObject().EndObject();
  return w.Take();
}

// GET channels/{name}
absl::StatusOr<std::string> GetChannel(const Call& call) {
  relay::v1::GetChannelRequest g;
  g.set_channel(call.args[0]);
  g.set_info(Param(call.params, "info"));
  auto r = call.api.GetChannel(call.app, g);
  if (!r.ok()) return r.status();
  return ChannelJson(*r, true);
}

// GET channels/{name}/users
absl::StatusOr<std::string> GetChannelUsers(const Call& call) {
  relay::v1::ListPresenceUsersRequest u;
  u.set_channel(call.args[0]);
  auto r = call.api.ListPresenceUsers(call.app, u);
  if (!r.ok()) return r.status();
  bool with_info = Param(call.params, "with_user_info") == "1";
  common::JsonWriter w;
  w.BeginObject().Key("users").BeginArray();
  for (const auto& m : r->users()) {
    w.BeginObject().Key("id").String(m.user_id());
    if (with_info && !m.user_info_json().empty()) w.Key("user_info").Raw(m.user_info_json());
    w.EndObject();
  }
  w.EndArray().EndObject();
  return w.Take();
}

// POST users/{id}/terminate_connections
absl::StatusOr<std::string> PostTerminateConnections(const Call& call) {
  relay::v1::TerminateUserConnectionsRequest t;
  t.set_user_id(call.args[0]);
  auto acks = call.BeginAcks();
  if (!acks.ok()) return acks.status();
  if (auto st = call.api.TerminateUserConnections(call.app, t, *acks); !st.ok()) return st;
  return std::string("{}");
}

// POST users/{id}/events
absl::StatusOr<std::string> PostUserEvents(const Call& call) {
  auto body = ParseBody(call.request.body);
  if (!body.ok()) return body.status();
  relay::v1::SendToUserRequest s;
  if (auto st = ReadFields(*body, {{"name", s.mutable_name(), true},
                                   {"data", s.mutable_data(), true},
                                   {"socket_id", s.mutable_socket_id()}});
      !st.ok()) {
    return st;
  }
  s.set_user_id(call.args[0]);
  auto acks = call.BeginAcks();
  if (!acks.ok()) return acks.status();
  if (auto st = call.api.SendToUser(call.app, s, call.rate, *acks); !st.ok()) return st;
  return std::string("{}");
}

// POST auth: sign a channel subscription or a user sign-in on the app's behalf.
absl::StatusOr<std::string> PostAuth(const Call& call) {
  auto body = ParseBody(call.request.body);
  if (!body.ok()) return body.status();
  std::string socket_id, channel, channel_data, user_data;
  if (auto st = ReadFields(*body, {{"socket_id", &socket_id, true},
                                   {"channel_name", &channel},
                                   {"channel_data", &channel_data},
                                   {"user_data", &user_data}});
      !st.ok()) {
    return st;
  }
  common::JsonWriter w;
  if (!channel.empty()) {
    relay::v1::AuthorizeChannelRequest a;
    a.set_socket_id(socket_id);
    a.set_channel_name(channel);
    a.set_channel_data(channel_data);
    auto r = call.api.AuthorizeChannel(call.app, a);
    if (!r.ok()) return r.status();
    w.BeginObject().Key("auth").String(r->auth());
    if (!r->channel_data().empty()) w.Key("channel_data").String(r->channel_data());
    w.EndObject();
  } else if (!user_data.empty()) {
    relay::v1::AuthenticateUserRequest a;
    a.set_socket_id(socket_id);
    a.set_user_data(user_data);
    auto r = call.api.AuthenticateUser(call.app, a);
    if (!r.ok()) return r.status();
    w.BeginObject().Key("auth").String(r->auth()).Key("user_data").String(r->user_data());
    w.EndObject();
  } else {
    return absl::InvalidArgumentError("give channel_name (and channel_data) or user_data");
  }
  return w.Take();
}

struct Route {
  std::string_view method;
  std::string_view pattern;  // the path after /apps/{app}/; "{}" matches one segment
  // Event-sending endpoints are limited per client address: every such request that passes
  // authentication counts, and every answer to it carries the X-RateLimit-* figures.
  bool sends_events;
  Endpoint endpoint;
};

constexpr Route kRoutes[] = {
    {"POST", "events", true, PostEvents},
    {"POST", "batch_events", true, PostBatchEvents},
    {"GET", "channels", false, GetChannels},
    {"GET", "channels/{}", false, GetChannel},
    {"GET", "channels/{}/users", false, GetChannelUsers},
    {"POST", "users/{}/terminate_connections", false, PostTerminateConnections},
    {"POST", "users/{}/events", true, PostUserEvents},
    {"POST", "auth", false, PostAuth},
};
// The route label of each entry of kRoutes, then of requests no route matched.
constexpr std::string_view kRouteLabels[] = {
    "/apps/{app}/events",
    "/apps/{app}/batch_events",
    "/apps/{app}/channels",
    "/apps/{app}/channels/{channel}",
    "/apps/{app}/channels/{channel}/users",
    "/apps/{app}/users/{user}/terminate_connections",
    "/apps/{app}/users/{user}/events",
    "/apps/{app}/auth",
    "other",
};
constexpr int kCountedStatuses[] = {200, 202, 400, 401, 403, 404, 405,
                                    408, 413, 415, 429, 500, 503};

// The route for `method` and the path segments after the app, with its "{}" segments in `args`;
// null when none matches.
const Route* FindRoute(std::string_view method, const std::vector<std::string>& rest,
                       std::vector<std::string>* args) {
  for (const Route& route : kRoutes) {
    if (route.method != method) continue;
    std::vector<absl::string_view> pattern = absl::StrSplit(common::AbslView(route.pattern), '/');
    if (pattern.size() != rest.size()) continue;
    args->clear();
    bool match = true;
    for (size_t i = 0; i < rest.size() && match; ++i) {
      if (pattern[i] == "{}") {
        args->push_back(rest[i]);
      } else {
        match = pattern[i] == rest[i];
      }
    }
    if (match) return &route;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  for (absl::string_view p :
       absl::StrSplit(absl::string_view(path.data(), path.size()), '/', absl::SkipEmpty())) {
    std::string decoded;
    if (!common::PercentDecode(std::string_view(p.data(), p.size()), &decoded)) {
      decoded = std::string(p);
    }
    parts.push_back(std::move(decoded));
  }
  return parts;
}

int HttpStatusFor(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kOutOfRange:
      return 413;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

HttpApi::HttpApi(controlplane::Api& api, std::vector<std::string> trusted_proxies,
                 const common::Clock& clock)
    : api_(api), trusted_proxies_(std::move(trusted_proxies)), clock_(clock) {}

std::string HttpApi::ClientIp(const HttpRequest& req) const {
  auto trusted = [this](std::string_view ip) {
    return std::find(trusted_proxies_.begin(), trusted_proxies_.end(), ip) !=
           trusted_proxies_.end();
  };
  if (!trusted(req.peer_ip)) return req.peer_ip;
  std::string_view xff = req.Header("X-Forwarded-For");
  std::vector<std::string> hops;
  for (absl::string_view h : absl::StrSplit(common::AbslView(xff), ',', absl::SkipWhitespace())) {
    hops.emplace_back(absl::StripAsciiWhitespace(h));
  }
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    if (!trusted(*it)) return *it;
  }
  return req.peer_ip;
}

// Verifies a Pusher HMAC-signed request (auth_key, auth_timestamp, auth_version, body_md5,
// auth_signature).
absl::Status HttpApi::VerifySignature(const App& app, const HttpRequest& req,
                                      const common::QueryParams& params) const {
  if (!common::ConstantTimeEquals(Param(params, "auth_key"), app.key())) {
    return absl::UnauthenticatedError("auth_key does not match the app's key");
  }
  if (Param(params, "auth_version") != "1.0") {
    return absl::UnauthenticatedError("auth_version must be 1.0");
  }
  int64_t ts = 0;
  std::string ts_text = Param(params, "auth_timestamp");
  if (!absl::SimpleAtoi(absl::string_view(ts_text.data(), ts_text.size()), &ts)) {
    return absl::UnauthenticatedError("auth_timestamp is missing or not a number");
  }
  const int64_t now_ms = clock_.NowUnixMs();
  const int64_t now = now_ms / 1000;
  // Compare against the window's bounds rather than |now - ts|: the difference overflows (UB)
  // for a hostile timestamp near INT64_MIN or INT64_MAX; `now` +/- the window cannot.
  if (ts < now - kTimestampWindowSeconds || ts > now + kTimestampWindowSeconds) {
    return absl::UnauthenticatedError(common::StrCat("Timestamp expired: Given timestamp (", ts,
                                                     ") not within ", kTimestampWindowSeconds,
                                                     "s of server time (", now, ")"));
  }
  if (!req.body.empty() || HasParam(params, "body_md5")) {
    if (!common::ConstantTimeEquals(Param(params, "body_md5"), common::Md5Hex(req.body))) {
      return absl::UnauthenticatedError("body_md5 does not match the request body");
    }
  }
  std::string to_sign = common::HttpStringToSign(req.method, req.path, params);
  bool ok = false;
  std::string given = Param(params, "auth_signature");
  for (std::string_view s : common::AcceptedSecrets(app, now_ms)) {
    ok |= common::ConstantTimeEquals(given, common::HmacSha256Hex(s, to_sign));
  }
  if (!ok) return absl::UnauthenticatedError("Invalid signature");
  return absl::OkStatus();
}

absl::Status HttpApi::Authenticate(const App& app, const HttpRequest& req,
                                   const common::QueryParams& params) const {
  if (HasParam(params, "auth_signature")) return VerifySignature(app, req, params);
  controlplane::Credentials c;
  c.key = std::string(req.Header("X-Relay-Key"));
  c.secret = std::string(req.Header("X-Relay-Secret"));
  std::string_view authz = req.Header("Authorization");
  if (authz.substr(0, 7) == "Bearer ") c.bearer_token = std::string(authz.substr(7));
  return api_.CheckCredentials(app, c);
}

absl::StatusOr<std::string> HttpApi::Serve(const HttpRequest& req, controlplane::RateInfo* rate,
                                           size_t* route_index,
                                           std::shared_ptr<controlplane::AckWait>* acks) {
  auto no_route = [&req] {
    return absl::NotFoundError(common::StrCat("No route for ", req.method, " ", req.path));
  };
  std::vector<std::string> parts = SplitPath(req.path);  // GET /, /ready, /health: HttpServer
  size_t base = 0;
  if (parts.size() >= 2 && parts[0] == "api" && parts[1] == "v1") base = 2;
  if (parts.size() < base + 3 || parts[base] != "apps") return no_route();
  const std::string& app_ref = parts[base + 1];
  std::vector<std::string> rest(parts.begin() + static_cast<long>(base) + 2, parts.end());

  common::QueryParams params;
  if (!common::ParseQuery(req.query, &params)) {
    return absl::InvalidArgumentError("malformed query string");
  }
  // A repeated parameter (e.g. channels[]) has no defined meaning in a signed request: refuse it
  // rather than pick one.
  for (size_t i = 0; i < params.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (absl::EqualsIgnoreCase(params[i].first, params[j].first)) {
        return absl::InvalidArgumentError(
            common::StrCat("query parameter '", params[i].first, "' is repeated"));
      }
    }
  }
  auto app = api_.ResolveApp(app_ref);
  if (!app.ok()) return app.status();
  // An unknown route is reported only to a caller that authenticated.
  if (auto st = Authenticate(*app, req, params); !st.ok()) return st;
  std::vector<std::string> args;
  const Route* route = FindRoute(req.method, rest, &args);
  if (route == nullptr) return no_route();
  *route_index = static_cast<size_t>(route - kRoutes);
  if (route->sends_events) {
    if (auto st = api_.AdmitRequest(ClientIp(req), rate); !st.ok()) return st;
  }
  return route->endpoint(Call{api_, req, params, *app, std::move(args), rate, acks});
}

HttpResponse HttpApi::Handle(const HttpRequest& req) {
  controlplane::RateInfo rate;
  size_t route = std::size(kRoutes);
  std::shared_ptr<controlplane::AckWait> acks;
  absl::StatusOr<std::string> body = Serve(req, &rate, &route, &acks);
  if (!body.ok() || acks == nullptr) return Render(std::move(body), rate, route);
  // Every command is queued; when nothing is left to wait for (no node had subscribers, or
  // every ack is in, or a stream ended already) the outcome is known now.
  if (!acks->Waiting()) {
    if (absl::Status outcome = *acks->Seal(nullptr); !outcome.ok()) {
      body = absl::StatusOr<std::string>(std::move(outcome));
    }
    return Render(std::move(body), rate, route);
  }
  HttpResponse later;
  later.later = [this, acks, body = std::make_shared<std::string>(std::move(*body)), rate,
                 route](std::function<void(HttpResponse)> answer) {
    auto finish = [this, body, rate, route, answer](absl::Status outcome) {
      answer(Render(outcome.ok() ? absl::StatusOr<std::string>(std::move(*body))
                                 : absl::StatusOr<std::string>(std::move(outcome)),
                    rate, route));
    };
    if (auto outcome = acks->Seal(finish)) finish(std::move(*outcome));
  };
  return later;
}

HttpResponse HttpApi::Render(absl::StatusOr<std::string> body, const controlplane::RateInfo& rate,
                             size_t route) {
  HttpResponse r;
  if (body.ok()) {
    r = HttpResponse{200, std::move(*body)};
  } else {
    api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    r = JsonError(HttpStatusFor(body.status()), std::string(body.status().message()));
    // The control plane cannot route now (re-attaching data planes, a backlogged node): when
    // to try again.
    if (int64_t wait = controlplane::RetryAfterSeconds(body.status()); wait > 0) {
      r.headers.emplace_back("Retry-After", std::to_string(wait));
    }
  }
  // Present only for the event-sending routes (see Route::sends_events).
  if (rate.present) {
    r.headers.emplace_back("X-RateLimit-Limit", std::to_string(rate.limit));
    r.headers.emplace_back("X-RateLimit-Remaining", std::to_string(rate.remaining));
    r.headers.emplace_back("X-RateLimit-Reset", std::to_string(rate.reset_unix_s));
    if (r.status == 429) {
      int64_t wait = std::max<int64_t>(1, rate.reset_unix_s - clock_.NowUnixSeconds());
      r.headers.emplace_back("Retry-After", std::to_string(wait));
    }
  }
  size_t status = std::size(kCountedStatuses);
  for (size_t i = 0; i < std::size(kCountedStatuses); ++i) {
    if (kCountedStatuses[i] == r.status) status = i;
  }
  requests_[route][status].fetch_add(1, std::memory_order_relaxed);
  return r;
}

void HttpApi::WriteMetrics(common::MetricsWriter& w) const {
  static_assert(std::size(kRouteLabels) == kRouteSlots && std::size(kRoutes) + 1 == kRouteSlots);
  static_assert(std::size(kCountedStatuses) + 1 == kStatusSlots);
  w.Family("relay_http_requests_total", "counter",
           "Pusher HTTP API requests answered, by route and HTTP status (other: a status or a "
           "path outside the fixed lists).");
  for (size_t r = 0; r < kRouteSlots; ++r) {
    for (size_t s = 0; s < kStatusSlots; ++s) {
      uint64_t n = requests_[r][s].load(std::memory_order_relaxed);
      if (n == 0) continue;
      std::string status = s < std::size(kCountedStatuses) ? std::to_string(kCountedStatuses[s])
                                                           : std::string("other");
      w.Sample("relay_http_requests_total",
               {{"route", std::string(kRouteLabels[r])}, {"status", std::move(status)}},
               static_cast<double>(n));
    }
  }
}

}  // namespace relay::http_bridge
