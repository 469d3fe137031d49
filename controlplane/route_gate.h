// File: route_gate.h
// Decides whether the control plane can route an event-sending request (publish, batch,
// send-to-user, terminate) right now, so that the APIs never answer 2xx for an event some
// connected subscriber cannot receive. Two windows close the gate:
//  - after a restart, every data plane the node registry (AppStore) says was attached is
//    "awaited": until each has re-attached (snapshot applied) or has been declared gone after the
//    node timeout, the control plane does not know who subscribes to what, so everything is
//    refused;
//  - a node whose stream ended without a goodbye is "detached" until it re-attaches or times out:
//    requests for the channels and users it last reported are refused (the others route).
// Refusals are UNAVAILABLE with a Retry-After hint (RetryAfterSeconds). Time comes from `clock`.
// Thread-safe; Admit* are cheap when no node is awaited or detached (one atomic load).
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controlplane/cluster_state.h"

namespace relay::controlplane {

// Why a request was refused (metrics label).
enum class GateRefusal { kReattaching = 0, kNodeDetached = 1, kNodeBacklog = 2 };
inline constexpr int kGateRefusalKinds = 3;

// An UNAVAILABLE status carrying the seconds a caller should wait before retrying; the HTTP API
// turns it into `Retry-After`.
absl::Status RetryLaterError(std::string message, int64_t retry_after_s);
// The hint RetryLaterError put in `status`, or 0 when it has none.
int64_t RetryAfterSeconds(const absl::Status& status);

class RouteGate {
 public:
  RouteGate(std::chrono::milliseconds node_timeout, const common::Clock& clock);

  // At startup: the nodes that were attached when the previous process stopped.
  void ExpectNodes(const std::vector<std::string>& node_ids);
  // A replica elected leader (replica.h): forgets every absent node of an earlier term and
  // awaits `node_ids` (the registry in etcd), as ExpectNodes after a restart.
  void Reset(const std::vector<std::string>& node_ids);
  // The node's snapshot is applied: it routes again.
  void Attached(const std::string& node_id);
  // The node's stream ended without a goodbye. `keys`: what it last reported.
  void Detached(const std::string& node_id, NodeKeys keys);
  // The node said goodbye (drain or shutdown): it is not waited for.
  void Left(const std::string& node_id);
  // Declares gone the nodes awaited or detached for longer than the node timeout and returns
  // the ids of every node declared gone since the last call (for the registry to forget).
  std::vector<std::string> Expire();

  // OK, or UNAVAILABLE (RetryLaterError) when the app's `channels` cannot all be routed now.
  absl::Status AdmitChannels(const std::string& app_id, const std::vector<std::string>& channels);
  // The same for a request addressed to a user's connections.
  absl::Status AdmitUser(const std::string& app_id, const std::string& user_id);

  // Nodes still awaited after a restart (not ready while > 0).
  size_t awaiting() const;
  // Nodes detached and not yet declared gone.
  size_t detached() const;
  // Requests refused, by GateRefusal (kNodeBacklog is counted by the caller through Count).
  uint64_t refused(GateRefusal why) const {
    return refused_[static_cast<int>(why)].load(std::memory_order_relaxed);
  }
  void Count(GateRefusal why) {
    refused_[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
  }

 private:
  enum class Kind { kAwaited, kDetached };
  struct Absent {
    Kind kind = Kind::kAwaited;
    int64_t deadline_ms = 0;
    NodeKeys keys;  // kDetached only
  };
  // Removes `node_id` from the absent nodes and its keys from the blocked sets.
  void ForgetLocked(const std::string& node_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the nodes past their deadline, adding them to expired_.
  void ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refuse(GateRefusal why, std::string message);
  // Refuses everything while a node is awaited after a restart.
  absl::Status AdmitAnyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::chrono::milliseconds node_timeout_;
  const common::Clock& clock_;
  // absent_.size(), readable without the lock (the fast path of Admit*).
  std::atomic<size_t> absent_count_{0};
  std::atomic<size_t> awaiting_{0};
  std::atomic<size_t> detached_{0};
  std::atomic<uint64_t> refused_[kGateRefusalKinds] = {};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Absent> absent_ ABSL_GUARDED_BY(mu_);
  // Declared gone since the last Expire() (an admission may be the first to notice).
  std::vector<std::string> expired_ ABSL_GUARDED_BY(mu_);
  // How many detached nodes hold each key.
  absl::flat_hash_map<std::pair<std::string, std::string>, int> blocked_channels_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, std::string>, int> blocked_users_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::controlplane
