// relay-dataplane: holds WebSocket connections and speaks Pusher protocol 7 to them.
#include <csignal>
#include <iostream>

#include "common/hangup.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/strings.h"
#include "dataplane/data_plane.h"
#include "tools/server/metrics_server.h"
#include "tools/server/server_flags.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  constexpr char kProgram[] = "relay-dataplane";
  server::ListenFlags listen(6001, 0);
  server::DataPlaneFlags dp_flags;
  server::ControlLinkFlags link_flags;
  server::LogFlags log_flags;
  server::MetricsFlags metrics_flags;
  common::FlagSet flags("relay-dataplane [flags]",
                        "A Relay data plane: WebSocket connections (Pusher protocol 7), attached "
                        "to a control plane over gRPC.");
  listen.Register(flags, "WebSocket port", /*grpc=*/false);
  link_flags.Register(flags, dp_flags.options);
  dp_flags.Register(flags);
  log_flags.Register(flags);
  metrics_flags.Register(flags);
  if (int code = server::ParseOrExit(flags, argc, argv, kProgram); code >= 0) return code;
  absl::Status st = log_flags.Apply();
  if (st.ok()) st = listen.LoadTls();
  if (st.ok()) st = dp_flags.Apply(listen);
  if (st.ok()) st = link_flags.Apply(dp_flags.options);
  if (st.ok()) st = metrics_flags.Check();
  if (!st.ok()) {
    std::cerr << kProgram << ": " << st.message() << "\n";
    return 2;
  }
  const dataplane::DataPlaneOptions& o = dp_flags.options;

  common::RaiseFileLimit();

  common::ShutdownSignals signals;
  // SIGHUP reloads the TLS certificate (before any thread starts: see hangup.h).
  common::HangupSignal hangup([&listen] { listen.ReloadTls(); });

  dataplane::DataPlane dp(o);
  if (auto started = dp.Start(); !started.ok()) {
    std::cerr << kProgram << ": " << started.message() << "\n";
    return 1;
  }
  server::MetricsServer metrics(metrics_flags,
                                [&](common::MetricsWriter& w) { dp.WriteMetrics(w); });
  auto metrics_port = metrics.Start();
  if (!metrics_port.ok()) {
    std::cerr << kProgram << ": " << metrics_port.status().message() << "\n";
    return 1;
  }
  RELAY_LOG(kInfo, "dataplane", "dataplane ready: node ", dp.node_id(), ", WebSocket on ",
            o.tls ? "wss://" : "ws://", o.host, ":", dp.port(), "/app/<key>, control plane ",
            o.control_plane,
            *metrics_port ? common::StrCat(", metrics on http://", metrics_flags.host, ":",
                                           *metrics_port, "/metrics")
                          : std::string());
  int sig = signals.Wait();
  // Graceful: clients are closed with 4200 over the drain window so they reconnect elsewhere.
  if (sig == SIGTERM) server::DrainClients(dp, signals);
  metrics.Stop();
  dp.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
