// File: control_link.h
// The data plane end of relay.v1.NodeLink.Attach. Dials the control plane, sends hello and the
// snapshot (through NodeState), forwards state up and hands every command down to the handler.
// Re-attaches with exponential backoff and jitter whenever the stream ends; client connections
// are never affected by the link's state.
// Replicas (docs/scaling.md): `target` may list every control plane replica (comma-separated).
// Attempts go round the list; a follower refuses the attach with UNAVAILABLE and trailing
// metadata `relay-leader: <address>`, and the next attempt goes straight there. A leader that
// promised to speak (Welcome.silence_timeout_ms) and falls silent for longer is left.
// Thread-safe. Owned by DataPlane.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "dataplane/node_state.h"
#include "relay/v1/node_link.pb.h"

namespace grpc {
class Channel;
class Status;
}  // namespace grpc

namespace relay::dataplane {

class LinkStream;

struct ControlLinkOptions {
  std::string target;    // host:port of the control plane's gRPC (or a comma list of replicas)
  bool tls = false;      // dial with TLS
  std::string tls_ca;    // PEM file of trusted roots for TLS ("" = the system's)
  std::string tls_cert;  // PEM files of a client certificate (mTLS; implies TLS)
  std::string tls_key;
  std::string token;  // node credential, sent as `authorization: Bearer <token>`
  // When set, dialled instead of `target` (the one-process `relay` passes the control plane's
  // in-process channel: the same NodeLink service without a loopback socket).
  std::shared_ptr<grpc::Channel> channel;
  relay::v1::NodeHello hello;
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
};

class ControlLink {
 public:
  // Called on gRPC threads for every command, in stream order. Must not block.
  using CommandHandler = std::function<void(const relay::v1::ControlMessage&)>;
  // Current load figures for heartbeats and snapshots.
  using LoadFn = std::function<relay::v1::NodeLoad()>;

  // Asked after each command: false to read the next one now; true when the handler's queues
  // are full, promising to call `resume` (from any thread) once they have room. Meanwhile the
  // stream is not read, so gRPC flow control pushes back to the control plane.
  using WaitForRoomFn = std::function<bool(std::function<void()> resume)>;

  // `on_detach` runs (on a gRPC thread) whenever a stream ends.
  ControlLink(ControlLinkOptions options, NodeState& state, CommandHandler handler, LoadFn load,
              std::function<void()> on_detach = nullptr, WaitForRoomFn wait_for_room = nullptr);
  ~ControlLink();

  void Start();
  void Stop();
  // Number of successful attaches so far, counted once the handler has applied the welcome.
  uint64_t attaches() const;
  // True while the current stream has been welcomed (the control plane accepted this node and
  // its snapshot) and has not ended: what readiness means for a data plane.
  bool welcomed() const;

 private:
  friend class LinkStream;
  void Run();
  // `leader`: the `relay-leader` trailer of a refused attach (nullopt when absent).
  void OnStreamDone(bool welcomed, const grpc::Status& status, std::optional<std::string> leader,
                    const std::string& target);
  // Where the next attempt goes: the leader a follower named, else the next replica of the list.
  std::string NextTarget();
  // Skips `target` for kSuspectFor (it stopped answering; Run()'s thread only).
  void Suspect(const std::string& target);
  static constexpr std::chrono::milliseconds kSuspectFor{5000};
  void OnWelcome(const relay::v1::Welcome& welcome);
  void CancelCurrent();
  // Stop(): sends a goodbye on a welcomed stream and waits (at most 1 s) for its end.
  void SayGoodbye();

  ControlLinkOptions options_;
  std::vector<std::string> targets_;  // options_.target split at commas
  size_t next_target_ = 0;            // Run()'s thread only
  std::string suspect_;               // Run()'s thread only (Suspect)
  std::chrono::steady_clock::time_point suspect_until_;
  NodeState& state_;
  CommandHandler handler_;
  LoadFn load_;
  std::function<void()> on_detach_;
  WaitForRoomFn wait_for_room_;
  std::thread thread_;
  absl::Notification stop_;
  std::atomic<bool> leaving_{false};  // a goodbye was sent: the stream's end is not a loss
  mutable absl::Mutex mu_;
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t attaches_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::milliseconds heartbeat_interval_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<LinkStream> current_ ABSL_GUARDED_BY(mu_);
  // The last refusal logged (credential or rules), so a refused node logs each reason once.
  std::string last_refusal_ ABSL_GUARDED_BY(mu_);
  // The leader named by the last refused attach ("" = none): the next attempt goes there.
  std::string redirect_ ABSL_GUARDED_BY(mu_);
  // A follower replica answered since the last wait: the replicas are up and electing (or
  // without quorum), so the backoff stays short (Run()).
  bool follower_answered_ ABSL_GUARDED_BY(mu_) = false;
  // Welcome.silence_timeout_ms of the current stream (0: the control plane promised nothing).
  std::chrono::milliseconds silence_timeout_ ABSL_GUARDED_BY(mu_){0};
};

}  // namespace relay::dataplane
