// File: limiter.h
// Admission limits for API events, decided in one place for HTTP and gRPC callers:
// - per client IP: trigger requests per minute (default 300);
// - per app: backend events per second (limits.max_backend_events_per_second);
// - per app: messages per UTC day (limits.max_daily_messages, or the plan's quota).
// A message is one event on one channel: a trigger to 3 channels counts 3, each batch item 1, a
// send-to-user 1, counted only once the request is valid. Daily counts of apps with a quota are
// written through to the app store before the event is published, so no restart or crash
// forgets them (controlplane::Api::ChargeMessages).
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace relay::controlplane {

// The figures a caller sees in X-RateLimit-* headers.
struct RateInfo {
  bool present = false;
  uint64_t limit = 0;
  uint64_t remaining = 0;
  int64_t reset_unix_s = 0;  // when the window resets
};

// Daily quota of a plan (0 = unlimited). Plans: default/unlimited 0, free 200k, startup 1M,
// pro 10M, business 100M.
uint64_t PlanDailyQuota(const std::string& plan);

class FixedWindow {
 public:
  // Adds `cost` to `key`'s window of `window_s` seconds if it fits under `limit`.
  bool Hit(const std::string& key, uint64_t limit, int64_t window_s, uint64_t cost, int64_t now_s,
           RateInfo* info);

 private:
  struct Window {
    int64_t start = 0;
    uint64_t used = 0;
  };
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
  int64_t last_sweep_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace relay::controlplane
