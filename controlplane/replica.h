// File: replica.h
// One control plane among N replicas (relay-controlplane --etcd-endpoints, issue #14): campaigns
// for leadership through etcd (etcd/election.h, key `<prefix>/v1/leader`) and says, at any
// instant, whether this replica may act. Exactly one replica leads; it owns the node streams and
// makes every cluster-wide decision. The others are followers: they attach no node (a data
// plane is told where the leader is), route nothing and refuse the APIs (503 / UNAVAILABLE), so
// a load balancer sends traffic to the leader only (docs/scaling.md).
//
// States: follower -> (elected) -> opening (the `gained` callback runs: the ControlPlane loads
// the node registry and closes its route gate) -> leader -> (lease lost, key deleted, etcd
// refused) -> follower (the `lost` callback ends every node stream). acting() is true only in
// "leader", and only while the lease is surely alive by this process's clock: a leader that was
// paused past its lease (SIGSTOP) and wakes up stops acting at once, before etcd or its keeper
// tells it; its writes are refused by etcd anyway (Fence()).
//
// A leader whose process is gone: its lease would keep it the leader for up to a TTL after its
// death. A data plane whose node stream broke comes to a follower to attach (SuspectLeader());
// the follower then tries a TCP connect to the leader's advertised address, and when the kernel
// refuses it (twice, 50 ms apart: nothing listens there, the process is gone) it revokes the
// leader's lease, so the next replica takes over now rather than when the lease runs out. Only
// a refusal counts: a leader that is paused, slow or cut off does not answer at all, and keeps
// its lease to its end (two leaders must never command data planes). A follower acts only on a
// leader it has reached at that address before (checked once per leader), so a wrong
// --advertise-grpc can never make it revoke a live leader's lease.
//
// The node registry (the data planes a new leader must hear from before it routes, see
// route_gate.h) lives in etcd under `<prefix>/v1/nodes/<node id>`, written fenced by the leader.
// Thread-safe. Destroy before the etcd Client.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/etcd/election.h"
#include "controlplane/etcd/etcd_client.h"

namespace relay::controlplane {

struct ReplicaOptions {
  std::string prefix = "/relay";  // --etcd-prefix
  // What this replica proclaims as the leader's address for data planes (--advertise-grpc).
  std::string advertise;
  int64_t lease_ttl_seconds = 2;  // --etcd-lease-ttl
};

class Replica {
 public:
  struct Callbacks {
    // This replica won; runs before it starts acting (on the election's thread). An error
    // (e.g. etcd did not answer) is retried every 100 ms while the leadership lasts.
    std::function<absl::Status()> gained;
    // This replica stopped acting (not on Stop()): why. On the election's thread.
    std::function<void(const absl::Status&)> lost;
  };

  Replica(etcd::Client& client, ReplicaOptions options, Callbacks callbacks);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Campaigns in the background, proclaiming the options' advertise address, else
  // `default_advertise` (known once the server is bound). InvalidArgument when both are empty.
  absl::Status Start(std::string default_advertise = "");
  // Resigns (the next replica takes over at once) and stops campaigning.
  void Stop();

  // This replica leads and may act now (see the file comment). Cheap; any thread.
  bool acting() const;
  // OK while acting; otherwise UNAVAILABLE with a Retry-After hint of 1 s naming the role and
  // the leader, for the APIs to answer.
  absl::Status CheckActing() const;
  // "leader", or "follower (leader: ADDRESS)" ("unknown" while there is none).
  std::string Role() const;
  // The current leader's advertised address ("" when unknown or when this replica leads).
  std::string LeaderAddress() const;
  // A data plane asked this follower to attach: its stream to the leader ended. Checks, in the
  // background, whether the leader's process is gone (see the file comment). Never blocks.
  void SuspectLeader();
  // Suspicions handled while following a leader, and leases of dead leaders revoked.
  uint64_t leader_checks() const { return checked_.load(std::memory_order_relaxed); }
  uint64_t leaders_revoked() const { return revoked_.load(std::memory_order_relaxed); }
  // Leadership changes seen since start (won by this replica).
  uint64_t elections_won() const { return won_.load(std::memory_order_relaxed); }

  // The guard every leader write must carry: the leadership key still exists with the revision
  // it was won with. nullopt when not leading.
  std::optional<etcd::Compare> Fence() const;
  etcd::Election& election() { return *election_; }

  // The node registry. Load: every node id (any replica may read). Remember / Forget: fenced
  // writes, FAILED_PRECONDITION when this replica no longer leads.
  absl::StatusOr<std::vector<std::string>> LoadKnownNodes();
  absl::Status RememberNode(const std::string& node_id);
  absl::Status ForgetNode(const std::string& node_id);

  // Tests: behave like a paused process (etcd/election.h).
  void FreezeForTest(bool frozen) {
    if (started_.load()) election_->FreezeForTest(frozen);
  }

 private:
  std::string NodeKey(const std::string& node_id) const;
  // The thread behind SuspectLeader().
  void WatchLeader();

  etcd::Client& client_;
  ReplicaOptions options_;  // advertise completed by Start()
  Callbacks callbacks_;
  std::unique_ptr<etcd::Election> election_;
  std::unique_ptr<etcd::LeaderObserver> observer_;
  // Set once `gained` returned OK, cleared before `lost` runs.
  std::atomic<bool> open_{false};
  std::atomic<bool> started_{false};  // Start() set observer_ and election_
  std::atomic<uint64_t> won_{0};
  std::atomic<uint64_t> checked_{0};
  std::atomic<uint64_t> revoked_{0};

  absl::Mutex probe_mu_;
  bool probe_stop_ ABSL_GUARDED_BY(probe_mu_) = false;
  bool suspected_ ABSL_GUARDED_BY(probe_mu_) = false;
  std::thread prober_;
};

}  // namespace relay::controlplane
