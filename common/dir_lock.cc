#include "common/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/strings.h"

namespace relay::common {

namespace {

// The pid the holder wrote into the lock file, or "unknown".
std::string HolderPid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string pid;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid += buf[i];
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

absl::StatusOr<DirLock> DirLock::Acquire(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    ::chmod(dir.c_str(), 0700);  // our own new directory: it will hold secrets
  } else if (ec) {
    return absl::FailedPreconditionError(
        StrCat("cannot create data dir '", dir, "': ", ec.message()));
  }
  std::string path = StrCat(dir, "/relay.lock");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        StrCat("cannot open the lock file ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string pid = err == EWOULDBLOCK ? HolderPid(fd) : "";
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          StrCat("the data dir ", dir, " is in use by another Relay process (pid ", pid,
                 "); stop it first or give this one its own --data-dir"));
    }
    return absl::FailedPreconditionError(StrCat("cannot lock ", path, ": ", std::strerror(err)));
  }
  // Only for the message a second process prints; the lock itself is the flock.
  std::string pid = StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without the pid; a second process then names the pid "unknown".
  }
  return DirLock(fd);
}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void DirLock::Release() {
  if (fd_ < 0) return;
  ::close(fd_);  // releases the flock
  fd_ = -1;
}

}  // namespace relay::common
