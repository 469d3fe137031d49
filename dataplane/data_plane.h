// File: data_plane.h
// The data plane: WebSocket connections sharded over one io_context per core, the Pusher
// protocol, and the control link. Publishes arrive from the control plane; subscriptions,
// presence and sign-ins go up to it.
// Start() once, Drain()/Stop() from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/io_pool.h"
#include "common/metrics.h"
#include "dataplane/app_table.h"
#include "dataplane/control_link.h"
#include "dataplane/node_state.h"
#include "dataplane/shard.h"
#include "transport/http_server.h"
#include "transport/ws_conn.h"

namespace relay::dataplane {

struct DataPlaneOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 6001;  // 0 picks a free port
  std::string control_plane = "127.0.0.1:50051";
  bool control_plane_tls = false;
  std::string control_plane_ca;  // PEM roots for the control plane's TLS certificate
  // PEM client certificate and key for the node link (mTLS, --node-link-client-ca)
  std::string control_plane_tls_cert;
  std::string control_plane_tls_key;
  std::shared_ptr<grpc::Channel> control_plane_channel;  // overrides control_plane when set
  std::string node_token;          // node credential presented on the node link (bearer token)
  std::string node_id;             // generated when empty
  std::string advertised_address;  // host:port clients use; defaults to host:port
  size_t shards = 0;               // 0 = one per core
  // Connections before 4100; 0 = derived from the open file limit (DefaultCapacity()).
  uint64_t capacity = 0;
  // Connections from one client address before 4100; 0 = no per-address cap (the default:
  // behind a reverse proxy every client has the proxy's address).
  uint64_t max_connections_per_ip = 0;
  // Channels one connection may be subscribed to (or waiting on); more are refused with
  // pusher:subscription_error LimitReached 4100. Never unlimited.
  uint64_t max_subscriptions_per_connection = 1000;
  // pusher:subscribe requests per second and connection (token bucket of `subscribe_burst`);
  // more are refused with LimitReached 4301. 0 = no rate limit.
  uint64_t subscribe_rate = 100;
  uint64_t subscribe_burst = 1000;  // a reconnect resubscribes every channel at once
  uint32_t activity_timeout_seconds = 120;
  uint32_t pong_timeout_seconds = 30;
  size_t max_frame_bytes = 64 * 1024;        // inbound frames beyond this close with 1009
  size_t max_queue_bytes = 4 * 1024 * 1024;  // per connection write queue
  size_t max_queue_frames = 4096;
  bool permessage_deflate = false;
  uint32_t drain_window_ms = 10000;
  // When set, the client port serves wss:// (and https:// for the HTTP API in `relay`) only.
  std::shared_ptr<transport::TlsServerContext> tls;
  // Commands from the control plane waiting to run on each shard; at the bound the control link
  // stops reading the node link stream until the shard catches up (backpressure, no loss).
  InboxLimits shard_inbox;
  std::chrono::milliseconds heartbeat_interval{5000};
  // Also has to be ready for this node to be (the embedded control plane in `relay`).
  transport::ReadinessCheck also_ready;
};

// The open file limit (RLIMIT_NOFILE) minus a reserve for what else the process opens: gRPC,
// HTTP API and webhook connections, SQLite, logs. 0 when the limit is infinite or unknown.
uint64_t DefaultCapacity();

class DataPlane {
 public:
  // `http_fallback` answers plain HTTP requests on the WebSocket port (the HTTP API in the
  // one-process `relay`); without it they get 404.
  explicit DataPlane(DataPlaneOptions options, transport::HttpHandler http_fallback = nullptr);
  ~DataPlane();

  absl::Status Start();
  // SIGTERM: DrainClients() for good (no undrain); the caller stops the plane once clients are
  // gone.
  void Drain(uint32_t window_ms);
  // What the control plane's drain command does: closes clients with 4200 over `window_ms`
  // (0 = the configured window) and refuses new WebSocket handshakes with HTTP 503 and
  // Retry-After, while the port keeps answering HTTP (the API, /health, /ready = 503).
  void DrainClients(uint32_t window_ms);
  // Ends DrainClients(): clients are accepted again. No effect after Drain().
  void Undrain();
  void Stop();

  uint16_t port() const { return port_; }
  const std::string& node_id() const { return options_.node_id; }
  bool attached() const { return state_.attached(); }
  // Ready for clients: attached to the control plane (welcomed, snapshot sent) and not
  // draining (GET /ready, and the gRPC health of `relay`). Thread-safe, cheap.
  transport::Readiness Readiness() const;
  // Client connections open now (drained ones included until their close completes).
  uint64_t connections() const { return counters_.connections.load(); }
  uint64_t attaches() const { return link_ ? link_->attaches() : 0; }

  // For sessions.
  const DataPlaneOptions& options() const { return options_; }
  // `app` as this node serves it: disabled when its secret is the well-known default and the
  // node listens on a non-loopback address.
  relay::v1::App Guarded(relay::v1::App app) const;
  // Counts a connection from `address` against max_connections_per_ip; false (nothing
  // counted) when the address is at the cap. ReleaseAddress() undoes a true.
  bool AcquireAddress(const std::string& address);
  void ReleaseAddress(const std::string& address);
  const transport::WsLimits& ws_limits() const { return ws_limits_; }
  AppTable& apps() { return apps_; }
  NodeState& state() { return state_; }
  NodeCounters& counters() { return counters_; }
  bool draining() const { return draining_.load(); }
  std::string NextSocketId();
  // Connections cut as slow consumers so far (summed over the shards).
  uint64_t slow_consumers_cut() const;
  // Adds this node's metrics (the shards' counters summed now); any thread.
  void WriteMetrics(common::MetricsWriter& w) const;
  // Apps with their own `app` label value in relay_app_connections; the others are summed as
  // app="_other", so a node with thousands of apps still exports a bounded number of series.
  static constexpr size_t kMaxAppLabels = 20;

  // Posts a delivery to every shard.
  void DeliverToAll(std::shared_ptr<const Delivery> delivery);

 private:
  // Apps already reported as refused for the well-known secret (Guarded logs each once).
  mutable absl::Mutex warned_mu_;
  mutable std::set<std::string> warned_apps_ ABSL_GUARDED_BY(warned_mu_);
  void OnCommand(const relay::v1::ControlMessage& msg);
  void OnUpgrade(size_t context, transport::ClientStream stream, transport::BeastRequest request,
                 std::string leftover);
  relay::v1::NodeLoad Load();
  // For the control link: false when every shard has room for more commands; otherwise runs
  // `resume` once (on a shard thread) when they all have, and returns true.
  bool WaitForRoom(std::function<void()> resume);
  // Answers the subscribe requests a broken stream left unanswered (presence: 503).
  void AnswerUnanswered();

  DataPlaneOptions options_;
  transport::WsLimits ws_limits_;
  transport::HttpHandler http_fallback_;
  common::IoPool pool_;
  std::vector<std::unique_ptr<Shard>> shards_;
  AppTable apps_;
  NodeState state_;
  NodeCounters counters_;
  std::unique_ptr<transport::HttpServer> http_;
  std::unique_ptr<ControlLink> link_;
  uint16_t port_ = 0;
  uint32_t socket_prefix_ = 0;
  std::atomic<uint64_t> socket_counter_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> final_drain_{false};  // Drain() ran: no undrain
  std::atomic<uint64_t> last_ack_{0};
  std::atomic<uint64_t> posted_ack_{0};  // the last ack posted to the shards
  std::atomic<bool> stopped_{false};
  // Set once link_ is assigned: HTTP threads answer /ready before Start() has finished.
  std::atomic<bool> linked_{false};
  std::mutex addresses_mu_;
  absl::flat_hash_map<std::string, uint64_t> addresses_;  // connections per client address
};

}  // namespace relay::dataplane
