// relay-dataplane: holds WebSocket connections and speaks Pusher protocol 7 to them.
#include <csignal>
#include <iostream>

#include "common/flags.h"
#include "common/io_pool.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "dataplane/data_plane.h"

namespace {

int Run(int argc, char** argv) {
  using namespace relay;
  dataplane::DataPlaneOptions o;
  std::string host = o.host;
  uint64_t port = o.port, shards = 0, activity = o.activity_timeout_seconds,
           max_frame = o.max_frame_bytes, drain_window = o.drain_window_ms;
  bool deflate = false;
  common::FlagSet flags("relay-dataplane [flags]",
                        "A Relay data plane: WebSocket connections (Pusher protocol 7), attached "
                        "to a control plane over gRPC.");
  flags.String("host", &host, "Address to bind the WebSocket listener to");
  flags.Uint("port", &port, "WebSocket port");
  flags.String("control-plane", &o.control_plane, "The control plane's gRPC address HOST:PORT");
  flags.Bool("control-plane-tls", &o.control_plane_tls, "Dial the control plane with TLS");
  flags.String("control-plane-ca", &o.control_plane_ca,
               "PEM roots trusted for the control plane's certificate (implies TLS)");
  std::string node_token_file;
  flags.String("node-token", &o.node_token,
               "Node credential for the control plane (prefer --node-token-file or the "
               "RELAY_NODE_TOKEN environment variable: a command line is visible to every user)");
  flags.String("node-token-file", &node_token_file,
               "File holding the node credential (the control plane's <data-dir>/node.token, or "
               "one made with relayctl node-tokens create)");
  flags.String("node-id", &o.node_id, "This node's id (generated when absent)");
  flags.String("advertise", &o.advertised_address,
               "Address clients use to reach this node, reported to the control plane");
  flags.Uint("shards", &shards, "I/O threads (0 = one per core)");
  dataplane::ConnectionLimitFlags limits(o);
  limits.Register(flags);
  flags.Uint("activity-timeout", &activity, "Seconds of client silence before the server pings");
  flags.Uint("max-frame-bytes", &max_frame, "Largest inbound frame; larger ones close with 1009");
  flags.Uint("drain-window-ms", &drain_window,
             "Window over which clients are closed with 4200 on SIGTERM or drain");
  flags.Bool("permessage-deflate", &deflate, "Offer permessage-deflate compression");
  if (auto st = flags.Parse(argc, argv); !st.ok()) {
    std::cerr << "relay-dataplane: " << st.message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (port > 65535 || activity == 0 || max_frame < 1024) {
    std::cerr << "relay-dataplane: --port must be at most 65535, --activity-timeout positive, "
                 "--max-frame-bytes at least 1024\n";
    return 2;
  }
  if (!node_token_file.empty()) {
    auto token = common::ReadSecretFile(node_token_file);
    if (!token.ok()) {
      std::cerr << "relay-dataplane: --node-token-file: " << token.status().message() << "\n";
      return 2;
    }
    o.node_token = *token;
  }
  o.host = host;
  o.port = static_cast<uint16_t>(port);
  o.shards = shards;
  if (std::string err = limits.Apply(&o); !err.empty()) {
    std::cerr << "relay-dataplane: " << err << "\n";
    return 2;
  }
  o.activity_timeout_seconds = static_cast<uint32_t>(activity);
  o.max_frame_bytes = max_frame;
  o.drain_window_ms = static_cast<uint32_t>(drain_window);
  o.permessage_deflate = deflate;

  common::RaiseFileLimit();

  common::ShutdownSignals signals;

  dataplane::DataPlane dp(o);
  if (auto st = dp.Start(); !st.ok()) {
    std::cerr << "relay-dataplane: " << st.message() << "\n";
    return 1;
  }
  RELAY_LOG(kInfo, "dataplane", "dataplane ready: node ", dp.node_id(), ", WebSocket on ws://",
            host, ":", dp.port(), "/app/<key>, control plane ", o.control_plane);
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
