// File: node_state.h
// What this data plane reports to the control plane: node-level channel subscription counts,
// presence sockets, signed-in sockets and connections per app. Shards update it on subscription
// changes (never per message); each change is queued on the link at once, in order, while it is
// attached, and the link merges the deltas queued behind a write in flight (UplinkQueue). On
// every (re)attach Attach() sends the complete snapshot and only then resumes deltas, so the
// control plane's view is exactly this state. It also keeps what the control plane reports about
// the other nodes' connections per app, for cluster-wide connection limits.
// Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/node_link.pb.h"

namespace relay::dataplane {

// Counters shared by every shard (relaxed atomics), none of them counted per message: what is
// lives in each shard's ShardMetrics.
struct NodeCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> protocol_errors{0};
};

class NodeState {
 public:
  // The link, in two halves: `push` queues one message (called under NodeState's lock, so
  // messages keep the order of the changes) and returns the seq of the message that carries it,
  // 0 when the stream is gone; `flush` starts writing what is queued and is called after the
  // lock is released, so no lock is held while gRPC runs.
  struct Uplink {
    std::function<uint64_t(relay::v1::NodeMessage)> push;
    std::function<void()> flush;
  };

  // Counts one more (`delta` +1) or one fewer (-1) subscriber of a channel on this node. While
  // the control plane has not acknowledged the message that made this node interested in the
  // channel (the node's first subscriber, or the snapshot after an attach), returns that
  // message's seq for every new subscriber: publishes reach this node only once the control
  // plane has acknowledged it. Returns 0 otherwise (or when detached).
  uint64_t ChannelChanged(const std::string& app_id, const std::string& channel, int delta);
  void PresenceJoined(const relay::v1::PresenceSocket& socket);
  void PresenceLeft(const relay::v1::PresenceSocket& socket);
  void SignedIn(const relay::v1::SignedInSocket& socket);
  void SignedOut(const relay::v1::SignedInSocket& socket);
  void ConnectionChanged(const std::string& app_id, int delta);
  // Sends a message that is not state (subscribe request, client event), in order with deltas.
  // A subscribe request stays outstanding until Answered().
  bool SendUp(relay::v1::NodeMessage msg);
  // The control plane answered subscribe request `request_id`.
  void Answered(uint64_t request_id);
  // Subscribe requests sent on a stream that ended unanswered (the control plane will never
  // answer them); returns them once and forgets them. Call after the link detached.
  std::vector<relay::v1::SubscribeRequest> TakeUnanswered();
  // The control plane has applied every message up to `ack` on the current stream.
  void Acked(uint64_t ack);
  // The control plane's count of the app's connections on the other nodes.
  void SetRemoteConnections(const relay::v1::RemoteConnections& remote);

  // The link attached: sends the snapshot through `uplink` and starts forwarding deltas.
  void Attach(Uplink uplink, const relay::v1::NodeLoad& load);
  // The snapshot Attach sends, in parts of at most about `part_bytes`.
  std::vector<relay::v1::NodeMessage> SnapshotPartsForTest(size_t part_bytes) const;
  void Detach();
  bool attached() const;

  uint64_t channels() const;
  // Connections of the app on this node.
  uint64_t AppConnections(const std::string& app_id) const;
  // Every app with connections on this node, and how many (for /metrics).
  std::vector<std::pair<std::string, uint64_t>> AppConnectionCounts() const;
  // Connections of the app across the cluster, for `limits.max_connections`: this node's live
  // count plus the other nodes' as the control plane last reported them (pushed at most every
  // 100 ms, so simultaneous connects on different nodes can overshoot the limit by what those
  // nodes accept within that window). While the link is down the last report is kept.
  uint64_t ClusterAppConnections(const std::string& app_id) const;

 private:
  struct Channel {
    uint32_t count = 0;
    uint64_t interest_seq = 0;  // the message that made the node interested (see ChannelChanged)
  };
  // Queues `msg` on the link; returns its seq (0 when detached) and, in `flush`, the link to
  // flush once the lock is released.
  uint64_t Emit(relay::v1::NodeMessage msg, std::shared_ptr<const Uplink>* flush)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t EmitDelta(relay::v1::StateDelta delta, std::shared_ptr<const Uplink>* flush)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Flush(const std::shared_ptr<const Uplink>& link);
  // The snapshot Attach sends, split into messages of about `part_bytes` each (every part but the
  // last has `more` set; the last carries `load`).
  std::vector<relay::v1::NodeMessage> SnapshotParts(const relay::v1::NodeLoad& load,
                                                    size_t part_bytes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Runs `change` under the lock, queues the delta it returns, and flushes after the lock.
  void Report(absl::FunctionRef<relay::v1::StateDelta()> change);

  mutable absl::Mutex mu_;
  std::shared_ptr<const Uplink> uplink_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> acked_{0};
  absl::flat_hash_map<std::pair<std::string, std::string>, Channel> channels_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, relay::v1::PresenceSocket> presence_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, relay::v1::SignedInSocket> signed_in_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> app_connections_ ABSL_GUARDED_BY(mu_);
  // Subscribe requests sent up and not answered yet, by request id.
  absl::flat_hash_map<uint64_t, relay::v1::SubscribeRequest> outstanding_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> remote_connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::dataplane
