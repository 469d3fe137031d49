// File: tcp_probe.h
// Whether a process listens at host:port, by one TCP connect (closed at once, nothing sent).
// The replicas use it to tell a leader whose process is gone (the kernel refuses the connect)
// from one that is slow, paused or cut off (no answer): only the first may lose its lease before
// the lease runs out (replica.h).
#pragma once

#include <chrono>
#include <string>

namespace relay::controlplane {

enum class ProbeResult {
  kListening,  // a connection was accepted
  kRefused,    // every address of the host refused the connection (nothing listens there)
  kUnknown,    // no answer within the timeout, an unresolvable host, a network error
};

// `address`: host:port or [v6]:port. Blocks for at most about `timeout` per resolved address.
ProbeResult ProbeTcp(const std::string& address, std::chrono::milliseconds timeout);

const char* ProbeResultName(ProbeResult result);

}  // namespace relay::controlplane
