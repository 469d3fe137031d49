// relay-controlplane: apps, credentials, cluster state, the gRPC APIs and the HTTP API.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/strings.h"
#include "controlplane/control_plane.h"
#include "http-bridge/http_api.h"
#include "http-bridge/http_client.h"
#include "http-bridge/http_server.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  controlplane::ControlPlaneOptions options;
  std::string host = options.host;
  uint64_t port = 6002, grpc_port = options.grpc_port, liveness_ms = 15000;
  common::FlagSet flags("relay-controlplane [flags]",
                        "The Relay control plane: apps and credentials, cluster-wide state, the "
                        "gRPC APIs (NodeLink, Channels, Admin) and the Pusher HTTP API.");
  flags.String("host", &host, "Address to bind the HTTP API and gRPC to");
  flags.Uint("port", &port, "HTTP API port");
  flags.Uint("grpc-port", &grpc_port, "gRPC port (data planes, relayctl, microservices)");
  controlplane::InternalGrpcFlags internal_grpc;
  internal_grpc.Register(flags, options);
  flags.String("data-dir", &options.data_dir, "Directory for the app store and admin token");
  flags.String("app-id", &options.default_app_id, "Id of the app created on first start");
  flags.String("app-key", &options.default_app_key, "Key of the app created on first start");
  flags.String("app-secret", &options.default_app_secret,
               "Secret of the app created on first start");
  flags.Uint("node-timeout-ms", &liveness_ms,
             "A data plane silent for this long is withdrawn from the cluster");
  uint64_t trigger_rate = options.limits.trigger_requests_per_minute;
  std::string trusted_proxies;
  flags.String("grpc-tls-cert", &options.grpc_tls_cert, "PEM certificate chain: serve gRPC over TLS");
  flags.String("grpc-tls-key", &options.grpc_tls_key, "PEM private key for --grpc-tls-cert");
  flags.Uint("trigger-rate-limit", &trigger_rate,
             "HTTP trigger requests per minute per client address (0 = unlimited)");
  flags.String("trusted-proxies", &trusted_proxies,
               "Comma-separated proxy addresses whose X-Forwarded-For is trusted");
  controlplane::WebhookTargetFlags webhook_flags;
  webhook_flags.Register(flags);
  if (auto st = flags.Parse(argc, argv); !st.ok()) {
    std::cerr << "relay-controlplane: " << st.message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (port > 65535 || grpc_port > 65535) {
    std::cerr << "relay-controlplane: ports must be at most 65535\n";
    return 2;
  }
  options.host = host;
  options.grpc_port = static_cast<uint16_t>(grpc_port);
  if (std::string error; !internal_grpc.Apply(options, &error)) {
    std::cerr << "relay-controlplane: " << error << "\n";
    return 2;
  }
  options.hub.liveness_timeout = std::chrono::milliseconds(liveness_ms);

  options.limits.trigger_requests_per_minute = trigger_rate;
  // The configured ports now, the bound ones (port 0 picks one) once each server is up.
  auto webhook_targets = webhook_flags.Make({port, grpc_port});
  options.webhooks.targets = webhook_targets;
  options.webhook_post = http_bridge::GuardedHttpPost(webhook_targets);
  std::vector<std::string> proxies;
  for (absl::string_view p : absl::StrSplit(trusted_proxies, ',', absl::SkipWhitespace())) {
    proxies.emplace_back(p);
  }

  common::ShutdownSignals signals;

  controlplane::ControlPlane cp(options);
  if (auto st = cp.Start(); !st.ok()) {
    std::cerr << "relay-controlplane: " << st.message() << "\n";
    // PermissionDenied: an unsafe configuration (the well-known secret on a public address), a
    // usage error like a bad flag.
    return st.code() == absl::StatusCode::kPermissionDenied ? 2 : 1;
  }
  common::IoPool pool(2);
  http_bridge::HttpApi http_api(cp.api(), cp.store(), proxies);
  http_bridge::HttpServer http({host, static_cast<uint16_t>(port)}, pool, http_api.Handler());
  auto bound = http.Start();
  if (!bound.ok()) {
    std::cerr << "relay-controlplane: " << bound.status().message() << "\n";
    return 1;
  }
  webhook_targets->AddOwnPort(cp.grpc_port());
  webhook_targets->AddOwnPort(*bound);
  pool.Start("cp-http");
  RELAY_LOG(kInfo, "controlplane", "controlplane ready: HTTP API on ", host, ":", *bound,
            ", gRPC on ", host, ":", cp.grpc_port(),
            cp.internal_grpc_port() == cp.grpc_port()
                ? std::string()
                : common::StrCat(", node link and admin gRPC on ", options.internal_host, ":",
                                 cp.internal_grpc_port()),
            ", data dir ", options.data_dir);
  int sig = signals.Wait();
  RELAY_LOG(kInfo, "controlplane", "signal ", sig, ": shutting down");
  http.StopAccepting();
  cp.Stop();
  pool.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
