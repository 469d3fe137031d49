// relay-controlplane: apps, credentials, cluster state, the gRPC APIs and the HTTP API.
#include <iostream>
#include <optional>

#include "common/hangup.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/strings.h"
#include "console/console.h"
#include "controlplane/control_plane.h"
#include "controlplane/store_import.h"
#include "http-bridge/http_api.h"
#include "tools/server/metrics_server.h"
#include "tools/server/server_flags.h"
#include "transport/http_server.h"

namespace {

// --import-sqlite: copies an SQLite store into etcd once and exits (docs/scaling.md).
int ImportSqlite(const std::string& path, const relay::controlplane::ControlPlaneOptions& options) {
  using namespace relay;
  constexpr char kProgram[] = "relay-controlplane";
  auto client =
      controlplane::etcd::Client::Create(controlplane::etcd::ClientOptions{options.etcd_endpoints});
  if (!client.ok()) {
    std::cerr << kProgram << ": " << client.status().message() << "\n";
    return 2;
  }
  auto summary = controlplane::ImportSqliteStore(path, **client, options.etcd_prefix);
  if (!summary.ok()) {
    std::cerr << kProgram << ": import of " << path << " failed: " << summary.status().message()
              << "\n";
    return 1;
  }
  const std::string prefix = options.etcd_prefix.empty() ? "/" : options.etcd_prefix;
  if (summary->already_imported) {
    std::cout << "etcd prefix " << prefix << " already holds the " << summary->apps
              << " app(s) and " << summary->tokens << " API token(s) of " << path
              << "; nothing to do\n";
    return 0;
  }
  std::cout << "imported " << path << " into etcd prefix " << prefix << ": " << summary->apps
            << " app(s), " << summary->tokens << " API token(s), " << summary->node_tokens
            << " node credential(s), " << summary->usage_counts << " daily usage count(s), "
            << summary->nodes << " node(s) of the node registry, " << summary->webhooks
            << " webhook endpoint(s) with " << summary->webhook_events << " undelivered event(s)\n";
  return 0;
}

int Run(int argc, char** argv) {
  using namespace relay;
  constexpr char kProgram[] = "relay-controlplane";
  server::ListenFlags listen(6002, 50051);
  server::ControlPlaneFlags cp_flags;
  cp_flags.replicas = true;
  server::EtcdStoreFlags etcd_flags;
  server::LogFlags log_flags;
  server::MetricsFlags metrics_flags;
  common::FlagSet flags("relay-controlplane [flags]",
                        "The Relay control plane: apps and credentials, cluster-wide state, the "
                        "gRPC APIs (NodeLink, Channels, Admin) and the Pusher HTTP API.");
  listen.Register(flags, "HTTP API port", /*grpc=*/true);
  cp_flags.Register(flags);
  etcd_flags.Register(flags);
  log_flags.Register(flags);
  metrics_flags.Register(flags);
  if (int code = server::ParseOrExit(flags, argc, argv, kProgram); code >= 0) return code;
  absl::Status st = log_flags.Apply();
  if (st.ok()) st = listen.LoadTls();
  if (st.ok()) st = cp_flags.Apply(listen);
  if (st.ok()) st = etcd_flags.Apply(cp_flags.options);
  if (st.ok()) st = metrics_flags.Check();
  if (!st.ok()) {
    std::cerr << kProgram << ": " << st.message() << "\n";
    return 2;
  }
  const controlplane::ControlPlaneOptions& options = cp_flags.options;
  if (!etcd_flags.import_sqlite.empty()) return ImportSqlite(etcd_flags.import_sqlite, options);

  common::ShutdownSignals signals;
  // SIGHUP reloads the TLS certificate (before any thread starts: see hangup.h).
  common::HangupSignal hangup([&listen] { listen.ReloadTls(); });

  controlplane::ControlPlane cp(options);
  if (auto st = cp.Start(); !st.ok()) {
    std::cerr << kProgram << ": " << st.message() << "\n";
    // PermissionDenied: an unsafe configuration (the well-known secret on a public address), a
    // usage error like a bad flag.
    return st.code() == absl::StatusCode::kPermissionDenied ? 2 : 1;
  }
  common::IoPool pool(2);
  http_bridge::HttpApi http_api(cp.api(), cp_flags.TrustedProxies());
  transport::HttpServerOptions http_options{
      .host = listen.host, .port = static_cast<uint16_t>(listen.port), .tls = listen.tls};
  http_options.readiness = [&cp] { return cp.Readiness(); };
  std::optional<console::Console> web_console;
  if (cp_flags.console) web_console.emplace(cp);
  transport::HttpServer http(
      std::move(http_options), pool,
      web_console ? web_console->Wrap(http_api.Handler()) : http_api.Handler());
  auto bound = http.Start();
  if (!bound.ok()) {
    std::cerr << kProgram << ": " << bound.status().message() << "\n";
    return 1;
  }
  cp_flags.webhook_targets()->AddOwnPort(cp.grpc_port());
  cp_flags.webhook_targets()->AddOwnPort(cp.internal_grpc_port());
  cp_flags.webhook_targets()->AddOwnPort(*bound);
  pool.Start("cp-http");
  server::MetricsServer metrics(metrics_flags, [&](common::MetricsWriter& w) {
    cp.WriteMetrics(w);
    http_api.WriteMetrics(w);
  });
  auto metrics_port = metrics.Start();
  if (!metrics_port.ok()) {
    std::cerr << kProgram << ": " << metrics_port.status().message() << "\n";
    return 1;
  }
  RELAY_LOG(kInfo, "controlplane", "controlplane ready: HTTP API on ", listen.tls ? "https://" : "",
            listen.host, ":", *bound, ", gRPC on ", listen.host, ":", cp.grpc_port(),
            cp.internal_grpc_port() == cp.grpc_port()
                ? std::string()
                : common::StrCat(", node link and admin gRPC on ", options.internal_host, ":",
                                 cp.internal_grpc_port()),
            web_console ? common::StrCat(", web console on ", listen.tls ? "https://" : "http://",
                                         listen.host, ":", *bound, "/console/")
                        : std::string(),
            ", data dir ", options.data_dir,
            options.etcd_endpoints.empty()
                ? std::string()
                : common::StrCat(", store on etcd prefix ", options.etcd_prefix),
            *metrics_port ? common::StrCat(", metrics on http://", metrics_flags.host, ":",
                                           *metrics_port, "/metrics")
                          : std::string());
  int sig = signals.Wait();
  RELAY_LOG(kInfo, "controlplane", "signal ", sig, ": shutting down");
  metrics.Stop();
  http.StopAccepting();
  cp.Stop();
  pool.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
