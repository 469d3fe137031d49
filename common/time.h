// File: time.h
// Wall-clock helpers (Unix milliseconds), kept in one place so tests can reason about them.
#pragma once

#include <chrono>
#include <cstdint>

namespace relay::common {

inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline int64_t NowUnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline int64_t NowUnixSeconds() { return NowUnixMs() / 1000; }

}  // namespace relay::common
