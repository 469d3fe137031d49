// File: connection_totals.h
// Tells every data plane how many connections each app has on the other data planes
// (ControlMessage.remote_connections), so a node checks limits.max_connections against the
// cluster, not only itself. Changes are coalesced: Collect() runs every kFlushInterval and sends a
// node only the apps whose value changed for it since the last message; the first message after
// every attach replaces the node's whole view (the snapshot may have changed every total, and a
// restarted control plane knows nothing of what the node holds).
// Thread-safe. Owned by ControlPlane.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/cluster_state.h"
#include "relay/v1/node_link.pb.h"

namespace relay::controlplane {

class ConnectionTotals {
 public:
  static constexpr std::chrono::milliseconds kFlushInterval{100};

  // Apps whose connections changed on some node (Effects::connections_changed).
  void Changed(const std::vector<std::string>& apps);
  // A node (re)attached or detached: its next message is a complete one.
  void Reset(const std::string& node_id);
  // The messages due now for the attached `nodes`, as (node id, message). Call from one thread.
  std::vector<std::pair<std::string, relay::v1::ControlMessage>> Collect(
      const ClusterState& cluster, const std::vector<std::string>& nodes);

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  // Per node that has had its complete message: app -> the value last sent (absent = 0).
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>> sent_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::controlplane
