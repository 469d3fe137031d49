// File: data_plane.h
// The data plane: WebSocket connections sharded over one io_context per core, the Pusher
// protocol, and the control link. Publishes arrive from the control plane; subscriptions,
// presence and sign-ins go up to it.
// Start() once, Drain()/Stop() from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/io_pool.h"
#include "dataplane/app_table.h"
#include "dataplane/control_link.h"
#include "dataplane/node_state.h"
#include "dataplane/shard.h"
#include "dataplane/ws_conn.h"
#include "http-bridge/http_server.h"

namespace relay::dataplane {

struct DataPlaneOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 6001;  // 0 picks a free port
  std::string control_plane = "127.0.0.1:50051";
  bool control_plane_tls = false;
  std::string control_plane_ca;  // PEM roots for the control plane's TLS certificate
  std::shared_ptr<grpc::Channel> control_plane_channel;  // overrides control_plane when set
  std::string node_token;       // node credential presented on the node link (bearer token)
  std::string node_id;          // generated when empty
  std::string advertised_address;  // host:port clients use; defaults to host:port
  size_t shards = 0;            // 0 = one per core
  uint64_t capacity = 0;        // connections before 4100; 0 = unlimited
  uint32_t activity_timeout_seconds = 120;
  uint32_t pong_timeout_seconds = 30;
  size_t max_frame_bytes = 64 * 1024;      // inbound frames beyond this close with 1009
  size_t max_queue_bytes = 4 * 1024 * 1024;  // per connection write queue
  size_t max_queue_frames = 4096;
  bool permessage_deflate = false;
  uint32_t drain_window_ms = 10000;
  std::chrono::milliseconds heartbeat_interval{5000};
};

class DataPlane {
 public:
  // `http_fallback` answers plain HTTP requests on the WebSocket port (the HTTP API in the
  // one-process `relay`); without it they get 404.
  explicit DataPlane(DataPlaneOptions options, http_bridge::HttpHandler http_fallback = nullptr);
  ~DataPlane();

  absl::Status Start();
  // Stops accepting and closes clients with 4200 over `window_ms` (0 = the configured window).
  void Drain(uint32_t window_ms);
  void Stop();

  uint16_t port() const { return port_; }
  const std::string& node_id() const { return options_.node_id; }
  bool attached() const { return state_.attached(); }
  uint64_t attaches() const { return link_ ? link_->attaches() : 0; }

  // For sessions.
  const DataPlaneOptions& options() const { return options_; }
  const WsLimits& ws_limits() const { return ws_limits_; }
  AppTable& apps() { return apps_; }
  NodeState& state() { return state_; }
  NodeCounters& counters() { return counters_; }
  bool draining() const { return draining_.load(); }
  std::string NextSocketId();
  // Posts a delivery to every shard.
  void DeliverToAll(std::shared_ptr<const Delivery> delivery);

 private:
  void OnCommand(const relay::v1::ControlMessage& msg);
  void OnUpgrade(boost::beast::tcp_stream stream, http_bridge::BeastRequest request,
                 std::string leftover);
  relay::v1::NodeLoad Load();
  // Answers the subscribe requests a broken stream left unanswered (presence: 503).
  void AnswerUnanswered();

  DataPlaneOptions options_;
  WsLimits ws_limits_;
  http_bridge::HttpHandler http_fallback_;
  common::IoPool pool_;
  std::vector<std::unique_ptr<Shard>> shards_;
  AppTable apps_;
  NodeState state_;
  NodeCounters counters_;
  std::unique_ptr<http_bridge::HttpServer> http_;
  std::unique_ptr<ControlLink> link_;
  uint16_t port_ = 0;
  uint32_t socket_prefix_ = 0;
  std::atomic<uint64_t> socket_counter_{0};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> last_ack_{0};
  std::atomic<uint64_t> posted_ack_{0};  // the last ack posted to the shards
  std::atomic<bool> stopped_{false};
};

}  // namespace relay::dataplane
