// File: clock.h
// Wall-clock time behind an interface, so code with time rules (quota days, signature windows,
// token and secret expiry) takes a Clock and tests drive it with ManualClock instead of waiting
// for real time to pass. Production code uses Clock::Real().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace relay::common {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUnixMs() const = 0;
  int64_t NowUnixSeconds() const { return NowUnixMs() / 1000; }

  // The system clock; lives for the whole process.
  static const Clock& Real();
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t unix_ms) : now_ms_(unix_ms) {}
  int64_t NowUnixMs() const override { return now_ms_.load(std::memory_order_relaxed); }
  void Set(int64_t unix_ms) { now_ms_.store(unix_ms, std::memory_order_relaxed); }
  void Advance(std::chrono::milliseconds by) {
    now_ms_.fetch_add(by.count(), std::memory_order_relaxed);
  }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace relay::common
