#include "controlplane/tcp_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace relay::controlplane {
namespace {

// One connect to `addr`, bounded by `timeout`.
ProbeResult ConnectOnce(const addrinfo& addr, std::chrono::milliseconds timeout) {
  int fd =
      socket(addr.ai_family, addr.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, addr.ai_protocol);
  if (fd < 0) return ProbeResult::kUnknown;
  ProbeResult result = ProbeResult::kUnknown;
  int rc = connect(fd, addr.ai_addr, addr.ai_addrlen);
  int err = rc == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int ready;
    do {
      ready = poll(&p, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    err = ETIMEDOUT;
    if (ready > 0) {
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
  }
  if (err == 0) result = ProbeResult::kListening;
  if (err == ECONNREFUSED) result = ProbeResult::kRefused;
  close(fd);
  return result;
}

}  // namespace

ProbeResult ProbeTcp(const std::string& address, std::chrono::milliseconds timeout) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return ProbeResult::kUnknown;
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* results = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &results) != 0) return ProbeResult::kUnknown;
  // Refused only when every address refused: one that accepts or stays silent may be the leader.
  ProbeResult result = ProbeResult::kUnknown;
  for (addrinfo* r = results; r; r = r->ai_next) {
    ProbeResult one = ConnectOnce(*r, timeout);
    if (one != ProbeResult::kRefused) {
      result = one;
      break;
    }
    result = ProbeResult::kRefused;
  }
  freeaddrinfo(results);
  return result;
}

const char* ProbeResultName(ProbeResult result) {
  switch (result) {
    case ProbeResult::kListening:
      return "listening";
    case ProbeResult::kRefused:
      return "refused";
    case ProbeResult::kUnknown:
      break;
  }
  return "no answer";
}

}  // namespace relay::controlplane
