// relay: the control plane and a data plane in one process (the embedded default). The two still
// talk over the NodeLink gRPC contract on loopback, exactly as separate processes do; the
// WebSocket port also serves the Pusher HTTP API.
#include <csignal>
#include <iostream>

#include "common/strings.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "controlplane/control_plane.h"
#include "dataplane/data_plane.h"
#include "http-bridge/http_api.h"
#include "http-bridge/http_client.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  controlplane::ControlPlaneOptions cpo;
  dataplane::DataPlaneOptions dpo;
  std::string host = "127.0.0.1";
  uint64_t port = 6001, grpc_port = 50051, shards = 0;
  common::FlagSet flags(
      "relay [flags]",
      "Relay, a Pusher Channels compatible realtime server: both planes in one process.\n"
      "WebSocket (ws://HOST:PORT/app/<key>) and the Pusher HTTP API share --port; gRPC (public,\n"
      "admin and data plane link) is on --grpc-port.");
  flags.String("host", &host, "Address to bind to");
  flags.Uint("port", &port, "WebSocket and HTTP API port");
  flags.Uint("grpc-port", &grpc_port, "gRPC port");
  controlplane::InternalGrpcFlags internal_grpc;
  internal_grpc.Register(flags, cpo);
  flags.String("data-dir", &cpo.data_dir, "Directory for the app store and admin token");
  flags.String("app-id", &cpo.default_app_id, "Id of the app created on first start");
  flags.String("app-key", &cpo.default_app_key, "Key of the app created on first start");
  flags.String("app-secret", &cpo.default_app_secret, "Secret of the app created on first start");
  flags.String("node-id", &dpo.node_id, "The embedded data plane's node id");
  flags.Uint("shards", &shards, "I/O threads (0 = one per core)");
  dataplane::ConnectionLimitFlags limits(dpo);
  limits.Register(flags);
  uint64_t trigger_rate = cpo.limits.trigger_requests_per_minute;
  std::string trusted_proxies;
  flags.String("grpc-tls-cert", &cpo.grpc_tls_cert, "PEM certificate chain: serve gRPC over TLS");
  flags.String("grpc-tls-key", &cpo.grpc_tls_key, "PEM private key for --grpc-tls-cert");
  flags.Uint("trigger-rate-limit", &trigger_rate,
             "HTTP trigger requests per minute per client address (0 = unlimited)");
  flags.String("trusted-proxies", &trusted_proxies,
               "Comma-separated proxy addresses whose X-Forwarded-For is trusted");
  controlplane::WebhookTargetFlags webhook_flags;
  webhook_flags.Register(flags);
  if (auto st = flags.Parse(argc, argv); !st.ok()) {
    std::cerr << "relay: " << st.message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (port > 65535 || grpc_port > 65535) {
    std::cerr << "relay: ports must be at most 65535\n";
    return 2;
  }
  cpo.host = host;
  cpo.grpc_port = static_cast<uint16_t>(grpc_port);
  if (std::string error; !internal_grpc.Apply(cpo, &error)) {
    std::cerr << "relay: " << error << "\n";
    return 2;
  }
  dpo.host = host;
  dpo.port = static_cast<uint16_t>(port);
  dpo.shards = shards;
  if (std::string err = limits.Apply(&dpo); !err.empty()) {
    std::cerr << "relay: " << err << "\n";
    return 2;
  }
  if (dpo.node_id.empty()) dpo.node_id = "embedded";

  cpo.limits.trigger_requests_per_minute = trigger_rate;
  // The configured ports now, the bound ones (port 0 picks one) once each server is up.
  auto webhook_targets = webhook_flags.Make({port, grpc_port});
  cpo.webhooks.targets = webhook_targets;
  cpo.webhook_post = http_bridge::GuardedHttpPost(webhook_targets);
  std::vector<std::string> proxies;
  for (absl::string_view p : absl::StrSplit(trusted_proxies, ',', absl::SkipWhitespace())) {
    proxies.emplace_back(p);
  }

  common::RaiseFileLimit();

  common::ShutdownSignals signals;

  controlplane::ControlPlane cp(cpo);
  if (auto st = cp.Start(); !st.ok()) {
    std::cerr << "relay: " << st.message() << "\n";
    // PermissionDenied: an unsafe configuration (the well-known secret on a public address), a
    // usage error like a bad flag.
    return st.code() == absl::StatusCode::kPermissionDenied ? 2 : 1;
  }
  // Same NodeLink contract as a remote data plane, without the loopback socket (so without TLS);
  // the address only names the control plane in the data plane's log.
  dpo.control_plane = common::StrCat(host == "0.0.0.0" ? "127.0.0.1" : host, ":", cp.grpc_port());
  dpo.control_plane_channel = cp.InProcessChannel();
  dpo.node_token = cp.in_process_node_token();
  http_bridge::HttpApi http_api(cp.api(), cp.store(), proxies);
  dataplane::DataPlane dp(dpo, http_api.Handler());
  if (auto st = dp.Start(); !st.ok()) {
    std::cerr << "relay: " << st.message() << "\n";
    return 1;
  }
  webhook_targets->AddOwnPort(cp.grpc_port());
  webhook_targets->AddOwnPort(dp.port());
  if (cp.created_default_app()) {
    std::cerr << "Created the default app: id " << cpo.default_app_id << ", key "
              << cpo.default_app_key << " (secret from --app-secret)\n";
  }
  std::cerr << "Connect with pusher-js: new Pusher('<app key>', {wsHost: '" << host
            << "', wsPort: " << dp.port()
            << ", forceTLS: false, enabledTransports: ['ws'], cluster: 'mt1'})\n"
            << "Trigger with the pusher SDK: new Pusher({appId, key, secret, host: '" << host
            << "', port: '" << dp.port() << "', useTLS: false})\n";
  RELAY_LOG(kInfo, "relay", "relay ready: ws://", host, ":", dp.port(), "/app/<key>, HTTP API on ",
            host, ":", dp.port(), ", gRPC on ", host, ":", cp.grpc_port(),
            cp.internal_grpc_port() == cp.grpc_port()
                ? std::string()
                : common::StrCat(", node link and admin gRPC on ", cpo.internal_host, ":",
                                 cp.internal_grpc_port()),
            ", data dir ", cpo.data_dir);
  int sig = signals.Wait();
  RELAY_LOG(kInfo, "relay", "signal ", sig, ": shutting down");
  if (sig == SIGTERM) {
    dp.Drain(0);
    signals.WaitAtMost(std::chrono::milliseconds(dpo.drain_window_ms + 1000));
  }
  dp.Stop();
  cp.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
