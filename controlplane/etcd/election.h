// File: election.h
// Leader election on etcd, with fencing. The recipe is etcd's own (clientv3/concurrency): each
// candidate holds a lease and puts `<name>/<lease id in hex>` = its value (the address other
// replicas and data planes should reach the leader at) under that lease; the candidate whose key
// has the lowest create revision leads, the others wait for the key just before theirs to go.
// Leadership ends when the lease ends (keep-alives stop: the process died, was paused, or lost
// etcd) or the key is deleted; the next candidate takes over when etcd expires the lease, at
// most the TTL after the last keep-alive.
//
// Fencing: a leader's write goes through FencedCommit / FencedPut, one etcd transaction that
// runs only while the leader key still exists with the create revision it was won with. A leader
// that was paused past its TTL and wakes up believing it still leads cannot write: etcd refuses
// (FAILED_PRECONDITION), whatever the old leader's local view.
//
// Thread-safe. Destroy before the Client.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "controlplane/etcd/etcd_client.h"

namespace relay::controlplane::etcd {

class LeaseKeeper;
class Watch;

struct ElectionOptions {
  std::string name = "/relay/v1/leader";  // candidates' keys are under name + "/"
  std::string value;                      // what this candidate proclaims (its address)
  int64_t ttl_seconds = 2;                // the lease; etcd's minimum is 2 s by default
};

// What a leader holds: its key, the revision it was created at, and its lease.
struct Leadership {
  std::string key;
  int64_t revision = 0;
  int64_t lease = 0;
};

// Who leads: the leader's key and proclaimed value.
struct LeaderInfo {
  std::string key;
  std::string value;
  int64_t revision = 0;
  int64_t lease = 0;
};

class Election {
 public:
  struct Callbacks {
    // This candidate won. On the election's thread; may block briefly.
    std::function<void(const Leadership&)> elected;
    // This candidate's leadership ended (not by Resign): why. The election campaigns again.
    std::function<void(absl::Status)> lost;
  };

  Election(Client& client, ElectionOptions options, Callbacks callbacks);
  // Resigns (bounded by the client's call timeout) when leading.
  ~Election();
  Election(const Election&) = delete;
  Election& operator=(const Election&) = delete;

  // Campaigns in the background until Resign() or destruction. InvalidArgument for an empty
  // name or value, or a TTL below 1 s; FailedPrecondition when already started.
  absl::Status Start();
  // Gives leadership up now (deletes the key, revokes the lease: the next candidate takes over
  // at once) and stops campaigning. An error says the lease could not be revoked (etcd
  // unreachable): the next candidate then takes over when it expires, one TTL later.
  absl::Status Resign();

  // The leadership held, as far as this process knows.
  std::optional<Leadership> leadership() const;
  bool leading() const { return leadership().has_value(); }
  // The leadership held, only while its lease is surely alive in etcd by this process's clock
  // (LeaseKeeper::alive_until): a process that was paused past its lease and has just woken up
  // gets nullopt here at once, before its keeper notices and `lost` runs.
  std::optional<Leadership> surely_leading() const;

  // `txn` only while this candidate still leads in etcd. FAILED_PRECONDITION when it does not
  // (locally known, or refused by etcd); other errors as Client::Commit.
  absl::StatusOr<TxnResult> FencedCommit(const Txn& txn, Duration timeout = Duration::zero());
  absl::Status FencedPut(std::string_view key, std::string_view value,
                         Duration timeout = Duration::zero());

  // The current leader of election `name`, or nullopt when there is none.
  static absl::StatusOr<std::optional<LeaderInfo>> Leader(Client& client, std::string_view name,
                                                          Duration timeout = Duration::zero());

  // Acts like a paused process (SIGSTOP): sends no keep-alive, notices nothing, keeps believing
  // what it believed, until thawed. Tests only.
  void FreezeForTest(bool frozen);

 private:
  void Run();
  // Returns once this candidate leads (true) or must start over / stop (false).
  bool WaitForTurn(const std::string& key, int64_t revision);
  // While leading: returns why leadership ended (OK for stop / resign).
  absl::Status Lead(const Leadership& held);
  bool Interrupted() const;  // stop, resign, or the lease lost

  Client& client_;
  const ElectionOptions options_;
  const std::string prefix_;  // options_.name + "/"
  Callbacks callbacks_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::optional<Leadership> leadership_ ABSL_GUARDED_BY(mu_);
  absl::Status lease_lost_ ABSL_GUARDED_BY(mu_);   // the current lease's keeper gave up
  bool key_deleted_ ABSL_GUARDED_BY(mu_) = false;  // the awaited (or own) key went
  bool frozen_ ABSL_GUARDED_BY(mu_) = false;
  LeaseKeeper* keeper_ ABSL_GUARDED_BY(mu_) = nullptr;  // the current lease's, for freezing
  absl::Status resign_status_ ABSL_GUARDED_BY(mu_);     // of revoking the last lease on stop
};

// Follows who leads election `name` (initial state, then every change, through a watch):
// followers use it to tell data planes where the leader is and to forward requests to it.
// Thread-safe. Destroy before the Client.
class LeaderObserver {
 public:
  // `on_change` runs on a gRPC or the observer's thread, one call at a time, after each change
  // of leader (nullopt: none right now); must not block.
  LeaderObserver(Client& client, std::string name,
                 std::function<void(const std::optional<LeaderInfo>&)> on_change = nullptr);
  ~LeaderObserver();

  std::optional<LeaderInfo> leader() const;

 private:
  void Run();

  Client& client_;
  const std::string prefix_;
  std::function<void(const std::optional<LeaderInfo>&)> on_change_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  // Every candidate's key -> its kv; the one with the lowest create revision leads.
  std::vector<KeyValue> candidates_ ABSL_GUARDED_BY(mu_);
  std::optional<LeaderInfo> leader_ ABSL_GUARDED_BY(mu_);
  bool restart_ ABSL_GUARDED_BY(mu_) = false;  // the watch ended (compaction): read again
};

}  // namespace relay::controlplane::etcd
