// File: hangup.h
// SIGHUP for the binaries: "reload" (the TLS certificate), never "exit". Construct it in main
// before any other thread starts, so that SIGHUP is blocked everywhere and only its own thread
// receives it.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace relay::common {

class HangupSignal {
 public:
  // Runs `on_hangup` on the signal thread for every SIGHUP (coalesced while one runs).
  explicit HangupSignal(std::function<void()> on_hangup);
  ~HangupSignal();
  HangupSignal(const HangupSignal&) = delete;
  HangupSignal& operator=(const HangupSignal&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace relay::common
