// File: inbox_bound.h
// Bounds what has been posted to a shard and not yet run there: a count and a byte total. The
// control link never drops a command to stay inside the bound; instead it stops reading the
// node link stream while a shard is full (WaitForRoom), so gRPC flow control pushes back to the
// control plane, which treats a node that stops reading like any slow node. The bound is
// exceeded by at most what one node link message posts.
// Thread-safe: Add on the posting thread, Done on the shard's.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>

#include "absl/synchronization/mutex.h"

namespace relay::dataplane {

struct InboxLimits {
  size_t max_posts = 65536;
  size_t max_bytes = 64u << 20;
};

class InboxBound {
 public:
  explicit InboxBound(InboxLimits limits) : limits_(limits) {}

  // Counts a post (always admitted: the command it carries has been read already).
  void Add(size_t bytes);
  // The post has run. Runs the waiter, on this thread, when that made room.
  void Done(size_t bytes);
  bool full() const;
  // False when there is room now. Otherwise keeps `on_room` and runs it once, on the thread
  // whose Done() makes room; returns true. One waiter at a time (the link reads one stream).
  bool WaitForRoom(std::function<void()> on_room);

  size_t posts() const { return posts_.load(); }
  size_t bytes() const { return bytes_.load(); }

 private:
  const InboxLimits limits_;
  std::atomic<size_t> posts_{0};
  std::atomic<size_t> bytes_{0};
  // Set while a waiter is kept: Done() takes the lock only then.
  std::atomic<bool> waiting_{false};
  absl::Mutex mu_;
  std::function<void()> waiter_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::dataplane
