// relay: the control plane and a data plane in one process (the embedded default). The two still
// talk over the NodeLink gRPC contract, exactly as separate processes do (in-process, without a
// socket); the WebSocket port also serves the Pusher HTTP API.
#include <csignal>
#include <iostream>
#include <optional>

#include "common/hangup.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/strings.h"
#include "console/console.h"
#include "controlplane/control_plane.h"
#include "dataplane/data_plane.h"
#include "http-bridge/http_api.h"
#include "tools/server/metrics_server.h"
#include "tools/server/server_flags.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  constexpr char kProgram[] = "relay";
  server::ListenFlags listen(6001, 50051);
  server::ControlPlaneFlags cp_flags;
  server::DataPlaneFlags dp_flags;
  server::LogFlags log_flags;
  server::MetricsFlags metrics_flags;
  common::FlagSet flags(
      "relay [flags]",
      "Relay, a Pusher Channels compatible realtime server: both planes in one process.\n"
      "WebSocket (ws://HOST:PORT/app/<key>) and the Pusher HTTP API share --port; gRPC (public,\n"
      "admin and data plane link) is on --grpc-port.");
  listen.Register(flags, "WebSocket and HTTP API port", /*grpc=*/true);
  cp_flags.Register(flags);
  dp_flags.Register(flags);
  log_flags.Register(flags);
  metrics_flags.Register(flags);
  if (int code = server::ParseOrExit(flags, argc, argv, kProgram); code >= 0) return code;
  absl::Status st = log_flags.Apply();
  if (st.ok()) st = listen.LoadTls();
  if (st.ok()) st = cp_flags.Apply(listen);
  if (st.ok()) st = dp_flags.Apply(listen);
  if (st.ok()) st = metrics_flags.Check();
  if (!st.ok()) {
    std::cerr << kProgram << ": " << st.message() << "\n";
    return 2;
  }
  const controlplane::ControlPlaneOptions& cpo = cp_flags.options;
  dataplane::DataPlaneOptions& dpo = dp_flags.options;
  if (dpo.node_id.empty()) dpo.node_id = "embedded";

  common::RaiseFileLimit();

  common::ShutdownSignals signals;
  // SIGHUP reloads the TLS certificate (before any thread starts: see hangup.h).
  common::HangupSignal hangup([&listen] { listen.ReloadTls(); });

  controlplane::ControlPlane cp(cpo);
  if (auto started = cp.Start(); !started.ok()) {
    std::cerr << kProgram << ": " << started.message() << "\n";
    // PermissionDenied: an unsafe configuration (the well-known secret on a public address), a
    // usage error like a bad flag.
    return started.code() == absl::StatusCode::kPermissionDenied ? 2 : 1;
  }
  // Same NodeLink contract as a remote data plane, without the loopback socket (so without TLS);
  // the address only names the control plane in the data plane's log.
  dpo.control_plane =
      common::StrCat(listen.host == "0.0.0.0" ? "127.0.0.1" : listen.host, ":", cp.grpc_port());
  dpo.control_plane_channel = cp.InProcessChannel();
  dpo.node_token = cp.in_process_node_token();
  http_bridge::HttpApi http_api(cp.api(), cp_flags.TrustedProxies());
  // The one port answers /ready for the process: ready when both planes are.
  dpo.also_ready = [&cp] { return cp.Readiness(); };
  std::optional<console::Console> web_console;
  if (cp_flags.console) web_console.emplace(cp);
  dataplane::DataPlane dp(dpo,
                          web_console ? web_console->Wrap(http_api.Handler()) : http_api.Handler());
  if (auto started = dp.Start(); !started.ok()) {
    std::cerr << kProgram << ": " << started.message() << "\n";
    return 1;
  }
  // Until the AlsoReadyWhen(nullptr) below, which comes before dp's end.
  cp.AlsoReadyWhen([&dp] { return dp.Readiness(); });
  cp_flags.webhook_targets()->AddOwnPort(cp.grpc_port());
  cp_flags.webhook_targets()->AddOwnPort(cp.internal_grpc_port());
  cp_flags.webhook_targets()->AddOwnPort(dp.port());
  server::MetricsServer metrics(metrics_flags, [&](common::MetricsWriter& w) {
    dp.WriteMetrics(w);
    cp.WriteMetrics(w);
    http_api.WriteMetrics(w);
  });
  auto metrics_port = metrics.Start();
  if (!metrics_port.ok()) {
    std::cerr << kProgram << ": " << metrics_port.status().message() << "\n";
    return 1;
  }
  if (cp.created_default_app()) {
    RELAY_LOG(kInfo, "relay", "created the default app: id ", cpo.default_app_id, ", key ",
              cpo.default_app_key, " (secret from --app-secret)");
  }
  const std::string& host = listen.host;
  // The connection hints are for a person at a terminal; a JSON log stays JSON.
  const bool tls = listen.tls != nullptr;
  if (!log_flags.json())
    std::cerr << "Connect with pusher-js: new Pusher('<app key>', {wsHost: '" << host
              << (tls ? "', wssPort: " : "', wsPort: ") << dp.port()
              << (tls ? ", forceTLS: true" : ", forceTLS: false")
              << ", enabledTransports: ['ws'], cluster: 'mt1'})\n"
              << "Trigger with the pusher SDK: new Pusher({appId, key, secret, host: '" << host
              << "', port: '" << dp.port()
              << (tls ? "', useTLS: true})\n" : "', useTLS: false})\n");
  RELAY_LOG(kInfo, "relay", "relay ready: ", tls ? "wss://" : "ws://", host, ":", dp.port(),
            "/app/<key>, HTTP API on ", tls ? "https://" : "", host, ":", dp.port(), ", gRPC on ",
            host, ":", cp.grpc_port(),
            cp.internal_grpc_port() == cp.grpc_port()
                ? std::string()
                : common::StrCat(", node link and admin gRPC on ", cpo.internal_host, ":",
                                 cp.internal_grpc_port()),
            web_console ? common::StrCat(", web console on ", tls ? "https://" : "http://", host,
                                         ":", dp.port(), "/console/")
                        : std::string(),
            ", data dir ", cpo.data_dir,
            *metrics_port ? common::StrCat(", metrics on http://", metrics_flags.host, ":",
                                           *metrics_port, "/metrics")
                          : std::string());
  int sig = signals.Wait();
  RELAY_LOG(kInfo, "relay", "signal ", sig, ": shutting down");
  if (sig == SIGTERM) server::DrainClients(dp, signals);
  cp.AlsoReadyWhen(nullptr);  // dp goes first
  metrics.Stop();
  dp.Stop();
  cp.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
