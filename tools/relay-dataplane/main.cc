// relay-dataplane: holds WebSocket connections and speaks Pusher protocol 7 to them.
#include <csignal>
#include <iostream>

#include "common/hangup.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "dataplane/data_plane.h"
#include "tools/server/server_flags.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  constexpr char kProgram[] = "relay-dataplane";
  server::ListenFlags listen(6001, 0);
  server::DataPlaneFlags dp_flags;
  server::ControlLinkFlags link_flags;
  common::FlagSet flags("relay-dataplane [flags]",
                        "A Relay data plane: WebSocket connections (Pusher protocol 7), attached "
                        "to a control plane over gRPC.");
  listen.Register(flags, "WebSocket port", /*grpc=*/false);
  link_flags.Register(flags, dp_flags.options);
  dp_flags.Register(flags);
  if (int code = server::ParseOrExit(flags, argc, argv, kProgram); code >= 0) return code;
  absl::Status st = listen.LoadTls();
  if (st.ok()) st = dp_flags.Apply(listen);
  if (st.ok()) st = link_flags.Apply(dp_flags.options);
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
  RELAY_LOG(kInfo, "dataplane", "dataplane ready: node ", dp.node_id(), ", WebSocket on ",
            o.tls ? "wss://" : "ws://", o.host, ":", dp.port(), "/app/<key>, control plane ",
            o.control_plane);
  int sig = signals.Wait();
  if (sig == SIGTERM) {
    // Graceful: clients are closed with 4200 over the drain window so they reconnect elsewhere.
    dp.Drain(0);
    signals.WaitAtMost(std::chrono::milliseconds(o.drain_window_ms + 1000));
  }
  dp.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
