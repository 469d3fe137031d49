// File: server_flags.h
// The one definition of the flags Relay's three servers share, so relay, relay-controlplane and
// relay-dataplane cannot drift apart: each binary registers the groups it runs (relay: listen +
// control plane + data plane; relay-controlplane: listen + control plane; relay-dataplane:
// listen + data plane + control link) and applies them to the planes' options. The libraries
// themselves take plain option structs and know nothing about flags.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/flags.h"
#include "common/shutdown.h"
#include "controlplane/control_plane.h"
#include "controlplane/webhook_targets.h"
#include "dataplane/data_plane.h"
#include "transport/tls.h"

namespace relay::server {

// --host, --port, --grpc-port: where the binary listens; --tls-cert/--tls-key: TLS on --port.
struct ListenFlags {
  std::string host = "127.0.0.1";
  uint64_t port = 0;
  uint64_t grpc_port = 0;
  std::string tls_cert;
  std::string tls_key;
  // Loaded by LoadTls() when --tls-cert/--tls-key are given; the planes' options take it.
  std::shared_ptr<transport::TlsServerContext> tls;

  // `port_help` says what the port serves; `grpc` = false for binaries without a gRPC server.
  ListenFlags(uint64_t default_port, uint64_t default_grpc_port)
      : port(default_port), grpc_port(default_grpc_port) {}
  void Register(common::FlagSet& flags, const std::string& port_help, bool grpc);
  absl::Status Check() const;
  // Loads the certificate and key (call before the Apply()s of the other groups); an error
  // names the flag and the file.
  absl::Status LoadTls();
  // Reloads the certificate and key (on SIGHUP): logs the new certificate, or the error and that
  // the old one stays in use.
  void ReloadTls() const;
};

// What a control plane needs: its store, default app, internal gRPC, TLS, limits, webhooks.
struct ControlPlaneFlags {
  controlplane::ControlPlaneOptions options;
  uint64_t internal_grpc_port = 0;
  uint64_t node_timeout_ms = 15000;
  // How long an event-sending request waits for the data planes' acks, and how many may wait.
  uint64_t ack_timeout_ms = 2000;
  uint64_t max_ack_waits = 10000;
  uint64_t trigger_rate = 0;
  std::string trusted_proxies;
  bool webhook_allow_link_local = false;
  bool webhook_allow_self = false;
  // WatchChannelEvents bounds (controlplane::ChannelWatchOptions).
  uint64_t max_watchers = 0;
  uint64_t max_watchers_per_app = 0;
  uint64_t watch_buffer_events = 0;
  uint64_t watch_buffer_bytes = 0;
  // The lifecycle log of WatchLifecycleEvents (controlplane::LifecycleLogOptions).
  uint64_t lifecycle_retention_seconds = 0;
  uint64_t lifecycle_max_events_per_app = 0;
  // --console: the web console under /console/ on the HTTP API port (console/, docs/console.md).
  bool console = false;
  // Replicas (docs/scaling.md): registered only when `replicas` is set before Register()
  // (relay-controlplane; the one-process relay has no replicas). --etcd-endpoints as given (a
  // comma list) and --etcd-lease-ttl.
  bool replicas = false;
  std::string etcd_endpoints;
  uint64_t etcd_lease_ttl = 2;

  ControlPlaneFlags();
  void Register(common::FlagSet& flags);
  // Checks the values and builds the control plane's options for `listen`. The webhook target
  // guard is created here (webhook_targets()); add the bound ports to it once servers are up.
  absl::Status Apply(const ListenFlags& listen);

  const std::shared_ptr<controlplane::WebhookTargets>& webhook_targets() const {
    return webhook_targets_;
  }
  // --trusted-proxies as a list.
  std::vector<std::string> TrustedProxies() const;

 private:
  void RegisterReplicaFlags(common::FlagSet& flags);
  std::shared_ptr<controlplane::WebhookTargets> webhook_targets_;
};

// relay-controlplane's store on etcd (docs/scaling.md "Store on etcd"): --import-sqlite (copy an
// SQLite store into etcd once, then exit). --etcd-endpoints and --etcd-prefix are
// ControlPlaneFlags' (replicas); Apply also checks each endpoint the way the etcd client parses it.
struct EtcdStoreFlags {
  std::string import_sqlite;

  void Register(common::FlagSet& flags);
  absl::Status Apply(const controlplane::ControlPlaneOptions& options) const;
};

// What a data plane needs for its clients: shards, limits, timeouts, compression, drain.
struct DataPlaneFlags {
  dataplane::DataPlaneOptions options;
  uint64_t shards = 0;
  uint64_t capacity = 0;
  uint64_t max_connections_per_ip = 0;
  uint64_t max_subscriptions_per_connection = 0;
  uint64_t subscribe_rate = 0;
  uint64_t subscribe_burst = 0;
  uint64_t activity_timeout = 0;
  uint64_t max_frame_bytes = 0;
  uint64_t drain_window_ms = 0;

  DataPlaneFlags();
  void Register(common::FlagSet& flags);
  absl::Status Apply(const ListenFlags& listen);
};

// How a separate data plane reaches its control plane.
struct ControlLinkFlags {
  std::string node_token_file;
  void Register(common::FlagSet& flags, dataplane::DataPlaneOptions& options);
  absl::Status Apply(dataplane::DataPlaneOptions& options) const;
};

// --log-level and --log-format: every server binary. Their environment variables
// (RELAY_LOG_LEVEL, RELAY_LOG_FORMAT) work as for every flag.
struct LogFlags {
  std::string level = "info";
  std::string format = "text";

  void Register(common::FlagSet& flags);
  // Checks the values and configures the process's logger (common/log.h).
  absl::Status Apply() const;
  bool json() const { return format == "json"; }
};

// --metrics-host, --metrics-port: the Prometheus endpoint (GET /metrics on its own listener,
// never behind app credentials; off unless a port is given). See docs/metrics.md.
struct MetricsFlags {
  std::string host = "127.0.0.1";
  uint64_t port = 0;  // 0 = no metrics listener
  void Register(common::FlagSet& flags);
  absl::Status Check() const;
  bool enabled() const { return port != 0; }
};

// Parses `flags`; returns -1 to go on, or the exit code (0 after --help or --version, 2 on a
// usage error, with the message on stderr prefixed by `program`).
int ParseOrExit(common::FlagSet& flags, int argc, char** argv, const std::string& program);

// SIGTERM on a binary that holds clients: drains `dp` (clients closed with 4200 over its drain
// window, new WebSocket handshakes refused with HTTP 503) and returns as soon as no client
// remains, at the latest a second after the window (for the last close handshakes), or at once
// when another signal arrives (stop now). The caller stops the planes next.
void DrainClients(dataplane::DataPlane& dp, common::ShutdownSignals& signals);

}  // namespace relay::server
