// File: raw_socket.h
// A blocking loopback TCP client for tests of what a server writes byte by byte (streamed HTTP
// responses): every read gives up after 5 s, so a missing byte fails the test instead of
// hanging it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace relay::testutil {

class RawSocket {
 public:
  explicit RawSocket(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawSocket() { Close(); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& s) {
    return send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Reads until what was received contains `text`; false on timeout or close.
  bool ReadUntil(const std::string& text) {
    while (received_.find(text) == std::string::npos) {
      if (ReadSome() <= 0) return false;
    }
    return true;
  }
  // Reads until the peer closes; false on timeout.
  bool ReadToEnd() {
    for (;;) {
      ssize_t n = ReadSome();
      if (n == 0) return true;
      if (n < 0) return false;
    }
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  const std::string& received() const { return received_; }

 private:
  ssize_t ReadSome() {
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n > 0) received_.append(buf, static_cast<size_t>(n));
    return n;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

}  // namespace relay::testutil
