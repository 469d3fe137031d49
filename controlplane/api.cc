#include "controlplane/api.h"

#include <simdjson.h>

#include <set>

#include "absl/strings/str_split.h"
#include "common/app_secrets.h"
#include "common/channel.h"
#include "common/crypto.h"
#include "common/frames.h"
#include "common/json.h"
#include "common/log.h"
#include "common/pusher_auth.h"
#include "common/strings.h"
#include "common/time.h"
#include "controlplane/lifecycle_log.h"

namespace relay::controlplane {

using relay::v1::App;

namespace {

constexpr size_t kMaxEventNameLength = 200;
constexpr size_t kMaxChannelsPerTrigger = 100;
constexpr size_t kMaxBatchSize = 10;

absl::StatusOr<InfoAttrs> ParseInfo(std::string_view info) {
  InfoAttrs attrs;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(info.data(), info.size()), ',', absl::SkipWhitespace())) {
    if (part == "subscription_count") {
      attrs.subscription_count = true;
    } else if (part == "user_count") {
      attrs.user_count = true;
    } else if (part == "cache") {
      attrs.cache = true;
    } else {
      return absl::InvalidArgumentError(
          common::StrCat("unsupported info attribute '", std::string(part),
                         "' (supported: subscription_count, user_count, cache)"));
    }
  }
  return attrs;
}

absl::Status CheckChannel(std::string_view channel, bool allow_server_to_user) {
  std::string err = common::ChannelNameError(channel, allow_server_to_user);
  if (!err.empty()) {
    return absl::InvalidArgumentError(common::StrCat("invalid channel '", channel, "': ", err));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
std::string UtcDay(int64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}
}  // namespace

Api::Api(AppStore& store, ClusterState& cluster, NodeHub& hub, ApiLimits limits,
         const common::Clock& clock, ChannelWatch* watch)
    : store_(store), cluster_(cluster), hub_(hub), limits_(limits), clock_(clock), watch_(watch) {
  absl::MutexLock lock(&usage_mu_);
  usage_day_ = UtcDay(clock_.NowUnixSeconds());
  usage_ = store_.LoadUsage(usage_day_);
}

absl::Status Api::AdmitRequest(const std::string& client_ip, RateInfo* info) {
  if (client_ip.empty() || limits_.trigger_requests_per_minute == 0) return absl::OkStatus();
  RateInfo scratch;
  if (!ip_window_.Hit(client_ip, limits_.trigger_requests_per_minute, 60, 1,
                      clock_.NowUnixSeconds(), info != nullptr ? info : &scratch)) {
    counters_.ip_rate_limited.fetch_add(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(
        common::StrCat("rate limit exceeded: at most ", limits_.trigger_requests_per_minute,
                       " trigger requests per minute from one client address"));
  }
  return absl::OkStatus();
}

absl::Status Api::ChargeMessages(const App& app, uint64_t messages, RateInfo* rate) {
  int64_t now = clock_.NowUnixSeconds();
  RateInfo scratch;
  RateInfo* out = rate != nullptr ? rate : &scratch;
  if (uint32_t per_s = app.limits().max_backend_events_per_second(); per_s > 0) {
    if (messages > per_s) {
      return absl::PermissionDeniedError(
          common::StrCat("this request carries ", messages, " messages, more than app '", app.id(),
                         "' may send in a second (", per_s, "); it can never be accepted"));
    }
    RateInfo app_info;
    if (!app_rate_.Hit(app.id(), per_s, 1, messages, now, &app_info)) {
      *out = app_info;
      counters_.app_rate_limited.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(common::StrCat(
          "app '", app.id(), "' is over its limit of ", per_s, " backend events per second"));
    }
  }
  uint64_t quota = app.limits().max_daily_messages() > 0 ? app.limits().max_daily_messages()
                                                         : PlanDailyQuota(app.plan());
  // Usage is counted (and stored) only while the app has a quota: unlimited apps pay no write.
  if (quota == 0) return absl::OkStatus();
  if (messages > quota) {
    return absl::PermissionDeniedError(common::StrCat(
        "this request carries ", messages, " messages, more than the daily quota of app '",
        app.id(), "' (", quota, "); it can never be accepted"));
  }
  std::string day;
  uint64_t used_now = 0;
  {
    absl::MutexLock lock(&usage_mu_);
    std::string today = UtcDay(now);
    if (today != usage_day_) {
      usage_day_ = today;  // counts restart at 00:00 UTC
      usage_.clear();
    }
    uint64_t& used = usage_[app.id()];
    if (used + messages > quota) {
      out->present = true;
      out->limit = quota;
      out->remaining = quota > used ? quota - used : 0;
      out->reset_unix_s = now - (now % 86400) + 86400;
      counters_.daily_quota_refused.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(common::StrCat("app '", app.id(), "' has used ", used,
                                                         " of its daily quota of ", quota,
                                                         " messages; it resets at 00:00 UTC"));
    }
    used += messages;
    day = usage_day_;
    used_now = used;
  }
  // Written through before publishing: a count only ever grows, so concurrent writes may land
  // in any order (the store keeps the largest).
  if (auto st = store_.SaveUsage(day, app.id(), used_now); !st.ok()) {
    RELAY_LOG(kWarn, "api", "cannot persist the daily usage of app '", app.id(),
              "': ", st.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<App> Api::ResolveApp(std::string_view app) const {
  if (serving_) {
    if (auto st = serving_(); !st.ok()) return st;
  }
  auto found = store_.Find(app);
  if (!found) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
  if (!found->enabled()) {
    return absl::PermissionDeniedError(common::StrCat("app '", found->id(), "' is disabled"));
  }
  return *found;
}

absl::Status Api::CheckCredentials(const App& app, const Credentials& c) {
  if (!c.bearer_token.empty()) {
    auto owner = store_.VerifyToken(c.bearer_token);
    if (owner && *owner == app.id()) return absl::OkStatus();
    return absl::UnauthenticatedError("invalid, expired or revoked API token for this app");
  }
  if (!c.key.empty() || !c.secret.empty()) {
    bool ok = common::ConstantTimeEquals(c.key, app.key());
    bool secret_ok = false;
    for (std::string_view s : common::AcceptedSecrets(app, clock_.NowUnixMs())) {
      secret_ok |= common::ConstantTimeEquals(c.secret, s);
    }
    if (ok && secret_ok) return absl::OkStatus();
    return absl::UnauthenticatedError("invalid app key or secret");
  }
  return absl::UnauthenticatedError(
      "missing credentials: give key and secret, a bearer token, or an HMAC signature");
}

absl::Status Api::ValidateEvent(const App& app, std::string_view name, std::string_view data,
                                std::string_view socket_id) const {
  if (name.empty()) return absl::InvalidArgumentError("event name is required");
  if (name.size() > kMaxEventNameLength) {
    return absl::InvalidArgumentError(
        common::StrCat("event name is longer than ", kMaxEventNameLength, " characters"));
  }
  if (name.substr(0, 7) == "pusher:" || name.substr(0, 16) == "pusher_internal:") {
    return absl::InvalidArgumentError("event names starting with 'pusher:' are reserved");
  }
  if (data.size() > app.limits().max_event_payload_bytes()) {
    return absl::OutOfRangeError(common::StrCat("event data is ", data.size(),
                                                " bytes; the limit is ",
                                                app.limits().max_event_payload_bytes()));
  }
  if (!socket_id.empty() && !common::IsValidSocketId(socket_id)) {
    return absl::InvalidArgumentError(
        common::StrCat("invalid socket_id '", socket_id, "' (expected <digits>.<digits>)"));
  }
  return absl::OkStatus();
}

ChannelView Api::Describe(const App& app, const std::string& channel, InfoAttrs attrs) const {
  relay::v1::ChannelInfo full = cluster_.GetChannel(app.id(), channel);
  ChannelView view;
  view.attrs = attrs;
  view.info.set_name(channel);
  view.info.set_occupied(full.occupied());
  if (attrs.subscription_count) view.info.set_subscription_count(full.subscription_count());
  if (attrs.user_count) view.info.set_user_count(full.user_count());
  if (attrs.cache) {
    if (auto c = cluster_.GetCache(app.id(), channel)) *view.info.mutable_cache() = *c;
  }
  return view;
}

InfoAttrs Api::ForEvent(InfoAttrs asked, std::string_view channel) {
  InfoAttrs out;
  out.subscription_count = asked.subscription_count;
  out.user_count = asked.user_count && common::ClassifyChannel(channel).is_presence;
  return out;
}

size_t Api::Route(relay::v1::Publish publish, std::string_view origin_node, size_t* failed,
                  const std::shared_ptr<AckWait>& acks) {
  std::vector<std::string> channels(publish.channels().begin(), publish.channels().end());
  std::vector<std::string> nodes = cluster_.NodesWithInterest(publish.app_id(), channels);
  std::erase(nodes, origin_node);
  size_t sent = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    relay::v1::ControlMessage msg;
    if (i + 1 == nodes.size()) {
      *msg.mutable_publish() = std::move(publish);
    } else {
      *msg.mutable_publish() = publish;
    }
    if (hub_.Send(nodes[i], std::move(msg), acks)) {
      ++sent;
    } else if (failed != nullptr) {
      ++*failed;
    }
  }
  if (origin_node.empty()) counters_.publish_commands.fetch_add(sent, std::memory_order_relaxed);
  return sent;
}

void Api::InCacheOrder(const std::function<void()>& fn) {
  absl::MutexLock lock(&cache_mu_);
  fn();
}

absl::Status Api::CheckBacklog(const std::vector<std::string>& nodes) {
  for (const auto& node : nodes) {
    if (!hub_.Attached(node)) {
      // Its stream has just ended; the route gate closes for what it served in a moment.
      if (gate_ != nullptr) gate_->Count(GateRefusal::kNodeDetached);
      return RetryLaterError(
          common::StrCat("data plane ", node, " is re-attaching; nothing was sent, retry shortly"),
          1);
    }
    if (!hub_.Backlogged(node)) continue;
    if (gate_ != nullptr) gate_->Count(GateRefusal::kNodeBacklog);
    return RetryLaterError(common::StrCat("data plane ", node,
                                          " is not keeping up with the events sent to it; "
                                          "nothing was sent, retry shortly"),
                           1);
  }
  return absl::OkStatus();
}

absl::Status Api::CheckUserRoutable(const App& app, const std::string& user_id) {
  if (serving_) {
    if (auto st = serving_(); !st.ok()) return st;
  }
  if (gate_ != nullptr) {
    if (auto st = gate_->AdmitUser(app.id(), user_id); !st.ok()) return st;
  }
  return CheckBacklog(cluster_.NodesWithUser(app.id(), user_id));
}

absl::Status Api::CheckRoutable(const App& app, const std::vector<std::string>& channels) {
  if (serving_) {
    if (auto st = serving_(); !st.ok()) return st;
  }
  std::vector<std::string> plain;
  for (const auto& channel : channels) {
    std::string_view user = common::ServerToUserId(channel);
    if (user.empty()) {
      plain.push_back(channel);
    } else if (auto st = CheckUserRoutable(app, std::string(user)); !st.ok()) {
      return st;
    }
  }
  if (plain.empty()) return absl::OkStatus();
  if (gate_ != nullptr) {
    if (auto st = gate_->AdmitChannels(app.id(), plain); !st.ok()) return st;
  }
  return CheckBacklog(cluster_.NodesWithInterest(app.id(), plain));
}

namespace {
// A command that could not be queued to a node that has subscribers: the caller must not be
// told the event was delivered.
absl::Status PartlySent() {
  return RetryLaterError(
      "a data plane's link ended while the event was being sent; it may have reached some "
      "subscribers, retry to reach the others",
      1);
}
}  // namespace

absl::Status Api::Publish(const App& app, const std::vector<std::string>& channels,
                          const std::string& name, const std::string& data,
                          const std::string& socket_id, const std::shared_ptr<AckWait>& acks) {
  relay::v1::Publish publish;
  publish.set_app_id(app.id());
  publish.set_accepted_unix_us(common::NowUnixMicros());
  publish.set_event(name);
  publish.set_data(data);
  publish.set_exclude_socket_id(socket_id);
  absl::Status result = absl::OkStatus();
  std::vector<std::string> cache_channels;
  bool watched = watch_ != nullptr && watch_->Wants(app.id());
  for (const auto& channel : channels) {
    std::string_view user = common::ServerToUserId(channel);
    if (!user.empty()) {
      relay::v1::SendToUserRequest r;
      r.set_user_id(std::string(user));
      r.set_name(name);
      r.set_data(data);
      r.set_socket_id(socket_id);
      if (auto st = DeliverToUser(app, r, acks); !st.ok()) result = st;
      continue;
    }
    if (common::ClassifyChannel(channel).is_cache) cache_channels.push_back(channel);
    publish.add_channels(channel);
    // Rendered once here; every data plane only copies these bytes to its sockets.
    publish.add_frames(common::RenderEvent(name, channel, data));
    if (watched) {
      relay::v1::ChannelEvent event;
      event.set_channel(channel);
      event.set_event(name);
      event.set_data(data);
      event.set_source(relay::v1::ChannelEvent::SOURCE_API);
      event.set_socket_id(socket_id);
      event.set_accepted_unix_us(publish.accepted_unix_us());
      watch_->Publish(app.id(), std::move(event));
    }
  }
  counters_.events.fetch_add(1, std::memory_order_relaxed);
  if (publish.channels_size() == 0) return result;
  size_t failed = 0;
  if (cache_channels.empty()) {
    Route(std::move(publish), {}, &failed, acks);
  } else {
    // Stored and queued in one step (InCacheOrder): two publishes racing each other are cached
    // in the order in which they reach the nodes.
    absl::MutexLock lock(&cache_mu_);
    uint64_t seq = ++cache_seq_;
    for (const auto& channel : cache_channels) {
      cluster_.StoreCache(app.id(), channel, name, data, app.features().cache_ttl_seconds(), seq);
    }
    Route(std::move(publish), {}, &failed, acks);
  }
  return failed > 0 ? PartlySent() : result;
}

absl::StatusOr<TriggerResult> Api::Trigger(const App& app, const relay::v1::TriggerRequest& request,
                                           RateInfo* rate, const std::shared_ptr<AckWait>& acks) {
  if (request.channels().empty()) {
    return absl::InvalidArgumentError("at least one channel is required");
  }
  if (static_cast<size_t>(request.channels_size()) > kMaxChannelsPerTrigger) {
    return absl::InvalidArgumentError(
        common::StrCat("at most ", kMaxChannelsPerTrigger, " channels per event"));
  }
  if (auto st = ValidateEvent(app, request.name(), request.data(), request.socket_id()); !st.ok()) {
    return st;
  }
  std::vector<std::string> channels;
  std::set<std::string> seen;
  bool encrypted = false;
  for (const auto& c : request.channels()) {
    if (auto st = CheckChannel(c, true); !st.ok()) return st;
    encrypted |= common::ClassifyChannel(c).is_encrypted;
    if (seen.insert(c).second) channels.push_back(c);
  }
  if (encrypted && channels.size() > 1) {
    return absl::InvalidArgumentError(
        "an event for a private-encrypted- channel must have exactly one channel");
  }
  auto attrs = ParseInfo(request.info());
  if (!attrs.ok()) return attrs.status();
  TriggerResult result;
  if (!request.info().empty()) {
    for (const auto& c : channels) {
      result.channels.push_back(Describe(app, c, ForEvent(*attrs, c)));
      (*result.proto.mutable_channels())[c] = result.channels.back().info;
    }
  }
  // Nothing is charged for an event that cannot be routed now.
  if (auto st = CheckRoutable(app, channels); !st.ok()) return st;
  // A message is one event on one (distinct) channel.
  if (auto st = ChargeMessages(app, channels.size(), rate); !st.ok()) return st;
  if (auto st = Publish(app, channels, request.name(), request.data(), request.socket_id(), acks);
      !st.ok()) {
    return st;
  }
  return result;
}

absl::StatusOr<TriggerBatchResult> Api::TriggerBatch(const App& app,
                                                     const relay::v1::TriggerBatchRequest& request,
                                                     RateInfo* rate,
                                                     const std::shared_ptr<AckWait>& acks) {
  if (request.batch().empty()) return absl::InvalidArgumentError("batch is empty");
  if (static_cast<size_t>(request.batch_size()) > kMaxBatchSize) {
    return absl::InvalidArgumentError(
        common::StrCat("Cannot batch-send more than ", kMaxBatchSize, " messages at once"));
  }
  // Validate everything before publishing anything.
  for (const auto& e : request.batch()) {
    if (auto st = CheckChannel(e.channel(), true); !st.ok()) return st;
    if (auto st = ValidateEvent(app, e.name(), e.data(), e.socket_id()); !st.ok()) return st;
    if (auto a = ParseInfo(e.info()); !a.ok()) return a.status();
  }
  for (const auto& e : request.batch()) {
    if (auto st = CheckRoutable(app, {e.channel()}); !st.ok()) return st;
  }
  // Each item is one message.
  if (auto st = ChargeMessages(app, static_cast<uint64_t>(request.batch_size()), rate); !st.ok()) {
    return st;
  }
  TriggerBatchResult result;
  absl::Status failed = absl::OkStatus();
  for (const auto& e : request.batch()) {
    if (!e.info().empty()) result.proto.set_has_info(true);
  }
  for (const auto& e : request.batch()) {
    if (result.proto.has_info()) {
      // An item without `info` is described by nothing; validated above, so ParseInfo is ok.
      ChannelView view;
      if (!e.info().empty()) {
        view = Describe(app, e.channel(), ForEvent(*ParseInfo(e.info()), e.channel()));
      }
      *result.proto.add_batch() = view.info;
      result.batch.push_back(std::move(view));
    }
    if (auto st = Publish(app, {e.channel()}, e.name(), e.data(), e.socket_id(), acks); !st.ok()) {
      failed = st;  // the other items still go out: they were charged
    }
  }
  if (!failed.ok()) return failed;
  return result;
}

namespace {
// A watch method's channel prefix: empty (every channel) or valid channel name characters.
absl::Status CheckWatchPrefix(const std::string& prefix) {
  if (prefix.empty()) return absl::OkStatus();
  std::string err = common::ChannelNameError(prefix, false);
  if (err.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(common::StrCat("invalid prefix '", prefix, "': ", err));
}
}  // namespace

absl::StatusOr<std::shared_ptr<ChannelWatcher>> Api::Watch(
    const App& app, const relay::v1::WatchChannelEventsRequest& request,
    std::function<void()> wake) {
  if (watch_ == nullptr) {
    return absl::UnimplementedError("channel event streams are off on this control plane");
  }
  if (static_cast<size_t>(request.channels_size()) > kMaxChannelsPerTrigger) {
    return absl::InvalidArgumentError(
        common::StrCat("at most ", kMaxChannelsPerTrigger, " channels per watcher"));
  }
  WatchFilter filter;
  for (const auto& c : request.channels()) {
    if (auto st = CheckChannel(c, false); !st.ok()) return st;
    filter.channels.insert(c);
  }
  if (auto st = CheckWatchPrefix(request.prefix()); !st.ok()) return st;
  filter.prefix = request.prefix();
  auto watcher = watch_->Open(app.id(), std::move(filter), std::move(wake));
  if (!watcher.ok()) return watcher.status();
  if (auto now = ResolveApp(app.id()); !now.ok()) {
    watch_->Close(*watcher);
    return now.status();
  }
  return watcher;
}

absl::StatusOr<std::shared_ptr<LifecycleWatcher>> Api::WatchLifecycle(
    const App& app, const relay::v1::WatchLifecycleEventsRequest& request,
    std::function<void()> wake) {
  if (lifecycle_ == nullptr) {
    return absl::UnimplementedError(
        "lifecycle event streams are off on this control plane (--lifecycle-retention-seconds 0)");
  }
  static const std::set<std::string> kNames = {
      "channel_occupied", "channel_vacated", "member_added",      "member_removed",
      "client_event",     "cache_miss",      "subscription_count"};
  LifecycleFilter filter;
  for (const auto& n : request.events()) {
    if (!kNames.contains(n)) {
      return absl::InvalidArgumentError(common::StrCat(
          "unknown event type '", n,
          "' (channel_occupied, channel_vacated, member_added, member_removed, client_event, "
          "cache_miss, subscription_count)"));
    }
    filter.names.insert(n);
  }
  if (auto st = CheckWatchPrefix(request.prefix()); !st.ok()) return st;
  filter.prefix = request.prefix();
  std::optional<uint64_t> since;
  if (request.has_since_cursor()) since = request.since_cursor();
  auto watcher = lifecycle_->Watch(app.id(), std::move(filter), since, std::move(wake));
  if (!watcher.ok()) return watcher.status();
  if (auto now = ResolveApp(app.id()); !now.ok()) {
    lifecycle_->Close(*watcher);
    return now.status();
  }
  return watcher;
}

absl::StatusOr<ListChannelsResult> Api::ListChannels(
    const App& app, const relay::v1::ListChannelsRequest& request) const {
  auto attrs = ParseInfo(request.info());
  if (!attrs.ok()) return attrs.status();
  if (attrs->cache) return absl::InvalidArgumentError("cache is not available when listing");
  if (attrs->user_count && request.filter_by_prefix().rfind("presence-", 0) != 0) {
    return absl::InvalidArgumentError(
        "user_count is only available with filter_by_prefix=presence-");
  }
  ListChannelsResult result;
  result.attrs = *attrs;
  for (auto& c : cluster_.ListChannels(app.id(), request.filter_by_prefix())) {
    relay::v1::ChannelInfo out;
    out.set_name(c.name());
    out.set_occupied(true);
    if (attrs->subscription_count) out.set_subscription_count(c.subscription_count());
    if (attrs->user_count) out.set_user_count(c.user_count());
    *result.proto.add_channels() = std::move(out);
  }
  return result;
}

absl::StatusOr<ChannelView> Api::GetChannel(const App& app,
                                            const relay::v1::GetChannelRequest& request) const {
  if (auto st = CheckChannel(request.channel(), false); !st.ok()) return st;
  auto attrs = ParseInfo(request.info());
  if (!attrs.ok()) return attrs.status();
  common::ChannelKind kind = common::ClassifyChannel(request.channel());
  if (attrs->user_count && !kind.is_presence) {
    return absl::InvalidArgumentError("user_count is only available for presence channels");
  }
  if (attrs->cache && !kind.is_cache) {
    return absl::InvalidArgumentError("cache is only available for cache channels");
  }
  return Describe(app, request.channel(), *attrs);
}

absl::StatusOr<relay::v1::ListPresenceUsersResponse> Api::ListPresenceUsers(
    const App& app, const relay::v1::ListPresenceUsersRequest& request) const {
  if (auto st = CheckChannel(request.channel(), false); !st.ok()) return st;
  if (!common::ClassifyChannel(request.channel()).is_presence) {
    return absl::InvalidArgumentError("users are only available for presence channels");
  }
  relay::v1::ListPresenceUsersResponse response;
  for (auto& m : cluster_.PresenceMembers(app.id(), request.channel())) {
    *response.add_users() = std::move(m);
  }
  return response;
}

absl::StatusOr<std::shared_ptr<AckWait>> Api::BeginAcks() {
  auto wait = hub_.acks().Begin();
  if (wait == nullptr) {
    return RetryLaterError(
        "too many requests are waiting for the data planes to confirm their events; nothing "
        "was sent, retry shortly",
        1);
  }
  return wait;
}

absl::Status Api::SendToUser(const App& app, const relay::v1::SendToUserRequest& request,
                             RateInfo* rate, const std::shared_ptr<AckWait>& acks) {
  if (request.user_id().empty()) return absl::InvalidArgumentError("user_id is required");
  if (auto st = ValidateEvent(app, request.name(), request.data(), request.socket_id()); !st.ok()) {
    return st;
  }
  if (auto st = CheckUserRoutable(app, request.user_id()); !st.ok()) return st;
  if (auto st = ChargeMessages(app, 1, rate); !st.ok()) return st;
  return DeliverToUser(app, request, acks);
}

absl::Status Api::DeliverToUser(const App& app, const relay::v1::SendToUserRequest& request,
                                const std::shared_ptr<AckWait>& acks) {
  bool failed = false;
  for (const auto& node : cluster_.NodesWithUser(app.id(), request.user_id())) {
    relay::v1::ControlMessage msg;
    auto* s = msg.mutable_send_to_user();
    s->set_app_id(app.id());
    s->set_user_id(request.user_id());
    s->set_event(request.name());
    s->set_data(request.data());
    s->set_exclude_socket_id(request.socket_id());
    if (hub_.Send(node, std::move(msg), acks)) {
      counters_.publish_commands.fetch_add(1, std::memory_order_relaxed);
    } else {
      failed = true;
    }
  }
  return failed ? PartlySent() : absl::OkStatus();
}

absl::Status Api::TerminateUserConnections(
    const App& app, const relay::v1::TerminateUserConnectionsRequest& request,
    const std::shared_ptr<AckWait>& acks) {
  if (request.user_id().empty()) return absl::InvalidArgumentError("user_id is required");
  if (auto st = CheckUserRoutable(app, request.user_id()); !st.ok()) return st;
  bool failed = false;
  for (const auto& node : cluster_.NodesWithUser(app.id(), request.user_id())) {
    relay::v1::ControlMessage msg;
    msg.mutable_terminate_user()->set_app_id(app.id());
    msg.mutable_terminate_user()->set_user_id(request.user_id());
    failed |= !hub_.Send(node, std::move(msg), acks);
  }
  return failed ? PartlySent() : absl::OkStatus();
}

absl::StatusOr<relay::v1::AuthorizeChannelResponse> Api::AuthorizeChannel(
    const App& app, const relay::v1::AuthorizeChannelRequest& request) const {
  if (!common::IsValidSocketId(request.socket_id())) {
    return absl::InvalidArgumentError("invalid socket_id (expected <digits>.<digits>)");
  }
  if (auto st = CheckChannel(request.channel_name(), false); !st.ok()) return st;
  common::ChannelKind kind = common::ClassifyChannel(request.channel_name());
  if (!kind.NeedsAuth()) {
    return absl::InvalidArgumentError("only private and presence channels need authorization");
  }
  if (kind.is_encrypted) {
    // pusher-js needs a shared_secret derived from the app's encryption master key, which Relay
    // never holds: an auth without it would subscribe but decrypt nothing.
    return absl::InvalidArgumentError(
        "private-encrypted- channels must be authorized by the app's own backend (the "
        "encryption master key never reaches Relay)");
  }
  if (kind.is_presence) {
    simdjson::dom::element doc;
    if (request.channel_data().empty() ||
        common::ThreadParser().parse(request.channel_data()).get(doc) || !doc.is_object() ||
        doc["user_id"].error()) {
      return absl::InvalidArgumentError(
          "presence channels need channel_data, a JSON object with a user_id");
    }
  }
  relay::v1::AuthorizeChannelResponse response;
  std::string_view data = kind.is_presence ? std::string_view(request.channel_data()) : "";
  response.set_auth(common::SignToken(
      app.key(), app.secret(),
      common::ChannelStringToSign(request.socket_id(), request.channel_name(), data)));
  if (kind.is_presence) response.set_channel_data(request.channel_data());
  return response;
}

absl::StatusOr<relay::v1::AuthenticateUserResponse> Api::AuthenticateUser(
    const App& app, const relay::v1::AuthenticateUserRequest& request) const {
  if (!common::IsValidSocketId(request.socket_id())) {
    return absl::InvalidArgumentError("invalid socket_id (expected <digits>.<digits>)");
  }
  simdjson::dom::element doc;
  std::string_view id;
  if (common::ThreadParser().parse(request.user_data()).get(doc) || !doc.is_object() ||
      doc["id"].get(id) || id.empty()) {
    return absl::InvalidArgumentError("user_data must be a JSON object with a non-empty string id");
  }
  relay::v1::AuthenticateUserResponse response;
  response.set_auth(common::SignToken(
      app.key(), app.secret(), common::UserStringToSign(request.socket_id(), request.user_data())));
  response.set_user_data(request.user_data());
  return response;
}

}  // namespace relay::controlplane
