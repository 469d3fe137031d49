#include "console/console.h"

#include <simdjson.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/channel.h"
#include "common/json.h"
#include "common/strings.h"
#include "console/assets.h"
#include "controlplane/admin_ops.h"
#include "controlplane/lifecycle_log.h"
#include "http-bridge/http_api.h"

namespace relay::console {
namespace {

using transport::HttpRequest;
using transport::HttpResponse;

// No inline script or style anywhere (the page loads console.js and console.css from 'self'),
// no framing, no form posts, fetches only to this origin.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
// Bytes one Pull() gathers from the feeds before handing them to the connection.
constexpr size_t kPullBytes = 64 * 1024;

std::string Param(const common::QueryParams& params, std::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

std::string ChannelEventJson(const relay::v1::ChannelEvent& e) {
  common::JsonWriter w;
  w.BeginObject()
      .Key("channel")
      .String(e.channel())
      .Key("event")
      .String(e.event())
      .Key("data")
      .String(e.data())
      .Key("source")
      .String(e.source() == relay::v1::ChannelEvent::SOURCE_CLIENT ? "client" : "api")
      .Key("socket_id")
      .String(e.socket_id())
      .Key("user_id")
      .String(e.user_id())
      .Key("accepted_unix_us")
      .Int(e.accepted_unix_us())
      .EndObject();
  return w.Take();
}

// A watcher of one of the watch methods as a log feed: its events as JSON, closed with the feed.
template <typename Owner, typename Watcher, typename Event>
class WatcherFeed final : public LogFeed {
 public:
  WatcherFeed(Owner& owner, std::shared_ptr<Watcher> watcher, std::string (*json)(const Event&))
      : owner_(owner), watcher_(std::move(watcher)), json_(json) {}
  ~WatcherFeed() override { owner_.Close(watcher_); }

  Next Take() override {
    typename Watcher::Next next = watcher_->Take();
    if (next.end) return {"", std::move(next.end)};
    if (!next.event) return {};
    return {json_(*next.event), std::nullopt};
  }

 private:
  Owner& owner_;
  const std::shared_ptr<Watcher> watcher_;
  std::string (*const json_)(const Event&);
};

class ChannelEventSource final : public LogSource {
 public:
  explicit ChannelEventSource(controlplane::Api& api) : api_(api) {}
  std::string_view name() const override { return "channel"; }

  absl::StatusOr<std::unique_ptr<LogFeed>> Open(const relay::v1::App& app,
                                                const common::QueryParams& params,
                                                std::function<void()> wake) override {
    relay::v1::WatchChannelEventsRequest req;
    req.set_app(app.id());
    for (const auto& [k, v] : params) {
      if (k == "channel") req.add_channels(v);
      if (k == "prefix") req.set_prefix(v);
    }
    auto watcher = api_.Watch(app, req, std::move(wake));
    if (!watcher.ok()) return watcher.status();
    return std::make_unique<WatcherFeed<controlplane::ChannelWatch, controlplane::ChannelWatcher,
                                        relay::v1::ChannelEvent>>(
        *api_.watch(), std::move(*watcher), &ChannelEventJson);
  }

 private:
  controlplane::Api& api_;
};

std::string LifecycleEventJson(const relay::v1::LifecycleEvent& e) {
  common::JsonWriter w;
  w.BeginObject()
      .Key("cursor")
      .Int(static_cast<int64_t>(e.cursor()))
      .Key("name")
      .String(e.name())
      .Key("channel")
      .String(e.channel())
      .Key("user_id")
      .String(e.user_id())
      .Key("event")
      .String(e.event())
      .Key("data")
      .String(e.data())
      .Key("socket_id")
      .String(e.socket_id())
      .Key("subscription_count")
      .Int(e.subscription_count())
      .Key("time_ms")
      .Int(e.time_ms())
      .EndObject();
  return w.Take();
}

// Channels.WatchLifecycleEvents (Api::WatchLifecycle), live from the stream's start: `prefix`
// and `events` (comma-separated types) as the request's. Without `events`, every type but
// client_event, which the channel source already shows.
class LifecycleSource final : public LogSource {
 public:
  explicit LifecycleSource(controlplane::Api& api) : api_(api) {}
  std::string_view name() const override { return "lifecycle"; }

  absl::StatusOr<std::unique_ptr<LogFeed>> Open(const relay::v1::App& app,
                                                const common::QueryParams& params,
                                                std::function<void()> wake) override {
    relay::v1::WatchLifecycleEventsRequest req;
    req.set_app(app.id());
    bool events = false;
    for (const auto& [k, v] : params) {
      if (k == "prefix") req.set_prefix(v);
      if (k != "events") continue;
      events = true;
      for (absl::string_view one : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        req.add_events(std::string(one));
      }
    }
    if (!events) {
      for (const char* type : {"channel_occupied", "channel_vacated", "member_added",
                               "member_removed", "cache_miss", "subscription_count"}) {
        req.add_events(type);
      }
    }
    auto watcher = api_.WatchLifecycle(app, req, std::move(wake));
    if (!watcher.ok()) return watcher.status();
    return std::make_unique<WatcherFeed<controlplane::LifecycleLog, controlplane::LifecycleWatcher,
                                        relay::v1::LifecycleEvent>>(
        *api_.lifecycle(), std::move(*watcher), &LifecycleEventJson);
  }

 private:
  controlplane::Api& api_;
};

// {"code":HTTP status,"error":message}: how a feed's end (or a refusal) reads in the log.
std::string StatusJson(std::string_view source, const absl::Status& st) {
  common::JsonWriter w;
  w.BeginObject()
      .Key("source")
      .String(source)
      .Key("code")
      .Int(http_bridge::HttpStatusFor(st))
      .Key("error")
      .String(std::string(st.message()))
      .EndObject();
  return w.Take();
}

void AppendSse(std::string* out, std::string_view event, std::string_view json) {
  common::StrAppend(out, "event: ", event, "\ndata: ", json, "\n\n");
}

// One live log: the feeds of the sources asked for, merged into one SSE body. Bounded by the
// feeds' own buffers: the connection pulls only when its previous write is done, so a browser
// that does not read leaves the entries in the feeds, which cut it as their limits say (the
// channel events: the watcher's event and byte bounds). The first feed that ends ends the
// stream, with an `end` event saying why.
class LogStream final : public transport::ResponseStream,
                        public std::enable_shared_from_this<LogStream> {
 public:
  void Add(std::string_view name, std::unique_ptr<LogFeed> feed) {
    feeds_.push_back({std::string(name), std::move(feed)});
  }
  // For the feeds' Open(): forwards to the connection's wake once it is started.
  std::function<void()> Waker() {
    return [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Wake();
    };
  }

  void Start(std::function<void()> wake) override {
    absl::MutexLock lock(&mu_);
    wake_ = std::move(wake);
  }

  Pulled Pull() override {
    Pulled out;
    if (!opened_) {
      opened_ = true;
      // The browser's reconnect delay, then an entry saying the log is live: every entry
      // accepted from now on is in it (the feeds were registered before the head went out).
      common::JsonWriter w;
      w.BeginObject().Key("sources").BeginArray();
      for (const auto& f : feeds_) w.String(f.name);
      w.EndArray().EndObject();
      out.bytes = "retry: 3000\n\n";
      AppendSse(&out.bytes, "open", w.str());
    }
    bool more = true;
    while (more && out.bytes.size() < kPullBytes) {
      more = false;
      for (auto& f : feeds_) {
        LogFeed::Next next = f.feed->Take();
        if (next.end) {
          AppendSse(&out.bytes, "end", StatusJson(f.name, *next.end));
          out.end = true;
          return out;
        }
        if (next.json.empty()) continue;
        AppendSse(&out.bytes, f.name, next.json);
        more = true;
      }
    }
    return out;
  }

  std::string KeepAlive() override { return ": keep-alive\n\n"; }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      wake_ = nullptr;
    }
    feeds_.clear();  // closes the watchers
  }

 private:
  void Wake() {
    std::function<void()> wake;
    {
      absl::MutexLock lock(&mu_);
      wake = wake_;
    }
    if (wake) wake();
  }

  struct Feed {
    std::string name;
    std::unique_ptr<LogFeed> feed;
  };
  std::vector<Feed> feeds_;  // the connection's thread only
  bool opened_ = false;
  absl::Mutex mu_;
  std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
};

void AddSecurityHeaders(HttpResponse& r, bool api) {
  r.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  // API answers (live counts, members) are never stored; the static files are revalidated.
  r.headers.emplace_back("Cache-Control", api ? "no-store" : "no-cache");
}

HttpResponse MethodNotAllowed(std::string_view method, std::string_view allowed) {
  HttpResponse r = transport::JsonError(
      405, common::StrCat("method ", method, " is not allowed here (allowed: ", allowed, ")"));
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

std::string Bearer(const HttpRequest& req) {
  std::string_view authz = req.Header("Authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (authz.substr(0, kPrefix.size()) != kPrefix) return {};
  return std::string(authz.substr(kPrefix.size()));
}

HttpResponse Json(std::string body) { return HttpResponse{200, std::move(body)}; }

// POST .../events: {"channel": "...", "event": "...", "data": "..." or any JSON value}.
absl::StatusOr<relay::v1::TriggerRequest> ParseTrigger(const std::string& body) {
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (body.empty() || common::ThreadParser().parse(body).get(doc) || doc.get(obj)) {
    return absl::InvalidArgumentError(
        "the request body must be a JSON object {\"channel\", \"event\", \"data\"}");
  }
  relay::v1::TriggerRequest t;
  std::string_view channel, event, data;
  if (obj["channel"].get(channel)) return absl::InvalidArgumentError("'channel' must be a string");
  if (obj["event"].get(event)) return absl::InvalidArgumentError("'event' must be a string");
  simdjson::dom::element d;
  if (obj["data"].get(d)) return absl::InvalidArgumentError("missing 'data'");
  if (d.get(data) == simdjson::SUCCESS) {
    t.set_data(std::string(data));
  } else {
    t.set_data(simdjson::minify(d));  // as the HTTP API does with a JSON value
  }
  t.add_channels(std::string(channel));
  t.set_name(std::string(event));
  return t;
}

}  // namespace

std::unique_ptr<LogSource> MakeChannelEventSource(controlplane::Api& api) {
  return std::make_unique<ChannelEventSource>(api);
}

Console::Console(controlplane::ControlPlane& cp) : cp_(cp) {
  AddSource(MakeChannelEventSource(cp.api()));
  // The lifecycle log is off with --lifecycle-retention-seconds 0.
  if (cp.api().lifecycle() != nullptr) AddSource(std::make_unique<LifecycleSource>(cp.api()));
}

void Console::AddSource(std::unique_ptr<LogSource> source) {
  sources_.push_back(std::move(source));
}

transport::HttpHandler Console::Wrap(transport::HttpHandler next) {
  return [this, next = std::move(next)](const HttpRequest& r) {
    std::string_view path = r.path;
    if (path == "/console" || path.substr(0, 9) == "/console/") return Handle(r);
    return next(r);
  };
}

HttpResponse Console::Handle(const HttpRequest& req) {
  const bool api = req.path.rfind("/console/api/", 0) == 0;
  absl::StatusOr<HttpResponse> served = Serve(req);
  HttpResponse r;
  if (served.ok()) {
    r = std::move(*served);
  } else {
    r = transport::JsonError(http_bridge::HttpStatusFor(served.status()),
                             std::string(served.status().message()));
    if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"relay\"");
    if (int64_t wait = controlplane::RetryAfterSeconds(served.status()); wait > 0) {
      r.headers.emplace_back("Retry-After", std::to_string(wait));
    }
  }
  AddSecurityHeaders(r, api);
  return r;
}

absl::StatusOr<HttpResponse> Console::Serve(const HttpRequest& req) {
  std::vector<std::string> parts = http_bridge::SplitPath(req.path);  // parts[0] == "console"
  if (parts.size() >= 2 && parts[1] == "api") return ServeApi(req, parts);
  if (req.method != "GET") return MethodNotAllowed(req.method, "GET");
  if (req.path == "/console") {
    // The page's relative URLs (console.js) resolve under /console/.
    HttpResponse r{308, "", "text/plain"};
    r.headers.emplace_back("Location", "/console/");
    return r;
  }
  std::string name = parts.size() == 1 ? "index.html" : parts.size() == 2 ? parts[1] : "";
  const EmbeddedFile* file = FindEmbeddedFile(name);
  if (file == nullptr) {
    return absl::NotFoundError(common::StrCat("no console file ", req.path));
  }
  return HttpResponse{200, std::string(file->data, file->size), file->content_type};
}

absl::StatusOr<HttpResponse> Console::ServeApi(const HttpRequest& req,
                                               const std::vector<std::string>& parts) {
  // Nothing, not even whether a route or an app exists, before the token.
  if (auto st = controlplane::CheckAdminToken(Bearer(req), cp_.admin_token()); !st.ok()) {
    return st;
  }
  common::QueryParams params;
  if (!common::ParseQuery(req.query, &params)) {
    return absl::InvalidArgumentError("malformed query string");
  }
  // parts: console api apps [{app} [channels [{name} [users]] | events | stream]]
  std::vector<std::string> rest(parts.begin() + 2, parts.end());
  if (rest.empty() || rest[0] != "apps") {
    return absl::NotFoundError(common::StrCat("no console API route ", req.path));
  }
  if (rest.size() == 1) {
    if (req.method != "GET") return MethodNotAllowed(req.method, "GET");
    auto body = Apps();
    if (!body.ok()) return body.status();
    return Json(std::move(*body));
  }
  auto app = cp_.api().ResolveApp(rest[1]);
  if (!app.ok()) return app.status();
  std::string_view what = rest.size() > 2 ? std::string_view(rest[2]) : "";
  const size_t n = rest.size();
  if (what == "events" && n == 3) {
    if (req.method != "POST") return MethodNotAllowed(req.method, "POST");
    auto trigger = ParseTrigger(req.body);
    if (!trigger.ok()) return trigger.status();
    trigger->set_app(app->id());
    // Admin callers are not limited per address (as gRPC callers); the app's event rate and
    // daily quota apply as to everyone.
    auto r = cp_.api().Trigger(*app, *trigger);
    if (!r.ok()) return r.status();
    return Json("{}");
  }
  if (req.method != "GET") return MethodNotAllowed(req.method, "GET");
  if (what == "stream" && n == 3) return Stream(*app, params);
  if (what == "channels" && n == 3) {
    // Channels.ListChannels, once for the subscription counts of all and once for the user
    // counts of the presence channels (the API gives user_count only under that prefix).
    relay::v1::ListChannelsRequest all;
    all.set_filter_by_prefix(Param(params, "filter_by_prefix"));
    all.set_info("subscription_count");
    auto listed = cp_.api().ListChannels(*app, all);
    if (!listed.ok()) return listed.status();
    relay::v1::ListChannelsRequest presence;
    presence.set_filter_by_prefix("presence-");
    presence.set_info("user_count");
    auto members = cp_.api().ListChannels(*app, presence);
    if (!members.ok()) return members.status();
    absl::flat_hash_map<std::string, uint32_t> users;
    for (const auto& c : members->proto.channels()) users[c.name()] = c.user_count();
    common::JsonWriter w;
    w.BeginObject().Key("channels").BeginArray();
    for (const auto& c : listed->proto.channels()) {
      w.BeginObject()
          .Key("name")
          .String(c.name())
          .Key("subscription_count")
          .Uint(c.subscription_count());
      if (auto it = users.find(c.name()); it != users.end()) w.Key("user_count").Uint(it->second);
      w.EndObject();
    }
    w.EndArray().EndObject();
    return Json(w.Take());
  }
  if (what == "channels" && n == 4) {
    // Channels.GetChannel with every attribute that applies to the channel.
    relay::v1::GetChannelRequest g;
    g.set_channel(rest[3]);
    common::ChannelKind kind = common::ClassifyChannel(rest[3]);
    g.set_info(common::StrCat("subscription_count", kind.is_presence ? ",user_count" : "",
                              kind.is_cache ? ",cache" : ""));
    auto c = cp_.api().GetChannel(*app, g);
    if (!c.ok()) return c.status();
    common::JsonWriter w;
    w.BeginObject()
        .Key("name")
        .String(rest[3])
        .Key("occupied")
        .Bool(c->info.occupied())
        .Key("subscription_count")
        .Uint(c->info.subscription_count())
        .Key("presence")
        .Bool(kind.is_presence);
    if (kind.is_presence) w.Key("user_count").Uint(c->info.user_count());
    if (kind.is_cache) {
      w.Key("cache");
      if (c->info.has_cache()) {
        w.BeginObject()
            .Key("event")
            .String(c->info.cache().event())
            .Key("data")
            .String(c->info.cache().data())
            .EndObject();
      } else {
        w.Null();
      }
    }
    w.EndObject();
    return Json(w.Take());
  }
  if (what == "channels" && n == 5 && rest[4] == "users") {
    // Channels.ListPresenceUsers.
    relay::v1::ListPresenceUsersRequest u;
    u.set_channel(rest[3]);
    auto r = cp_.api().ListPresenceUsers(*app, u);
    if (!r.ok()) return r.status();
    common::JsonWriter w;
    w.BeginObject().Key("users").BeginArray();
    for (const auto& m : r->users()) {
      w.BeginObject().Key("id").String(m.user_id());
      if (!m.user_info_json().empty()) w.Key("user_info").Raw(m.user_info_json());
      w.EndObject();
    }
    w.EndArray().EndObject();
    return Json(w.Take());
  }
  return absl::NotFoundError(common::StrCat("no console API route ", req.path));
}

absl::StatusOr<std::string> Console::Apps() {
  // Admin.ListApps, and Admin.GetStats per app for its live connections and channels. Never a
  // secret: the console shows what an operator needs to see, not what would let a page's
  // reader act as the app.
  common::JsonWriter w;
  w.BeginObject().Key("apps").BeginArray();
  const relay::v1::ListAppsResponse listed = controlplane::ListApps(cp_.store());
  for (const auto& a : listed.apps()) {
    relay::v1::GetStatsRequest req;
    req.set_app(a.id());
    auto stats = controlplane::GetStats(cp_.store(), cp_.cluster(), cp_.hub(), cp_.api(), req);
    if (!stats.ok()) continue;  // deleted meanwhile
    w.BeginObject()
        .Key("id")
        .String(a.id())
        .Key("key")
        .String(a.key())
        .Key("name")
        .String(a.name())
        .Key("enabled")
        .Bool(a.enabled())
        .Key("connections")
        .Uint(stats->connections())
        .Key("channels")
        .Uint(stats->channels())
        .EndObject();
  }
  w.EndArray().EndObject();
  return w.Take();
}

absl::StatusOr<HttpResponse> Console::Stream(const relay::v1::App& app,
                                             const common::QueryParams& params) {
  // ?sources=channel,lifecycle (default: every source).
  std::vector<LogSource*> chosen;
  std::string wanted = Param(params, "sources");
  if (wanted.empty()) {
    for (auto& s : sources_) chosen.push_back(s.get());
  } else {
    for (absl::string_view name : absl::StrSplit(wanted, ',', absl::SkipWhitespace())) {
      LogSource* found = nullptr;
      for (auto& s : sources_) {
        if (s->name() == std::string_view(name.data(), name.size())) found = s.get();
      }
      if (found == nullptr) {
        std::string known;
        for (auto& s : sources_) common::StrAppend(&known, known.empty() ? "" : ", ", s->name());
        return absl::InvalidArgumentError(
            common::StrCat("unknown log source '", std::string(name), "' (known: ", known, ")"));
      }
      if (std::find(chosen.begin(), chosen.end(), found) == chosen.end()) chosen.push_back(found);
    }
  }
  auto stream = std::make_shared<LogStream>();
  for (LogSource* s : chosen) {
    auto feed = s->Open(app, params, stream->Waker());
    if (!feed.ok()) return feed.status();  // the feeds opened so far close with `stream`
    stream->Add(s->name(), std::move(*feed));
  }
  HttpResponse r{200, "", "text/event-stream; charset=utf-8"};
  r.headers.emplace_back("X-Accel-Buffering", "no");  // nginx: pass each event on at once
  r.stream = std::move(stream);
  return r;
}

}  // namespace relay::console
