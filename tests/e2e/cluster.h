// File: cluster.h
// An in-process cluster for end-to-end tests: a real control plane and data planes on
// 127.0.0.1 with free ports, wired through the real gRPC NodeLink exactly like the binaries.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/control_plane.h"
#include "dataplane/data_plane.h"
#include "http-bridge/http_api.h"
#include "tests/e2e/ws_client.h"

namespace relay::testutil {

class Cluster {
 public:
  // `nodes` data planes; the first also serves the HTTP API (like `relay`).
  explicit Cluster(int nodes = 1, dataplane::DataPlaneOptions dp_options = {});
  ~Cluster();

  controlplane::ControlPlane& cp() { return *cp_; }
  // The control plane's default node credential (<data dir>/node.token).
  std::string NodeToken() const;
  dataplane::DataPlane& node(int i) { return *nodes_[i]; }
  uint16_t port(int i = 0) { return nodes_[i]->port(); }
  relay::v1::App app();

  // Stops the control plane and starts a new one on the same port and data dir.
  void RestartControlPlane();
  // Waits until every data plane has attached at least `attaches` times.
  bool WaitAttached(uint64_t attaches = 1);

  // Connects to node `i` as app `key` and reads connection_established.
  std::unique_ptr<WsClient> Client(int i = 0, const std::string& key = "app-key");
  // Sends a correctly signed pusher:subscribe without waiting for the answer.
  void SendSubscribe(WsClient& c, const std::string& channel, const std::string& channel_data = "");
  // Subscribes and waits for subscription_succeeded; returns its frame ("" on failure).
  std::string Subscribe(WsClient& c, const std::string& channel,
                        const std::string& channel_data = "");
  // Publishes through the public API (the same path as HTTP and gRPC triggers).
  absl::Status Trigger(const std::string& channel, const std::string& event,
                       const std::string& data, const std::string& socket_id = "");

 private:
  void StartControlPlane(uint16_t grpc_port);

  std::filesystem::path dir_;
  std::unique_ptr<controlplane::ControlPlane> cp_;
  std::unique_ptr<http_bridge::HttpApi> http_;
  std::vector<std::unique_ptr<dataplane::DataPlane>> nodes_;
};

}  // namespace relay::testutil
