// File: wait_for.h
// Test helpers: wait on a condition with a bound (tests never sleep to synchronize), and pick a
// free loopback port at runtime.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace relay::testutil {

// Polls `pred` until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& pred,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreeTcpPort();

}  // namespace relay::testutil
