// File: dir_lock.h
// An exclusive lock on a data directory, so two servers never share one (each would diverge
// silently from the other's writes). flock(2) on `<dir>/relay.lock`: the kernel releases it when
// the process exits in any way, kill -9 included, so a stale lock file never blocks a restart.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace relay::common {

class DirLock {
 public:
  // Creates `dir` when missing (mode 0700: it holds secrets) and locks it. FailedPrecondition
  // naming the dir and the holder's pid when another process holds the lock.
  static absl::StatusOr<DirLock> Acquire(const std::string& dir);

  DirLock() = default;
  DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock() { Release(); }

  void Release();
  bool held() const { return fd_ >= 0; }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace relay::common
