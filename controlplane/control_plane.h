// File: control_plane.h
// The control plane: owns the app store, the cluster view and the node hub, serves the NodeLink,
// Channels (public) and Admin gRPC services, and decides cluster-wide events (presence members,
// subscription counts, cache replies). The HTTP API is served by http-bridge on top of api().
// Thread-safe. Start() once, Stop() once.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "common/dir_lock.h"
#include "common/metrics.h"
#include "common/node_link_limits.h"
#include "controlplane/api.h"
#include "controlplane/app_store.h"
#include "controlplane/channel_watch.h"
#include "controlplane/cluster_state.h"
#include "controlplane/connection_totals.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/grpc_metrics.h"
#include "controlplane/lifecycle_log.h"
#include "controlplane/node_hub.h"
#include "controlplane/replica.h"
#include "controlplane/route_gate.h"
#include "controlplane/webhooks.h"
#include "transport/http_types.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace relay::controlplane {

struct ControlPlaneOptions {
  std::string host = "127.0.0.1";
  uint16_t grpc_port = 50051;  // 0 picks a free port
  // When set (`internal_grpc_port` > 0, or `internal_grpc_separate` with 0 for a free port), the
  // node link (NodeLink) and the admin API (Admin) are served only on this address, and the
  // public port serves only the public API (Channels). Otherwise all three share `grpc_port`.
  std::string internal_host = "127.0.0.1";
  uint16_t internal_grpc_port = 0;
  bool internal_grpc_separate = false;
  std::string data_dir = "./relay-data";
  // With etcd_endpoints (below) the app store is on etcd too (etcd_backend.h), shared by the
  // replicas under `<etcd_prefix>/v1/`; the data dir still holds the admin token, the node
  // credential file and webhooks.db. How long Start() keeps trying to reach etcd:
  std::chrono::milliseconds etcd_connect_timeout{10000};
  // Created on first start when the store has no app.
  std::string default_app_id = "app-id";
  std::string default_app_key = "app-key";
  std::string default_app_secret = "app-secret";
  NodeHubOptions hub;
  ApiLimits limits;
  // Sends webhook requests; webhooks are off when empty (the binaries pass
  // GuardedHttpPost from webhook_sender.h; tests pass their own).
  HttpPost webhook_post;
  // PEM files; when both are set gRPC (all three services) is served over TLS.
  std::string grpc_tls_cert;
  std::string grpc_tls_key;
  // PEM roots: when set, the node link requires a data plane to present a client certificate
  // signed by one of them (mTLS), besides its node token. Needs grpc_tls_cert/key.
  std::string node_link_client_ca;
  WebhookOptions webhooks;
  // Bounds of the WatchChannelEvents streams (docs/grpc-api.md).
  ChannelWatchOptions watch;
  // The lifecycle log behind WatchLifecycleEvents (docs/grpc-api.md); its `watch` is taken from
  // `watch` above. Off when its retention is 0.
  LifecycleLogOptions lifecycle;
  // Replicas (docs/scaling.md): with etcd endpoints this control plane is one of N replicas that
  // elect one leader through etcd (`<etcd_prefix>/v1/leader`); empty = a single control plane.
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "/relay";
  // host:port this replica proclaims as the leader's node link address for data planes; empty =
  // its internal gRPC host:port.
  std::string advertise_grpc;
  int64_t etcd_lease_ttl_seconds = 2;
};

class ControlPlane : private NodeHub::Handler {
 public:
  explicit ControlPlane(ControlPlaneOptions options);
  ~ControlPlane() override;

  absl::Status Start();
  void Stop();

  uint16_t grpc_port() const { return grpc_port_; }
  // The port serving NodeLink and Admin (== grpc_port() unless they are separate).
  uint16_t internal_grpc_port() const { return internal_grpc_port_; }
  // The credential the in-process data plane presents (valid for this process only, never
  // written anywhere).
  const std::string& in_process_node_token() const { return in_process_node_token_; }
  // A channel to this control plane's gRPC server inside the process (no socket); valid after
  // Start(), for the embedded data plane.
  std::shared_ptr<grpc::Channel> InProcessChannel();
  const std::string& admin_token() const { return admin_token_; }
  // Ready for traffic (GET /ready on the HTTP API port): started, store open, not stopping.
  // Thread-safe, cheap. The hook for replicas (issue #14): a replica that must not take writes
  // answers not ready here, with its role as the reason.
  transport::Readiness Readiness() const;
  // The gRPC health service (grpc.health.v1.Health, "" and each service) reports SERVING only
  // while Readiness() and `check` both hold (`relay`: its embedded data plane). Re-evaluated
  // every 100 ms; call any time, from any thread.
  void AlsoReadyWhen(transport::ReadinessCheck check);
  // True when Start() created the default app (first start).
  bool created_default_app() const { return created_default_app_; }
  Api& api() { return *api_; }
  AppStore& store() { return *store_; }
  // The etcd client when the store is on etcd (options.etcd_endpoints), else null.
  etcd::Client* etcd() { return etcd_.get(); }
  ClusterState& cluster() { return cluster_; }
  NodeHub& hub() { return *hub_; }
  // Null before Start().
  RouteGate* gate() { return gate_.get(); }
  // Null unless replicated (etcd_endpoints set).
  Replica* replica() { return replica_.get(); }
  // Null when webhooks are off.
  Webhooks* webhooks() { return webhooks_.get(); }
  // Null when the lifecycle log is off (or before Start()).
  LifecycleLog* lifecycle() { return lifecycle_.get(); }
  // Adds the control plane's metrics; any thread.
  void WriteMetrics(common::MetricsWriter& w) const;

 private:
  void OnAttach(const std::string& node_id, const relay::v1::NodeHello& hello,
                const relay::v1::NodeSnapshot& snapshot) override;
  void OnNodeMessage(const std::string& node_id, const relay::v1::NodeMessage& msg) override;
  void OnDetach(const std::string& node_id) override;
  void OnDeparted(const std::string& node_id) override;

  void Apply(const Effects& effects) ABSL_EXCLUSIVE_LOCKS_REQUIRED(order_mu_);
  void OnSubscribe(const std::string& node_id, const relay::v1::SubscribeRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(order_mu_);
  void OnClientEvent(const std::string& node_id, const relay::v1::ClientEventUp& event);
  // Forgets cache_miss announcements older than the interval (the map stays bounded by the
  // misses of the last interval).
  void PruneCacheMisses();
  static constexpr int64_t kCacheMissIntervalMs = 5000;
  void OnAppChanged(const relay::v1::App& app, bool removed);
  void Broadcast(const relay::v1::ControlMessage& msg);
  absl::Status LoadOrCreateAdminToken();
  // Creates the default node credential and `<data dir>/node.token` on first start.
  absl::Status CreateDefaultNodeToken();
  std::optional<relay::v1::NodeToken> AuthenticateNode(std::string_view token);
  static constexpr char kInProcessCredential[] = "in-process";
  absl::Status StartServers();
  // Creates etcd_ when options_.etcd_endpoints are set and it is not made yet (the one place
  // it is made; the store and the replica share it).
  absl::Status ConnectEtcd();
  // The app store: SQLite in the data dir, or etcd (retried up to etcd_connect_timeout).
  absl::Status OpenStore();
  // subscription_count events: every change for channels of up to 100 subscribers; above that at
  // most one per 5 s per channel, always ending with the latest value (Pusher's rule).
  void QueueSubscriptionCount(const std::string& app_id, const std::string& channel,
                              uint32_t count);
  void FlushSubscriptionCounts(bool force_all);
  // Sends each node the other nodes' connections per app that changed (ConnectionTotals).
  void FlushConnectionTotals();
  void SendSubscriptionCount(const std::string& app_id, const std::string& channel, uint32_t count);

  // Held from deciding a change of cluster state to handing what it causes (member events,
  // counts, webhooks, acks) to the hub and the webhook queue. Each node's messages are handled on
  // its own gRPC thread; without this, two nodes' changes could be announced in the opposite
  // order to the one in which they were applied (a subscriber told 3, then 2). Taken only at
  // the top of the node handlers, the count flush and the app-change broadcast, never under
  // another lock.
  absl::Mutex order_mu_ ABSL_ACQUIRED_BEFORE(count_mu_);

  struct CountThrottle {
    int64_t last_sent_ms = 0;
    uint32_t pending = 0;
    bool has_pending = false;
  };
  absl::Mutex count_mu_;
  std::map<std::pair<std::string, std::string>, CountThrottle> count_throttle_
      ABSL_GUARDED_BY(count_mu_);

  ControlPlaneOptions options_;
  std::string instance_id_;
  // The etcd client (null when not replicated; see ConnectEtcd). Before everything that uses
  // it (store_, webhooks_, replica_): destroyed last.
  std::unique_ptr<etcd::Client> etcd_;
  std::unique_ptr<AppStore> store_;
  ClusterState cluster_;
  ConnectionTotals totals_;
  std::unique_ptr<NodeHub> hub_;
  // The WatchChannelEvents watchers: fed by api_ (published events) and OnClientEvent.
  std::unique_ptr<ChannelWatch> watch_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<RouteGate> gate_;
  std::unique_ptr<Webhooks> webhooks_;
  // After webhooks_ and store_: destroyed first (its jobs run on the store's writer).
  std::unique_ptr<LifecycleLog> lifecycle_;
  // A webhook event decided: to the webhook outboxes and the lifecycle log.
  void Emit(const std::string& app_id, const WebhookEvent& event);
  // Presence channels whose channel_occupied webhook went out with their first member_added,
  // before the node's subscription count arrived (keeps occupied -> member_added order).
  absl::Mutex announce_mu_;
  std::set<std::pair<std::string, std::string>> announced_ ABSL_GUARDED_BY(announce_mu_);
  std::map<std::pair<std::string, std::string>, int64_t> last_cache_miss_
      ABSL_GUARDED_BY(announce_mu_);
  // Nodes that attached to this control plane at least once (see OnAttach).
  std::set<std::string> attached_before_ ABSL_GUARDED_BY(announce_mu_);
  // The node registry as persisted (AppStore known_nodes), so each change is written once.
  std::set<std::string> known_nodes_ ABSL_GUARDED_BY(announce_mu_);
  // Nodes whose detach under way is a departure (OnDeparted), not a break.
  std::set<std::string> departing_ ABSL_GUARDED_BY(announce_mu_);
  // Forgets nodes the gate declared gone (sweeper).
  void ExpireAbsentNodes();
  void EmitWebhooks(const Effects& effects);
  // Replicas. The etcd client (null when not replicated), made in one place so that the store
  // and the election share it.
  absl::Status OpenEtcd();
  // A compare no key satisfies: the store's fence while this replica cannot lead.
  etcd::Compare NeverHolds() const;
  // Whether this control plane may act on the cluster now: always when not replicated, else
  // only while it leads (Replica::acting).
  bool Acting() const { return !replica_ || replica_->acting(); }
  // Leadership gained: the node registry from etcd, the route gate closed until those nodes
  // re-attach, no leftover of an earlier term.
  absl::Status TakeOver();
  // Leadership lost: every node stream ends; nothing more is sent or decided.
  void StepDown(const absl::Status& why);
  // The node registry: etcd when replicated (fenced), else the app store.
  void RememberNode(const std::string& node_id);
  void ForgetNode(const std::string& node_id);
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<grpc::Service> channels_service_;
  std::unique_ptr<grpc::Service> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> internal_server_;  // null unless NodeLink/Admin are separate
  // Sets the gRPC health of every service on both servers from the readiness (sweeper thread).
  void UpdateHealth();
  common::DirLock dir_lock_;  // held from Start() to Stop(): one server per data dir
  std::atomic<bool> store_open_{false};
  absl::Mutex health_mu_;
  transport::ReadinessCheck also_ready_ ABSL_GUARDED_BY(health_mu_);
  // What the health service says: {routing events ("" and Channels), node link and admin}.
  std::optional<std::pair<bool, bool>> serving_ ABSL_GUARDED_BY(health_mu_);
  std::string admin_token_;
  std::string in_process_node_token_;
  uint16_t grpc_port_ = 0;
  uint16_t internal_grpc_port_ = 0;
  bool created_default_app_ = false;
  std::thread sweeper_;
  absl::Notification stopping_;
  std::atomic<bool> stopped_{false};
  // Client events a node relayed that the app's settings or the node's own state refuse.
  std::atomic<uint64_t> client_events_refused_{0};
  std::atomic<uint64_t> node_attaches_{0};
  std::atomic<uint64_t> node_reattaches_{0};  // attaches of a node that had attached before
  GrpcMetrics grpc_metrics_;
};

}  // namespace relay::controlplane
