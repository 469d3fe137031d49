// File: shard_metrics.h
// What one shard counts for /metrics. Written only by the shard's own thread (OwnedCounter: a
// relaxed load and store, no locked instruction, no line shared with another shard), read by a
// scrape on its own thread, which sums the shards (DataPlane::WriteMetrics).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/metrics.h"

namespace relay::dataplane {

// Why a registered connection ended (the `reason` label of relay_connections_closed_total).
enum class CloseReason : uint8_t {
  kClient,        // the client closed or went away
  kServer,        // the server closed it with a code (drain, app disabled, timeouts, ...)
  kSlowConsumer,  // over its write queue bounds
  kViolation,     // broke RFC 6455 (code 1002, 1007, 1009, ...)
  kCount
};
const char* CloseReasonName(CloseReason reason);

// The close codes counted one by one; every other code is counted as "other". A fixed list
// keeps the label's values bounded whatever a peer sends.
inline constexpr std::array<uint16_t, 22> kCountedCloseCodes = {
    1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 4000, 4001,
    4003, 4004, 4005, 4006, 4007, 4008, 4009, 4100, 4200, 4201, 4301};
// The index of `code` in kCountedCloseCodes; kCountedCloseCodes.size() for "other", and
// kCountedCloseCodes.size() + 1 for no code.
size_t CloseCodeIndex(int code);
std::string CloseCodeLabel(size_t index);
inline constexpr size_t kCloseCodeSlots = kCountedCloseCodes.size() + 2;
inline constexpr int kNoCloseCode = -1;

struct ShardMetrics {
  using Counter = common::OwnedCounter;
  Counter connections_opened;
  std::array<std::array<Counter, kCloseCodeSlots>, static_cast<size_t>(CloseReason::kCount)> closed;
  // Upgrades refused before the connection registered, by the code they were closed with.
  std::array<Counter, kCloseCodeSlots> refused;
  Counter messages_in, bytes_in;    // WebSocket messages (frames' payloads) from clients
  Counter messages_out, bytes_out;  // WebSocket messages handed to the kernel
  Counter client_events;            // client events accepted and relayed
  Counter slow_consumers_cut;
  Counter subscriptions;  // gauge: live (channel, connection) pairs on this shard
  Counter queue_bytes;    // gauge: bytes waiting in this shard's connections' write queues
  Counter subscribe_rate_limited;
  Counter client_event_rate_limited;
  // From the control plane's accept of a publish to its frame queued on this shard's sockets.
  common::OwnedLatencyHistogram publish_latency;

  void Closed(CloseReason reason, int code) {
    closed[static_cast<size_t>(reason)][CloseCodeIndex(code)].Add();
  }
};

}  // namespace relay::dataplane
