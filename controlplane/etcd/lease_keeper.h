// File: lease_keeper.h
// Keeps an etcd lease alive over etcd's LeaseKeepAlive stream, a keep-alive every third of the
// TTL, moving to another endpoint when the stream breaks or stops answering. Reports the loss
// of the lease once, promptly: when etcd answers that the lease is gone (TTL 0: revoked or
// expired), or when the lease may have expired because no keep-alive was answered for a whole
// TTL (counted from when the last answered one was sent, so the local view expires no later
// than etcd's).
// Thread-safe. Destroy before the Client.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "controlplane/etcd/etcd_client.h"

namespace relay::controlplane::etcd {

class LeaseStream;

class LeaseKeeper {
 public:
  // `granted_at`: when the grant request was sent (the lease is alive until then + TTL).
  // `on_lost` runs once, on the keeper's thread, with why; never after Stop() returned.
  LeaseKeeper(Client& client, Lease lease, std::chrono::steady_clock::time_point granted_at,
              std::function<void(absl::Status)> on_lost);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Stops sending keep-alives (the lease then expires in etcd after its TTL unless revoked).
  void Stop();
  bool lost() const;
  // Until when the lease is surely alive in etcd, by this process's steady clock.
  std::chrono::steady_clock::time_point alive_until() const;
  const Lease& lease() const { return lease_; }

  // Behaves like a process that was paused (SIGSTOP): sends nothing and notices nothing until
  // thawed. Tests only.
  void FreezeForTest(bool frozen);

 private:
  void Run();
  void OnResponse(int64_t ttl);

  Client& client_;
  const Lease lease_;
  std::function<void(absl::Status)> on_lost_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::chrono::steady_clock::time_point alive_until_ ABSL_GUARDED_BY(mu_);
  std::deque<std::chrono::steady_clock::time_point> sent_ ABSL_GUARDED_BY(mu_);
  bool gone_ ABSL_GUARDED_BY(mu_) = false;  // etcd said the lease does not exist
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  bool frozen_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace relay::controlplane::etcd
