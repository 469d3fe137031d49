// File: node_state.h
// What this data plane reports to the control plane: node-level channel subscription counts,
// presence sockets, signed-in sockets and connections per app. Shards update it on subscription
// changes (never per message); each change is sent up at once, in order, while the link is
// attached. On every (re)attach Attach() sends the complete snapshot and only then resumes
// deltas, so the control plane's view is exactly this state.
// Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/node_link.pb.h"

namespace relay::dataplane {

// Counters shared by every shard (relaxed atomics).
struct NodeCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> messages_in{0};
  std::atomic<uint64_t> messages_out{0};
  std::atomic<uint64_t> slow_consumers_dropped{0};
  std::atomic<uint64_t> protocol_errors{0};
};

class NodeState {
 public:
  // Sends one message up the link; returns its sequence number, 0 when not attached.
  using Uplink = std::function<uint64_t(relay::v1::NodeMessage)>;

  // Counts one more (`delta` +1) or one fewer (-1) subscriber of a channel on this node. When the
  // node had no subscriber of the channel before, returns the seq of the delta that tells the
  // control plane: publishes reach this node only once the control plane has acknowledged it.
  // Returns 0 otherwise (or when detached).
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

  // The link attached: sends the snapshot through `uplink` and starts forwarding deltas.
  void Attach(Uplink uplink, const relay::v1::NodeLoad& load);
  void Detach();
  bool attached() const;

  uint64_t channels() const;
  uint64_t AppConnections(const std::string& app_id) const;

 private:
  uint64_t Emit(relay::v1::StateDelta delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Uplink uplink_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t> channels_
      ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, relay::v1::PresenceSocket>
      presence_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, relay::v1::SignedInSocket> signed_in_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> app_connections_ ABSL_GUARDED_BY(mu_);
  // Subscribe requests sent up and not answered yet, by request id.
  absl::flat_hash_map<uint64_t, relay::v1::SubscribeRequest> outstanding_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::dataplane
