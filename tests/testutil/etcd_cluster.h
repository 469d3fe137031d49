// File: etcd_cluster.h
// Test helper: a real etcd cluster (1 or 3 members of Debian's `etcd`, RELAY_ETCD_BIN to use
// another binary) on free 127.0.0.1 ports, each member with its own temporary data dir. Every
// wait is bounded. Members can be killed (SIGKILL), paused (SIGSTOP) and continued, and
// restarted on their data dir and ports. The destructor kills every member and removes the dirs.
// Call its methods from one thread (the test's).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace relay::testutil {

class EtcdCluster {
 public:
  // Starts `members` members and waits until each reports healthy (it has a raft leader).
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      int members, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // host:port of member `i`'s client URL; all of them.
  std::string endpoint(int i) const;
  std::vector<std::string> endpoints() const;
  // "host:port,host:port,..." as the --etcd-endpoints flag takes it.
  std::string endpoints_flag() const;

  void Kill(int i);      // SIGKILL, reaped
  void Stop(int i);      // SIGSTOP: the member is frozen with its sockets open
  void Continue(int i);  // SIGCONT
  // Starts a killed member again on its data dir and ports; waits until it is healthy.
  absl::Status Restart(int i, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // GET /health on the member's client port says {"health":"true"} (bounded to 1 s).
  bool Healthy(int i) const;
  // The member that is the raft leader now (by each member's /metrics), or -1.
  int RaftLeader() const;
  bool running(int i) const { return members_[i].pid > 0; }
  // The member's own log (stdout and stderr), for failure messages.
  std::string Log(int i) const;

 private:
  struct Member {
    std::string name;
    std::string dir;  // holds data/ and etcd.log
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    pid_t pid = -1;
  };
  EtcdCluster() = default;
  absl::Status Spawn(int i, bool initial);
  absl::Status WaitHealthy(const std::vector<int>& which, std::chrono::milliseconds timeout);
  // Whether member `i` has exited (reaps it).
  bool Exited(int i);

  std::string root_;  // temp dir holding every member's dir
  std::string token_;
  std::vector<Member> members_;
};

}  // namespace relay::testutil
