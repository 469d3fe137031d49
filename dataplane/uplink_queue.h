// File: uplink_queue.h
// The data plane's outbox on the control link: NodeMessages waiting to be written, at most one in
// flight. State deltas coalesce: a delta pushed while another message is in flight merges into
// the last queued delta, if that one is not in flight yet. Counts are absolute, so the latest
// value per channel and per app wins; presence_left, signed_in and signed_out entries are only
// appended where the control plane's field order (see StateDelta) keeps them in the order they
// happened, otherwise a new delta starts. Under load the control plane so receives one delta per
// write instead of one per change, and the seq returned for a change is always the seq of the
// message that carries it. Bounded by message count and bytes; a merged delta stops growing at
// kMaxDeltaBytes.
// Not thread-safe: the owner (LinkStream) guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "relay/v1/node_link.pb.h"

namespace relay::dataplane {

class UplinkQueue {
 public:
  // A merged delta stops absorbing changes beyond this many (estimated) bytes.
  static constexpr size_t kMaxDeltaBytes = 64 * 1024;

  UplinkQueue(size_t max_messages, size_t max_bytes)
      : max_messages_(max_messages), max_bytes_(max_bytes) {}

  // Queues `msg` with `ack`, or merges it into the last queued delta. Returns the seq of the
  // message that carries it; 0 when the queue is over its bounds (nothing is queued then).
  uint64_t Push(relay::v1::NodeMessage msg, uint64_t ack);
  // Marks the oldest queued message in flight and returns it (stable until WriteDone); null when
  // the queue is empty or a message is already in flight.
  // Its ack is raised to `ack`: a message confirms what was handled when it is written, not
  // only what was handled when it was queued.
  const relay::v1::NodeMessage* StartWrite(uint64_t ack = 0);
  // The in-flight message was written (or the stream failed): forgets it.
  void WriteDone();

  size_t messages() const { return queue_.size(); }
  size_t bytes() const { return bytes_; }
  bool in_flight() const { return in_flight_; }
  // Deltas that were merged into an earlier queued delta instead of being queued on their own.
  uint64_t merged() const { return merged_; }

 private:
  struct Entry {
    relay::v1::NodeMessage msg;
    size_t bytes = 0;  // as accounted in bytes_ (exact at push, estimated growth on merges)
  };
  // Which ordered lists the open delta already has entries in (bit per StateDelta list).
  enum Ordered : unsigned { kPresenceLeft = 1, kSignedIn = 2, kSignedOut = 4 };

  // The last queued message is a delta that is not in flight and may still grow.
  bool CanMerge(const relay::v1::StateDelta& delta, size_t bytes) const;
  // Merges `from` into the open delta; returns the bytes it added (estimated).
  size_t Merge(relay::v1::StateDelta& into, relay::v1::StateDelta& from);
  void Open(relay::v1::StateDelta& delta);
  static unsigned OrderedLists(const relay::v1::StateDelta& delta);

  size_t max_messages_;
  size_t max_bytes_;
  std::deque<Entry> queue_;
  size_t bytes_ = 0;
  bool in_flight_ = false;
  uint64_t next_seq_ = 0;
  uint64_t merged_ = 0;
  // The open delta (the last queued message, while it is a delta not in flight).
  bool open_ = false;
  unsigned open_lists_ = 0;
  absl::flat_hash_map<std::pair<std::string, std::string>, int> open_channels_;
};

}  // namespace relay::dataplane
