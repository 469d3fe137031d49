// File: api.h
// The public operations of Relay (trigger, channel queries, users, channel/user auth) with their
// validation, limits and auth rules, implemented once. The gRPC Channels service and the HTTP API
// (http-bridge) are both thin translations onto this class.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "controlplane/app_store.h"
#include "controlplane/cluster_state.h"
#include "controlplane/limiter.h"
#include "controlplane/node_hub.h"
#include "relay/v1/public.pb.h"

namespace relay::controlplane {

// How a caller proved it may act for an app (other than an HTTP HMAC signature, which the
// http-bridge verifies against AppStore::AcceptedSecrets).
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
};

struct ApiLimits {
  // Trigger requests per client IP per minute (0 = unlimited).
  uint64_t trigger_requests_per_minute = 300;
};

class Api {
 public:
  Api(AppStore& store, ClusterState& cluster, NodeHub& hub, ApiLimits limits = {});

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
  absl::StatusOr<relay::v1::TriggerResponse> Trigger(const relay::v1::App& app,
                                                     const relay::v1::TriggerRequest& request,
                                                     RateInfo* rate = nullptr);
  absl::StatusOr<relay::v1::TriggerBatchResponse> TriggerBatch(
      const relay::v1::App& app, const relay::v1::TriggerBatchRequest& request,
      RateInfo* rate = nullptr);
  absl::StatusOr<relay::v1::ListChannelsResponse> ListChannels(
      const relay::v1::App& app, const relay::v1::ListChannelsRequest& request) const;
  absl::StatusOr<relay::v1::ChannelInfo> GetChannel(
      const relay::v1::App& app, const relay::v1::GetChannelRequest& request) const;
  absl::StatusOr<relay::v1::ListPresenceUsersResponse> ListPresenceUsers(
      const relay::v1::App& app, const relay::v1::ListPresenceUsersRequest& request) const;
  absl::Status SendToUser(const relay::v1::App& app, const relay::v1::SendToUserRequest& request,
                          RateInfo* rate = nullptr);
  absl::Status TerminateUserConnections(
      const relay::v1::App& app, const relay::v1::TerminateUserConnectionsRequest& request);
  absl::StatusOr<relay::v1::AuthorizeChannelResponse> AuthorizeChannel(
      const relay::v1::App& app, const relay::v1::AuthorizeChannelRequest& request) const;
  absl::StatusOr<relay::v1::AuthenticateUserResponse> AuthenticateUser(
      const relay::v1::App& app, const relay::v1::AuthenticateUserRequest& request) const;

  // Sends `publish` to every node with interest in its channels; returns the commands sent.
  size_t Route(relay::v1::Publish publish);

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
  absl::StatusOr<relay::v1::ChannelInfo> Describe(const relay::v1::App& app,
                                                  const std::string& channel,
                                                  std::string_view info) const;
  // Charges `messages` validated messages to the app: RESOURCE_EXHAUSTED when its backend event
  // rate or daily quota is used up for now (retry after the reset), PERMISSION_DENIED when the
  // request alone is over the limit (it can never be accepted). The day's count is written to
  // the app store before the call returns, so no restart or crash forgets it.
  absl::Status ChargeMessages(const relay::v1::App& app, uint64_t messages, RateInfo* rate);
  // Delivers an already validated and charged event to a user's connections.
  void DeliverToUser(const relay::v1::App& app, const relay::v1::SendToUserRequest& request);
  void Publish(const relay::v1::App& app, const std::vector<std::string>& channels,
               const std::string& name, const std::string& data, const std::string& socket_id);

  AppStore& store_;
  ClusterState& cluster_;
  NodeHub& hub_;
  ApiCounters counters_;
  ApiLimits limits_;
  FixedWindow ip_window_;
  FixedWindow app_rate_;
  absl::Mutex usage_mu_;
  std::string usage_day_ ABSL_GUARDED_BY(usage_mu_);
  absl::flat_hash_map<std::string, uint64_t> usage_ ABSL_GUARDED_BY(usage_mu_);
};

}  // namespace relay::controlplane
