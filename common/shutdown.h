// File: shutdown.h
// SIGINT/SIGTERM handling for the binaries: block both before any thread starts, then wait for
// them synchronously from main. SIGTERM means "drain first", SIGINT "stop now".
#pragma once

#include <chrono>
#include <csignal>

namespace relay::common {

class ShutdownSignals {
 public:
  // Blocks SIGINT and SIGTERM in this thread and every thread started after it.
  ShutdownSignals();
  // Waits for one of them and returns it.
  int Wait();
  // Waits up to `timeout`, returning early when another signal arrives: returns that signal,
  // or 0 when none came.
  int WaitAtMost(std::chrono::milliseconds timeout);

 private:
  sigset_t set_;
};

}  // namespace relay::common
