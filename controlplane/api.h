// File: api.h
// The public operations of Relay (trigger, channel queries, users, channel/user auth) with their
// validation, limits and auth rules, implemented once. The gRPC Channels service and the HTTP API
// (http-bridge) are both thin translations onto this class.
// Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "controlplane/app_store.h"
#include "controlplane/channel_watch.h"
#include "controlplane/cluster_state.h"
#include "controlplane/limiter.h"
#include "controlplane/node_hub.h"
#include "controlplane/route_gate.h"
#include "relay/v1/public.pb.h"

namespace relay::controlplane {

class LifecycleLog;
class LifecycleWatcher;

// How a caller proved it may act for an app (other than an HTTP HMAC signature, which the
// http-bridge verifies against common::AcceptedSecrets).
struct Credentials {
  std::string key;
  std::string secret;
  std::string bearer_token;
};

// Counters shown by GetStats.
struct ApiCounters {
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> publish_commands{0};
  // Event-sending requests refused: over the per-address request rate, over the app's events
  // per second, over the app's daily message quota.
  std::atomic<uint64_t> ip_rate_limited{0};
  std::atomic<uint64_t> app_rate_limited{0};
  std::atomic<uint64_t> daily_quota_refused{0};
};

// The attributes a caller asked for with `info` ("subscription_count,user_count,cache").
struct InfoAttrs {
  bool subscription_count = false;
  bool user_count = false;
  bool cache = false;
};

// One channel's figures and which of them are given (asked for, and applicable to the
// channel): the proto cannot tell a count left out from a zero, so the HTTP API prints `attrs`.
struct ChannelView {
  relay::v1::ChannelInfo info;
  InfoAttrs attrs;
};

// What the event-sending and query operations answer: `proto` for gRPC, the views for HTTP.
struct TriggerResult {
  relay::v1::TriggerResponse proto;
  // Each target channel once, in request order; empty when the request gave no `info`.
  std::vector<ChannelView> channels;
};
struct TriggerBatchResult {
  relay::v1::TriggerBatchResponse proto;
  // One per batch item, in order (empty when no item gave `info`).
  std::vector<ChannelView> batch;
};
struct ListChannelsResult {
  relay::v1::ListChannelsResponse proto;
  InfoAttrs attrs;  // the same for every channel listed
};

struct ApiLimits {
  // Trigger requests per client IP per minute (0 = unlimited).
  uint64_t trigger_requests_per_minute = 300;
};

class Api {
 public:
  // `clock` drives the per-IP window, the app event rate, the daily quota's UTC day and which
  // previous secrets still verify. `watch`: the watchers of WatchChannelEvents, handed every
  // published event (null: watching is off).
  Api(AppStore& store, ClusterState& cluster, NodeHub& hub, ApiLimits limits = {},
      const common::Clock& clock = common::Clock::Real(), ChannelWatch* watch = nullptr);

  // Per-address admission of one event-sending request (trigger, batch, send to user) from
  // `client_ip`, counted before the request is read: RESOURCE_EXHAUSTED over the per-IP limit.
  // `info` receives the window's figures for X-RateLimit-* headers. gRPC callers skip it.
  absl::Status AdmitRequest(const std::string& client_ip, RateInfo* info);

  // The app named by id or key: NOT_FOUND when unknown, PERMISSION_DENIED when disabled.
  absl::StatusOr<relay::v1::App> ResolveApp(std::string_view app) const;
  // Key + secret or bearer token valid for `app`; UNAUTHENTICATED otherwise.
  absl::Status CheckCredentials(const relay::v1::App& app, const Credentials& credentials);

  // The event-sending operations validate the request, then charge its messages to the app's
  // backend event rate and daily quota (see ChargeMessages), then publish. `rate`, when given,
  // receives the figures of the limit that refused (for X-RateLimit-* headers).
  //
  // `acks`, when given (BeginAcks), collects every command the request queues to a node; the
  // caller answers OK only once it settles OK (AckWait::Seal): the nodes have received the
  // event. Without it, OK means queued to the nodes' streams.
  absl::StatusOr<TriggerResult> Trigger(const relay::v1::App& app,
                                        const relay::v1::TriggerRequest& request,
                                        RateInfo* rate = nullptr,
                                        const std::shared_ptr<AckWait>& acks = nullptr);
  absl::StatusOr<TriggerBatchResult> TriggerBatch(const relay::v1::App& app,
                                                  const relay::v1::TriggerBatchRequest& request,
                                                  RateInfo* rate = nullptr,
                                                  const std::shared_ptr<AckWait>& acks = nullptr);
  absl::StatusOr<ListChannelsResult> ListChannels(
      const relay::v1::App& app, const relay::v1::ListChannelsRequest& request) const;
  absl::StatusOr<ChannelView> GetChannel(const relay::v1::App& app,
                                         const relay::v1::GetChannelRequest& request) const;
  absl::StatusOr<relay::v1::ListPresenceUsersResponse> ListPresenceUsers(
      const relay::v1::App& app, const relay::v1::ListPresenceUsersRequest& request) const;
  absl::Status SendToUser(const relay::v1::App& app, const relay::v1::SendToUserRequest& request,
                          RateInfo* rate = nullptr, const std::shared_ptr<AckWait>& acks = nullptr);
  absl::Status TerminateUserConnections(const relay::v1::App& app,
                                        const relay::v1::TerminateUserConnectionsRequest& request,
                                        const std::shared_ptr<AckWait>& acks = nullptr);
  // A wait for the acks of one event-sending request, taken before anything else is done for
  // it; UNAVAILABLE (Retry-After) when too many requests wait already (nothing is sent then).
  absl::StatusOr<std::shared_ptr<AckWait>> BeginAcks();
  absl::StatusOr<relay::v1::AuthorizeChannelResponse> AuthorizeChannel(
      const relay::v1::App& app, const relay::v1::AuthorizeChannelRequest& request) const;
  absl::StatusOr<relay::v1::AuthenticateUserResponse> AuthenticateUser(
      const relay::v1::App& app, const relay::v1::AuthenticateUserRequest& request) const;

  // The one routing of events to nodes: sends `publish` to every node with interest in its
  // channels, except `origin_node` (the node a client event came from, which delivered it
  // locally already); returns the commands sent. Relayed client events (`origin_node` given)
  // are not counted in publish_commands, which counts the control plane's own commands.
  // `failed`, when given, receives the number of interested nodes the command could not be
  // queued to (their stream ended or overflowed meanwhile).
  // `acks`: see Trigger.
  size_t Route(relay::v1::Publish publish, std::string_view origin_node = {},
               size_t* failed = nullptr, const std::shared_ptr<AckWait>& acks = nullptr);

  // The gate the event-sending operations ask before anything is charged or sent (null: none,
  // as in tests that build an Api alone). Set once, before the API serves.
  void SetRouteGate(RouteGate* gate) { gate_ = gate; }
  // Asked by every operation (ResolveApp) and again just before an event is routed: an error
  // refuses the call with it (a replica that does not lead: UNAVAILABLE with a retry hint).
  // Set once, before the API serves.
  void SetServingCheck(std::function<absl::Status()> check) { serving_ = std::move(check); }
  // Runs `fn` ordered with the cache channel publishes: a publish to a cache channel stores its
  // event and queues it to the nodes in one step, so a subscriber's cache read and reply made in
  // `fn` sees every event queued before and precedes on its node's stream every event queued
  // after (a subscriber is never given an older event than the last one routed).
  void InCacheOrder(const std::function<void()>& fn);

  // Opens a watcher for WatchChannelEvents: the filter is validated as the HTTP API validates
  // channel names (at most 100 exact names; the prefix made of channel name characters), then
  // the app is checked once more after registering, so an app disabled or deleted meanwhile
  // never keeps a watcher (ControlPlane ends the watchers of such an app). `wake`: see
  // ChannelWatcher.
  absl::StatusOr<std::shared_ptr<ChannelWatcher>> Watch(
      const relay::v1::App& app, const relay::v1::WatchChannelEventsRequest& request,
      std::function<void()> wake);
  // Null when watching is off.
  ChannelWatch* watch() const { return watch_; }
  // The lifecycle log behind WatchLifecycleEvents (null: off). Set once, before the API serves.
  void SetLifecycleLog(LifecycleLog* log) { lifecycle_ = log; }
  LifecycleLog* lifecycle() const { return lifecycle_; }
  // Opens a WatchLifecycleEvents watcher: event names and prefix validated (INVALID_ARGUMENT),
  // the cursor checked by the log (OUT_OF_RANGE, INVALID_ARGUMENT), the app checked again after
  // registering, as for Watch.
  absl::StatusOr<std::shared_ptr<LifecycleWatcher>> WatchLifecycle(
      const relay::v1::App& app, const relay::v1::WatchLifecycleEventsRequest& request,
      std::function<void()> wake);

  ApiCounters& counters() { return counters_; }

 private:
  struct Event {
    std::string channel;
    std::string name;
    std::string data;
    std::string socket_id;
  };
  absl::Status ValidateEvent(const relay::v1::App& app, std::string_view name,
                             std::string_view data, std::string_view socket_id) const;
  // The channel's figures for `attrs`, which must apply to it.
  ChannelView Describe(const relay::v1::App& app, const std::string& channel,
                       InfoAttrs attrs) const;
  // Of the attributes an event's `info` asked for, those that apply to `channel` (one `info`
  // covers channels of every kind; cache is never reported for an event).
  static InfoAttrs ForEvent(InfoAttrs asked, std::string_view channel);
  // Charges `messages` validated messages to the app: RESOURCE_EXHAUSTED when its backend event
  // rate or daily quota is used up for now (retry after the reset), PERMISSION_DENIED when the
  // request alone is over the limit (it can never be accepted). The day's count is written to
  // the app store before the call returns, so no restart or crash forgets it.
  absl::Status ChargeMessages(const relay::v1::App& app, uint64_t messages, RateInfo* rate);
  // Delivers an already validated and charged event to a user's connections; UNAVAILABLE when
  // a node's stream ended meanwhile.
  absl::Status DeliverToUser(const relay::v1::App& app, const relay::v1::SendToUserRequest& request,
                             const std::shared_ptr<AckWait>& acks);
  absl::Status Publish(const relay::v1::App& app, const std::vector<std::string>& channels,
                       const std::string& name, const std::string& data,
                       const std::string& socket_id, const std::shared_ptr<AckWait>& acks);
  // OK when every node that may have subscribers of `channels` (server-to-user channels: the
  // user's connections) can be sent to now; UNAVAILABLE with a retry hint otherwise (the route
  // gate is closed for them, or a node's outbox is backlogged). Asked before charging.
  absl::Status CheckRoutable(const relay::v1::App& app, const std::vector<std::string>& channels);
  absl::Status CheckUserRoutable(const relay::v1::App& app, const std::string& user_id);
  // Refuses when one of `nodes` has no stream (it just ended) or is backlogged.
  absl::Status CheckBacklog(const std::vector<std::string>& nodes);

  AppStore& store_;
  ClusterState& cluster_;
  NodeHub& hub_;
  RouteGate* gate_ = nullptr;
  std::function<absl::Status()> serving_;
  LifecycleLog* lifecycle_ = nullptr;
  // Orders cache channel publishes with cache replies (InCacheOrder); cache_seq_ numbers them.
  absl::Mutex cache_mu_;
  uint64_t cache_seq_ ABSL_GUARDED_BY(cache_mu_) = 0;
  ApiCounters counters_;
  ApiLimits limits_;
  const common::Clock& clock_;
  ChannelWatch* const watch_;
  FixedWindow ip_window_;
  FixedWindow app_rate_;
  absl::Mutex usage_mu_;
  std::string usage_day_ ABSL_GUARDED_BY(usage_mu_);
  absl::flat_hash_map<std::string, uint64_t> usage_ ABSL_GUARDED_BY(usage_mu_);
};

}  // namespace relay::controlplane
