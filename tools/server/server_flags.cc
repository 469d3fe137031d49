#include "tools/server/server_flags.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/version.h"
#include "controlplane/webhook_sender.h"

namespace relay::server {

void ListenFlags::Register(common::FlagSet& flags, const std::string& port_help, bool grpc) {
  flags.String("host", &host, "Address to bind to");
  flags.Uint("port", &port, port_help);
  if (grpc) flags.Uint("grpc-port", &grpc_port, "gRPC port (data planes, relayctl, microservices)");
  flags.String("tls-cert", &tls_cert,
               "PEM certificate chain (leaf first): serve --port over TLS (wss://, https://); "
               "reloaded on SIGHUP");
  flags.String("tls-key", &tls_key, "PEM private key for --tls-cert");
}

absl::Status ListenFlags::LoadTls() {
  if (tls_cert.empty() && tls_key.empty()) return absl::OkStatus();
  auto loaded = transport::TlsServerContext::Load(tls_cert, tls_key);
  if (!loaded.ok()) return loaded.status();
  tls = *loaded;
  RELAY_LOG(kInfo, "tls", "serving TLS on --port with ", tls->Describe());
  return absl::OkStatus();
}

void ListenFlags::ReloadTls() const {
  if (!tls) {
    RELAY_LOG(kInfo, "tls", "SIGHUP: no --tls-cert to reload");
    return;
  }
  if (auto st = tls->Reload(); !st.ok()) {
    RELAY_LOG(kError, "tls",
              "SIGHUP: certificate not reloaded, still serving the previous one: ", st.message());
    return;
  }
  RELAY_LOG(kInfo, "tls", "SIGHUP: new connections get ", tls->Describe());
}

absl::Status ListenFlags::Check() const {
  if (port > 65535 || grpc_port > 65535) {
    return absl::InvalidArgumentError("--port and --grpc-port must be at most 65535");
  }
  return absl::OkStatus();
}

void MetricsFlags::Register(common::FlagSet& flags) {
  flags.String("metrics-host", &host,
               "Address of the Prometheus endpoint (GET /metrics; no credentials: keep it on a "
               "private address)");
  flags.Uint("metrics-port", &port,
             "Port of the Prometheus endpoint GET /metrics (0 = off; 9601 is soketi's)");
}

absl::Status MetricsFlags::Check() const {
  if (port > 65535) return absl::InvalidArgumentError("--metrics-port must be at most 65535");
  if (port != 0 && host.empty()) {
    return absl::InvalidArgumentError("--metrics-host must not be empty");
  }
  return absl::OkStatus();
}

ControlPlaneFlags::ControlPlaneFlags()
    : trigger_rate(options.limits.trigger_requests_per_minute),
      max_watchers(options.watch.max_watchers),
      max_watchers_per_app(options.watch.max_watchers_per_app),
      watch_buffer_events(options.watch.buffer_events),
      watch_buffer_bytes(options.watch.buffer_bytes),
      lifecycle_retention_seconds(static_cast<uint64_t>(options.lifecycle.retention.count())),
      lifecycle_max_events_per_app(options.lifecycle.max_events_per_app) {}

void ControlPlaneFlags::RegisterReplicaFlags(common::FlagSet& flags) {
  flags.String("etcd-endpoints", &etcd_endpoints,
               "Run as one of several control plane replicas on this etcd cluster (HOST:PORT of "
               "each member, comma-separated): one leader is elected, the others follow (empty = a "
               "single control plane)");
  flags.String(
      "etcd-prefix", &options.etcd_prefix,
      "Prefix of every key this control plane keeps in etcd (replicas of one cluster share "
      "it)");
  flags.String("advertise-grpc", &options.advertise_grpc,
               "HOST:PORT data planes reach this replica's node link at once it leads (default: "
               "its internal gRPC address)");
  flags.Uint("etcd-lease-ttl", &etcd_lease_ttl,
             "Seconds of the leader's etcd lease: a leader that stops renewing it is replaced "
             "this long after its last renewal");
}

void ControlPlaneFlags::Register(common::FlagSet& flags) {
  flags.String("internal-host", &options.internal_host,
               "Address for --internal-grpc-port (the node link and the admin API)");
  flags.Uint("internal-grpc-port", &internal_grpc_port,
             "Serve the node link and the admin API only on this port (0 = on --grpc-port with "
             "the public API)");
  flags.String("data-dir", &options.data_dir, "Directory for the app store and admin token");
  flags.String("app-id", &options.default_app_id, "Id of the app created on first start");
  flags.String("app-key", &options.default_app_key, "Key of the app created on first start");
  flags.String("app-secret", &options.default_app_secret,
               "Secret of the app created on first start");
  flags.Uint("node-timeout-ms", &node_timeout_ms,
             "A data plane silent for this long is withdrawn from the cluster");
  flags.Uint("ack-timeout-ms", &ack_timeout_ms,
             "An event-sending request whose data planes have not all confirmed its events "
             "after this long is refused with 503 (the event may have reached some of them)");
  flags.Uint("max-ack-waits", &max_ack_waits,
             "Event-sending requests that may wait for the data planes' confirmation at once "
             "(beyond: 503, nothing sent)");
  flags.String("grpc-tls-cert", &options.grpc_tls_cert,
               "PEM certificate chain: serve gRPC over TLS");
  flags.String("grpc-tls-key", &options.grpc_tls_key, "PEM private key for --grpc-tls-cert");
  flags.String("node-link-client-ca", &options.node_link_client_ca,
               "PEM CA certificates: data planes must present a client certificate signed by one "
               "of them to attach (mTLS on the node link, with the node token; needs "
               "--grpc-tls-cert)");
  flags.Uint("trigger-rate-limit", &trigger_rate,
             "HTTP trigger requests per minute per client address (0 = unlimited)");
  flags.String("trusted-proxies", &trusted_proxies,
               "Comma-separated proxy addresses whose X-Forwarded-For is trusted");
  flags.Bool("webhook-allow-link-local", &webhook_allow_link_local,
             "Allow webhook URLs that reach link-local or cloud metadata addresses "
             "(169.254.0.0/16, fe80::/10); refused by default");
  flags.Bool("webhook-allow-self", &webhook_allow_self,
             "Allow webhook URLs that reach this server's own ports (HTTP API, gRPC); refused "
             "by default");
  flags.Uint("max-watchers", &max_watchers,
             "gRPC WatchChannelEvents streams open at once on this control plane (beyond: "
             "UNAVAILABLE)");
  flags.Uint("max-watchers-per-app", &max_watchers_per_app,
             "WatchChannelEvents streams open at once per app (beyond: RESOURCE_EXHAUSTED)");
  flags.Uint("watch-buffer-events", &watch_buffer_events,
             "Events that may wait for one WatchChannelEvents stream; beyond, it is cut as too "
             "slow (RESOURCE_EXHAUSTED)");
  flags.Uint("watch-buffer-bytes", &watch_buffer_bytes,
             "Bytes that may wait for one WatchChannelEvents stream; beyond, it is cut as too "
             "slow (RESOURCE_EXHAUSTED)");
  flags.Uint("lifecycle-retention-seconds", &lifecycle_retention_seconds,
             "Keep lifecycle events (WatchLifecycleEvents, in <data-dir>/webhooks.db) this long "
             "(0 = no lifecycle log or stream)");
  flags.Uint("lifecycle-max-events-per-app", &lifecycle_max_events_per_app,
             "Keep at most this many lifecycle events per app (the oldest are pruned first)");
  if (replicas) RegisterReplicaFlags(flags);
  flags.Bool("console", &console,
             "Serve the web console at /console/ on the HTTP API port (off by default; its API "
             "takes the admin token: expose it only on a trusted network or behind TLS)");
}

absl::Status ControlPlaneFlags::Apply(const ListenFlags& listen) {
  if (auto st = listen.Check(); !st.ok()) return st;
  if (internal_grpc_port > 65535) {
    return absl::InvalidArgumentError("--internal-grpc-port must be at most 65535");
  }
  if (node_timeout_ms == 0) return absl::InvalidArgumentError("--node-timeout-ms must be positive");
  if (ack_timeout_ms == 0 || ack_timeout_ms > 60000) {
    return absl::InvalidArgumentError("--ack-timeout-ms must be between 1 and 60000");
  }
  if (max_ack_waits == 0) return absl::InvalidArgumentError("--max-ack-waits must be positive");
  for (auto [value, name] : {std::pair{max_watchers, "--max-watchers"},
                             std::pair{max_watchers_per_app, "--max-watchers-per-app"},
                             std::pair{watch_buffer_events, "--watch-buffer-events"},
                             std::pair{watch_buffer_bytes, "--watch-buffer-bytes"}}) {
    if (value == 0) return absl::InvalidArgumentError(common::StrCat(name, " must be positive"));
  }
  options.watch.max_watchers = max_watchers;
  options.watch.max_watchers_per_app = max_watchers_per_app;
  options.watch.buffer_events = watch_buffer_events;
  options.watch.buffer_bytes = watch_buffer_bytes;
  if (lifecycle_max_events_per_app == 0) {
    return absl::InvalidArgumentError("--lifecycle-max-events-per-app must be positive");
  }
  if (lifecycle_retention_seconds > 10ull * 365 * 86400) {
    return absl::InvalidArgumentError("--lifecycle-retention-seconds must be at most 10 years");
  }
  options.lifecycle.retention = std::chrono::seconds(lifecycle_retention_seconds);
  options.lifecycle.max_events_per_app = lifecycle_max_events_per_app;
  options.etcd_endpoints.clear();
  for (absl::string_view e : absl::StrSplit(etcd_endpoints, ',', absl::SkipWhitespace())) {
    std::string endpoint(absl::StripAsciiWhitespace(e));
    if (endpoint.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(common::StrCat(
          "--etcd-endpoints: '", endpoint, "' is not HOST:PORT (a comma list of etcd members)"));
    }
    options.etcd_endpoints.push_back(std::move(endpoint));
  }
  if (etcd_lease_ttl < 1 || etcd_lease_ttl > 3600) {
    return absl::InvalidArgumentError("--etcd-lease-ttl must be from 1 to 3600 seconds");
  }
  options.etcd_lease_ttl_seconds = static_cast<int64_t>(etcd_lease_ttl);
  if (options.etcd_prefix.empty() || options.etcd_prefix.front() != '/' ||
      options.etcd_prefix.back() == '/') {
    return absl::InvalidArgumentError(
        "--etcd-prefix must start with '/' and not end with one (e.g. /relay)");
  }
  if (!options.advertise_grpc.empty() && options.advertise_grpc.find(':') == std::string::npos) {
    return absl::InvalidArgumentError("--advertise-grpc must be HOST:PORT");
  }
  if (!options.etcd_endpoints.empty() && options.advertise_grpc.empty()) {
    // The default is the node link's listening address, which data planes elsewhere cannot
    // dial when it is a wildcard.
    const std::string& node_host = internal_grpc_port != 0 ? options.internal_host : listen.host;
    if (node_host == "0.0.0.0" || node_host == "::" || node_host == "[::]" || node_host.empty()) {
      return absl::InvalidArgumentError(common::StrCat(
          "--advertise-grpc HOST:PORT is needed with --etcd-endpoints when the node link listens "
          "on ",
          node_host.empty() ? std::string("every address") : node_host,
          " (data planes are sent to that address when this replica leads)"));
    }
  }
  options.host = listen.host;
  options.grpc_port = static_cast<uint16_t>(listen.grpc_port);
  options.internal_grpc_port = static_cast<uint16_t>(internal_grpc_port);
  options.hub.liveness_timeout = std::chrono::milliseconds(node_timeout_ms);
  options.hub.acks.timeout = std::chrono::milliseconds(ack_timeout_ms);
  options.hub.acks.max_waiting = max_ack_waits;
  options.limits.trigger_requests_per_minute = trigger_rate;
  // The configured ports now, the bound ones (port 0 picks one) once each server is up.
  webhook_targets_ =
      std::make_shared<controlplane::WebhookTargets>(webhook_allow_link_local, webhook_allow_self);
  for (uint64_t p : {listen.port, listen.grpc_port, internal_grpc_port}) {
    if (p != 0) webhook_targets_->AddOwnPort(static_cast<uint16_t>(p));
  }
  options.webhooks.targets = webhook_targets_;
  options.webhook_post = controlplane::GuardedHttpPost(webhook_targets_);
  return absl::OkStatus();
}

std::vector<std::string> ControlPlaneFlags::TrustedProxies() const {
  std::vector<std::string> proxies;
  for (absl::string_view p : absl::StrSplit(trusted_proxies, ',', absl::SkipWhitespace())) {
    proxies.emplace_back(p);
  }
  return proxies;
}

void EtcdStoreFlags::Register(common::FlagSet& flags) {
  flags.String("import-sqlite", &import_sqlite,
               "Copy the SQLite store at this path (relay.db, or a data dir) into etcd "
               "(--etcd-endpoints, --etcd-prefix), print a summary and exit; refused when etcd "
               "already has other apps");
}

absl::Status EtcdStoreFlags::Apply(const controlplane::ControlPlaneOptions& options) const {
  if (!options.etcd_endpoints.empty()) {
    // The etcd client's own parsing, so the flag accepts exactly what it can use.
    auto client = controlplane::etcd::Client::Create(
        controlplane::etcd::ClientOptions{options.etcd_endpoints});
    if (!client.ok()) {
      return absl::InvalidArgumentError(
          common::StrCat("--etcd-endpoints: ", client.status().message()));
    }
  }
  if (!import_sqlite.empty() && options.etcd_endpoints.empty()) {
    return absl::InvalidArgumentError("--import-sqlite needs --etcd-endpoints (where to copy to)");
  }
  return absl::OkStatus();
}

DataPlaneFlags::DataPlaneFlags()
    : capacity(options.capacity),
      max_connections_per_ip(options.max_connections_per_ip),
      max_subscriptions_per_connection(options.max_subscriptions_per_connection),
      subscribe_rate(options.subscribe_rate),
      subscribe_burst(options.subscribe_burst),
      activity_timeout(options.activity_timeout_seconds),
      max_frame_bytes(options.max_frame_bytes),
      drain_window_ms(options.drain_window_ms) {}

void DataPlaneFlags::Register(common::FlagSet& flags) {
  flags.String("node-id", &options.node_id, "This node's id (generated when absent)");
  flags.Uint("shards", &shards, "I/O threads (0 = one per core)");
  flags.Uint("capacity", &capacity,
             "Connections accepted before refusing with 4100 (0 = the open file limit minus 10% "
             "(64 to 1024) kept for gRPC, HTTP, webhooks and SQLite)");
  flags.Uint("max-connections-per-ip", &max_connections_per_ip,
             "Connections from one client address before refusing with 4100 (0 = no cap; behind "
             "a reverse proxy every client has the proxy's address)");
  flags.Uint("max-subscriptions-per-connection", &max_subscriptions_per_connection,
             "Channels one connection may subscribe to; more get pusher:subscription_error "
             "LimitReached 4100 (at least 1)");
  flags.Uint("subscribe-rate", &subscribe_rate,
             "pusher:subscribe requests per second per connection; more get "
             "pusher:subscription_error LimitReached 4301 (0 = no rate limit)");
  flags.Uint("subscribe-burst", &subscribe_burst,
             "pusher:subscribe requests one connection may send at once before --subscribe-rate "
             "applies (at least 1)");
  flags.Uint("activity-timeout", &activity_timeout,
             "Seconds of client silence before the server pings");
  flags.Uint("max-frame-bytes", &max_frame_bytes,
             "Largest inbound frame; larger ones close with 1009 (at least 1024)");
  flags.Uint("drain-window-ms", &drain_window_ms,
             "Window over which clients are closed with 4200 on SIGTERM or drain");
  flags.Bool("permessage-deflate", &options.permessage_deflate,
             "Offer permessage-deflate compression");
}

absl::Status DataPlaneFlags::Apply(const ListenFlags& listen) {
  if (auto st = listen.Check(); !st.ok()) return st;
  if (max_subscriptions_per_connection == 0) {
    return absl::InvalidArgumentError("--max-subscriptions-per-connection must be at least 1");
  }
  if (subscribe_burst == 0)
    return absl::InvalidArgumentError("--subscribe-burst must be at least 1");
  if (activity_timeout == 0 || activity_timeout > 3600) {
    return absl::InvalidArgumentError("--activity-timeout must be 1 to 3600 seconds");
  }
  if (max_frame_bytes < 1024 || max_frame_bytes > 64 * 1024 * 1024) {
    return absl::InvalidArgumentError("--max-frame-bytes must be 1024 to 67108864");
  }
  if (drain_window_ms > 600000) {
    return absl::InvalidArgumentError("--drain-window-ms must be at most 600000");
  }
  options.host = listen.host;
  options.port = static_cast<uint16_t>(listen.port);
  options.tls = listen.tls;
  options.shards = shards;
  options.capacity = capacity;
  options.max_connections_per_ip = max_connections_per_ip;
  options.max_subscriptions_per_connection = max_subscriptions_per_connection;
  options.subscribe_rate = subscribe_rate;
  options.subscribe_burst = subscribe_burst;
  options.activity_timeout_seconds = static_cast<uint32_t>(activity_timeout);
  options.max_frame_bytes = max_frame_bytes;
  options.drain_window_ms = static_cast<uint32_t>(drain_window_ms);
  return absl::OkStatus();
}

void ControlLinkFlags::Register(common::FlagSet& flags, dataplane::DataPlaneOptions& options) {
  flags.String("control-plane", &options.control_plane,
               "The control plane's gRPC address HOST:PORT, or every replica's as a comma list "
               "(the data plane attaches to the one that leads)");
  flags.Bool("control-plane-tls", &options.control_plane_tls, "Dial the control plane with TLS");
  flags.String("control-plane-ca", &options.control_plane_ca,
               "PEM roots trusted for the control plane's certificate (implies TLS)");
  flags.String("control-plane-tls-cert", &options.control_plane_tls_cert,
               "PEM client certificate chain presented to the control plane (mTLS, for "
               "--node-link-client-ca; implies TLS)");
  flags.String("control-plane-tls-key", &options.control_plane_tls_key,
               "PEM private key for --control-plane-tls-cert");
  flags.String("node-token", &options.node_token,
               "Node credential for the control plane (prefer --node-token-file or the "
               "RELAY_NODE_TOKEN environment variable: a command line is visible to every user)");
  flags.String("node-token-file", &node_token_file,
               "File holding the node credential (the control plane's <data-dir>/node.token, or "
               "one made with relayctl node-tokens create)");
  flags.String("advertise", &options.advertised_address,
               "Address clients use to reach this node, reported to the control plane");
}

absl::Status ControlLinkFlags::Apply(dataplane::DataPlaneOptions& options) const {
  // One address, or every control plane replica's (docs/scaling.md).
  for (absl::string_view t : absl::StrSplit(options.control_plane, ',')) {
    if (absl::StripAsciiWhitespace(t).empty()) {
      return absl::InvalidArgumentError(
          common::StrCat("--control-plane: an empty address in '", options.control_plane,
                         "' (HOST:PORT, or a comma list of every replica's)"));
    }
  }
  if (options.control_plane_tls_cert.empty() != options.control_plane_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--control-plane-tls-cert and --control-plane-tls-key must be given together");
  }
  for (const std::string* f : {&options.control_plane_ca, &options.control_plane_tls_cert,
                               &options.control_plane_tls_key}) {
    if (!f->empty() && !std::ifstream(*f).good()) {
      return absl::InvalidArgumentError(common::StrCat("cannot read ", *f));
    }
  }
  if (node_token_file.empty()) return absl::OkStatus();
  auto token = common::ReadSecretFile(node_token_file);
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        common::StrCat("--node-token-file: ", token.status().message()));
  }
  options.node_token = *token;
  return absl::OkStatus();
}

void LogFlags::Register(common::FlagSet& flags) {
  flags.String("log-level", &level, "Least severe log lines written: debug, info, warn or error");
  flags.String("log-format", &format,
               "text (one readable line per event) or json (one JSON object per line: time, "
               "level, component, message and the event's fields)");
}

absl::Status LogFlags::Apply() const {
  common::LogLevel l;
  if (!common::ParseLogLevel(level, &l)) {
    return absl::InvalidArgumentError(
        common::StrCat("--log-level: expected debug, info, warn or error, got '", level, "'"));
  }
  common::LogFormat f;
  if (!common::ParseLogFormat(format, &f)) {
    return absl::InvalidArgumentError(
        common::StrCat("--log-format: expected text or json, got '", format, "'"));
  }
  common::SetLogLevel(l);
  common::SetLogFormat(f);
  return absl::OkStatus();
}

int ParseOrExit(common::FlagSet& flags, int argc, char** argv, const std::string& program) {
  if (common::VersionRequested(argc, argv)) {
    std::cout << common::VersionLine(program) << "\n";
    return 0;
  }
  if (auto st = flags.Parse(argc, argv); !st.ok()) {
    std::cerr << program << ": " << st.message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  return -1;
}

void DrainClients(dataplane::DataPlane& dp, common::ShutdownSignals& signals) {
  dp.Drain(0);
  using Clock = std::chrono::steady_clock;
  // The drain closes the last client at the end of the window; its close handshake may take a
  // little longer (the client answers the close frame, or the session's timeout ends it).
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(dp.options().drain_window_ms + 1000);
  // Polled: the client count is a counter the sessions update, nothing to wait on.
  constexpr std::chrono::milliseconds kPoll(20);
  while (dp.connections() > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      RELAY_LOG(kWarn, "server", dp.connections(),
                " client(s) still open at the end of the drain window; closing them now");
      return;
    }
    if (signals.WaitAtMost(std::min(left, kPoll)) != 0) return;  // a second signal: stop now
  }
}

}  // namespace relay::server
