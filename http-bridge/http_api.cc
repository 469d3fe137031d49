#include "http-bridge/http_api.h"

#include <simdjson.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "common/strings.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include <algorithm>
#include <set>
#include "common/app_secrets.h"
#include "common/channel.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/pusher_auth.h"
#include "common/time.h"

namespace relay::http_bridge {
namespace {

using relay::v1::App;

constexpr int64_t kTimestampWindowSeconds = 600;

HttpResponse Error(const absl::Status& st) {
  return JsonError(HttpStatusFor(st), std::string(st.message()));
}

HttpResponse Ok(std::string body) { return HttpResponse{200, std::move(body)}; }

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

// Verifies a Pusher HMAC-signed request (auth_key, auth_timestamp, auth_version, body_md5,
// auth_signature).
absl::Status VerifySignature(const App& app, const HttpRequest& req,
                             const common::QueryParams& params) {
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
  int64_t now = common::NowUnixSeconds();
  // Compare against the window's bounds rather than |now - ts|: the difference overflows (UB)
  // for a hostile timestamp near INT64_MIN or INT64_MAX; `now` +/- the window cannot.
  if (ts < now - kTimestampWindowSeconds || ts > now + kTimestampWindowSeconds) {
    return absl::UnauthenticatedError(
        common::StrCat("Timestamp expired: Given timestamp (", ts, ") not within ",
                     kTimestampWindowSeconds, "s of server time (", now, ")"));
  }
  if (!req.body.empty() || HasParam(params, "body_md5")) {
    if (!common::ConstantTimeEquals(Param(params, "body_md5"), common::Md5Hex(req.body))) {
      return absl::UnauthenticatedError("body_md5 does not match the request body");
    }
  }
  std::string to_sign = common::HttpStringToSign(req.method, req.path, params);
  std::vector<std::string_view> secrets =
      common::AcceptedSecrets(app, common::NowUnixMs());
  bool ok = false;
  std::string given = Param(params, "auth_signature");
  for (std::string_view s : secrets) {
    ok |= common::ConstantTimeEquals(given, common::HmacSha256Hex(s, to_sign));
  }
  if (!ok) return absl::UnauthenticatedError("Invalid signature");
  return absl::OkStatus();
}

// Reads a string field; objects and arrays given for `data` are minified into a JSON string.
absl::Status ReadData(simdjson::dom::object obj, std::string_view field, std::string* out,
                      bool required) {
  simdjson::dom::element e;
  if (obj[field].get(e)) {
    if (required) return absl::InvalidArgumentError(common::StrCat("missing '", field, "'"));
    return absl::OkStatus();
  }
  std::string_view s;
  if (e.get(s) == simdjson::SUCCESS) {
    *out = std::string(s);
  } else if (field == "data" && (e.is_object() || e.is_array())) {
    *out = simdjson::minify(e);
  } else {
    return absl::InvalidArgumentError(common::StrCat("'", field, "' must be a string"));
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

std::string ChannelJson(const relay::v1::ChannelInfo& c, std::string_view info, bool occupied) {
  common::JsonWriter w;
  w.BeginObject();
  if (occupied) w.Key("occupied").Bool(c.occupied());
  bool sub = info.find("subscription_count") != std::string_view::npos;
  bool users = info.find("user_count") != std::string_view::npos;
  bool cache = info.find("cache") != std::string_view::npos;
  if (users) w.Key("user_count").Uint(c.user_count());
  if (sub) w.Key("subscription_count").Uint(c.subscription_count());
  if (cache) {
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

}  // namespace

int HttpStatusFor(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists: return 409;
    case absl::StatusCode::kOutOfRange: return 413;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

HttpApi::HttpApi(controlplane::Api& api, controlplane::AppStore& store,
                 std::vector<std::string> trusted_proxies)
    : api_(api), store_(store), trusted_proxies_(std::move(trusted_proxies)) {}

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

namespace {
void AddRateHeaders(HttpResponse& r, const controlplane::RateInfo& info) {
  if (!info.present) return;
  r.headers.emplace_back("X-RateLimit-Limit", std::to_string(info.limit));
  r.headers.emplace_back("X-RateLimit-Remaining", std::to_string(info.remaining));
  r.headers.emplace_back("X-RateLimit-Reset", std::to_string(info.reset_unix_s));
  if (r.status == 429) {
    int64_t wait = std::max<int64_t>(1, info.reset_unix_s - common::NowUnixSeconds());
    r.headers.emplace_back("Retry-After", std::to_string(wait));
  }
}
}  // namespace

HttpResponse HttpApi::Handle(const HttpRequest& req) {
  std::vector<std::string> parts = SplitPath(req.path);  // GET /, /ready, /health: HttpServer
  size_t base = 0;
  if (parts.size() >= 2 && parts[0] == "api" && parts[1] == "v1") base = 2;
  if (parts.size() < base + 3 || parts[base] != "apps") {
    api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    return JsonError(404, common::StrCat("No route for ", req.method, " ", req.path));
  }
  const std::string& app_ref = parts[base + 1];
  std::vector<std::string> rest(parts.begin() + static_cast<long>(base) + 2, parts.end());

  // Event-sending endpoints are limited per client address: every such request that passes
  // authentication counts, and every answer to it carries the X-RateLimit-* figures.
  controlplane::RateInfo rate;
  auto fail = [&](const absl::Status& st) {
    api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = Error(st);
    AddRateHeaders(r, rate);
    return r;
  };
  auto limited = [&](HttpResponse r) {
    AddRateHeaders(r, rate);
    return r;
  };

  common::QueryParams params;
  if (!common::ParseQuery(req.query, &params)) {
    return fail(absl::InvalidArgumentError("malformed query string"));
  }
  // A repeated parameter (e.g. channels[]) has no defined meaning in a signed request: refuse it
  // rather than pick one.
  for (size_t i = 0; i < params.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (absl::EqualsIgnoreCase(params[i].first, params[j].first)) {
        return fail(absl::InvalidArgumentError(
            common::StrCat("query parameter '", params[i].first, "' is repeated")));
      }
    }
  }
  auto app = api_.ResolveApp(app_ref);
  if (!app.ok()) return fail(app.status());
  // Authentication: HMAC signature, or key + secret headers, or a bearer token.
  absl::Status auth;
  if (HasParam(params, "auth_signature")) {
    auth = VerifySignature(*app, req, params);
  } else {
    controlplane::Credentials c;
    c.key = std::string(req.Header("X-Relay-Key"));
    c.secret = std::string(req.Header("X-Relay-Secret"));
    std::string_view authz = req.Header("Authorization");
    if (authz.substr(0, 7) == "Bearer ") c.bearer_token = std::string(authz.substr(7));
    auth = api_.CheckCredentials(*app, c);
  }
  if (!auth.ok()) return fail(auth);

  const bool post = req.method == "POST";
  const bool get = req.method == "GET";
  const bool sends_events =
      post && ((rest.size() == 1 && (rest[0] == "events" || rest[0] == "batch_events")) ||
               (rest.size() == 3 && rest[0] == "users" && rest[2] == "events"));
  if (sends_events) {
    if (auto st = api_.AdmitRequest(ClientIp(req), &rate); !st.ok()) return fail(st);
  }

  // POST events
  if (post && rest.size() == 1 && rest[0] == "events") {
    auto body = ParseBody(req.body);
    if (!body.ok()) return fail(body.status());
    relay::v1::TriggerRequest t;
    std::string name, data, socket_id, info;
    for (auto st : {ReadData(*body, "name", &name, true), ReadData(*body, "data", &data, true),
                    ReadData(*body, "socket_id", &socket_id, false),
                    ReadData(*body, "info", &info, false)}) {
      if (!st.ok()) return fail(st);
    }
    t.set_name(name);
    t.set_data(data);
    t.set_socket_id(socket_id);
    t.set_info(info);
    simdjson::dom::array channels;
    std::string_view single;
    if ((*body)["channels"].get(channels) == simdjson::SUCCESS) {
      for (auto c : channels) {
        std::string_view s;
        if (c.get(s)) return fail(absl::InvalidArgumentError("channels must be strings"));
        t.add_channels(std::string(s));
      }
    } else if ((*body)["channel"].get(single) == simdjson::SUCCESS) {
      t.add_channels(std::string(single));
    } else {
      return fail(absl::InvalidArgumentError("missing 'channels' (array) or 'channel' (string)"));
    }
    auto r = api_.Trigger(*app, t, &rate);
    if (!r.ok()) return fail(r.status());
    if (info.empty()) return limited(Ok("{}"));
    common::JsonWriter w;
    w.BeginObject().Key("channels").BeginObject();
    std::set<std::string_view> written;  // a channel named twice is described once
    for (const auto& c : t.channels()) {
      auto it = r->channels().find(c);
      if (it == r->channels().end() || !written.insert(c).second) continue;
      std::string wanted;
      if (info.find("subscription_count") != std::string::npos) wanted = "subscription_count";
      if (info.find("user_count") != std::string::npos &&
          common::ClassifyChannel(c).is_presence) {
        wanted += ",user_count";
      }
      w.Key(c).Raw(ChannelJson(it->second, wanted, false));
    }
    w.EndObject().EndObject();
    return limited(Ok(w.Take()));
  }

  // POST batch_events
  if (post && rest.size() == 1 && rest[0] == "batch_events") {
    auto body = ParseBody(req.body);
    if (!body.ok()) return fail(body.status());
    simdjson::dom::array batch;
    if ((*body)["batch"].get(batch)) {
      return fail(absl::InvalidArgumentError("missing 'batch' (array)"));
    }
    relay::v1::TriggerBatchRequest b;
    for (auto item : batch) {
      simdjson::dom::object o;
      if (item.get(o)) return fail(absl::InvalidArgumentError("batch items must be objects"));
      if (!o["channels"].error()) {
        return fail(absl::InvalidArgumentError(
            "batch items take one 'channel', not 'channels'"));
      }
      std::string channel, name, data, socket_id, info;
      for (auto st : {ReadData(o, "channel", &channel, true), ReadData(o, "name", &name, true),
                      ReadData(o, "data", &data, true),
                      ReadData(o, "socket_id", &socket_id, false),
                      ReadData(o, "info", &info, false)}) {
        if (!st.ok()) return fail(st);
      }
      auto* e = b.add_batch();
      e->set_channel(channel);
      e->set_name(name);
      e->set_data(data);
      e->set_socket_id(socket_id);
      e->set_info(info);
    }
    auto r = api_.TriggerBatch(*app, b, &rate);
    if (!r.ok()) return fail(r.status());
    if (!r->has_info()) return limited(Ok("{}"));
    common::JsonWriter w;
    w.BeginObject().Key("batch").BeginArray();
    for (int i = 0; i < r->batch_size(); ++i) {
      const auto& e = b.batch(i);
      std::string wanted;
      if (e.info().find("subscription_count") != std::string::npos) wanted = "subscription_count";
      if (e.info().find("user_count") != std::string::npos &&
          common::ClassifyChannel(e.channel()).is_presence) {
        wanted += ",user_count";
      }
      w.Raw(ChannelJson(r->batch(i), wanted, false));
    }
    w.EndArray().EndObject();
    return limited(Ok(w.Take()));
  }

  // GET channels
  if (get && rest.size() == 1 && rest[0] == "channels") {
    relay::v1::ListChannelsRequest l;
    l.set_filter_by_prefix(Param(params, "filter_by_prefix"));
    l.set_info(Param(params, "info"));
    auto r = api_.ListChannels(*app, l);
    if (!r.ok()) return fail(r.status());
    common::JsonWriter w;
    w.BeginObject().Key("channels").BeginObject();
    for (const auto& c : r->channels()) w.Key(c.name()).Raw(ChannelJson(c, l.info(), false));
    w.EndObject().EndObject();
    return Ok(w.Take());
  }

  // GET channels/{name}
  if (get && rest.size() == 2 && rest[0] == "channels") {
    relay::v1::GetChannelRequest g;
    g.set_channel(rest[1]);
    g.set_info(Param(params, "info"));
    auto r = api_.GetChannel(*app, g);
    if (!r.ok()) return fail(r.status());
    return Ok(ChannelJson(*r, g.info(), true));
  }

  // GET channels/{name}/users
  if (get && rest.size() == 3 && rest[0] == "channels" && rest[2] == "users") {
    relay::v1::ListPresenceUsersRequest u;
    u.set_channel(rest[1]);
    auto r = api_.ListPresenceUsers(*app, u);
    if (!r.ok()) return fail(r.status());
    bool with_info = Param(params, "with_user_info") == "1";
    common::JsonWriter w;
    w.BeginObject().Key("users").BeginArray();
    for (const auto& m : r->users()) {
      w.BeginObject().Key("id").String(m.user_id());
      if (with_info && !m.user_info_json().empty()) w.Key("user_info").Raw(m.user_info_json());
      w.EndObject();
    }
    w.EndArray().EndObject();
    return Ok(w.Take());
  }

  // POST users/{id}/terminate_connections and users/{id}/events
  if (post && rest.size() == 3 && rest[0] == "users") {
    if (rest[2] == "terminate_connections") {
      relay::v1::TerminateUserConnectionsRequest t;
      t.set_user_id(rest[1]);
      if (auto st = api_.TerminateUserConnections(*app, t); !st.ok()) return fail(st);
      return Ok("{}");
    }
    if (rest[2] == "events") {
      auto body = ParseBody(req.body);
      if (!body.ok()) return fail(body.status());
      relay::v1::SendToUserRequest s;
      std::string name, data, socket_id;
      for (auto st : {ReadData(*body, "name", &name, true), ReadData(*body, "data", &data, true),
                      ReadData(*body, "socket_id", &socket_id, false)}) {
        if (!st.ok()) return fail(st);
      }
      s.set_user_id(rest[1]);
      s.set_name(name);
      s.set_data(data);
      s.set_socket_id(socket_id);
      if (auto st = api_.SendToUser(*app, s, &rate); !st.ok()) return fail(st);
      return limited(Ok("{}"));
    }
  }

  // POST auth: sign a channel subscription or a user sign-in on the app's behalf.
  if (post && rest.size() == 1 && rest[0] == "auth") {
    auto body = ParseBody(req.body);
    if (!body.ok()) return fail(body.status());
    std::string socket_id, channel, channel_data, user_data;
    for (auto st : {ReadData(*body, "socket_id", &socket_id, true),
                    ReadData(*body, "channel_name", &channel, false),
                    ReadData(*body, "channel_data", &channel_data, false),
                    ReadData(*body, "user_data", &user_data, false)}) {
      if (!st.ok()) return fail(st);
    }
    common::JsonWriter w;
    if (!channel.empty()) {
      relay::v1::AuthorizeChannelRequest a;
      a.set_socket_id(socket_id);
      a.set_channel_name(channel);
      a.set_channel_data(channel_data);
      auto r = api_.AuthorizeChannel(*app, a);
      if (!r.ok()) return fail(r.status());
      w.BeginObject().Key("auth").String(r->auth());
      if (!r->channel_data().empty()) w.Key("channel_data").String(r->channel_data());
      w.EndObject();
    } else if (!user_data.empty()) {
      relay::v1::AuthenticateUserRequest a;
      a.set_socket_id(socket_id);
      a.set_user_data(user_data);
      auto r = api_.AuthenticateUser(*app, a);
      if (!r.ok()) return fail(r.status());
      w.BeginObject().Key("auth").String(r->auth()).Key("user_data").String(r->user_data());
      w.EndObject();
    } else {
      return fail(absl::InvalidArgumentError("give channel_name (and channel_data) or user_data"));
    }
    return Ok(w.Take());
  }

  return fail(absl::NotFoundError(common::StrCat("No route for ", req.method, " ", req.path)));
}

}  // namespace relay::http_bridge
