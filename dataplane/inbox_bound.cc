#include "dataplane/inbox_bound.h"

#include <utility>

namespace relay::dataplane {

void InboxBound::Add(size_t bytes) {
  posts_.fetch_add(1);
  bytes_.fetch_add(bytes);
}

bool InboxBound::full() const {
  return posts_.load() >= limits_.max_posts || bytes_.load() >= limits_.max_bytes;
}

void InboxBound::Done(size_t bytes) {
  posts_.fetch_sub(1);
  bytes_.fetch_sub(bytes);
  // Sequentially consistent with WaitForRoom: either it sees the room made here, or this sees
  // its waiter (or both; the lock decides who runs it).
  if (!waiting_.load() || full()) return;
  std::function<void()> on_room;
  {
    absl::MutexLock lock(&mu_);
    if (!waiter_ || full()) return;
    on_room = std::exchange(waiter_, nullptr);
    waiting_.store(false);
  }
  on_room();  // outside the lock: it may wait again
}

bool InboxBound::WaitForRoom(std::function<void()> on_room) {
  absl::MutexLock lock(&mu_);
  if (!full()) return false;
  waiter_ = std::move(on_room);
  waiting_.store(true);
  if (full()) return true;
  // The shard made room between the two checks, maybe before it could see the waiter.
  waiter_ = nullptr;
  waiting_.store(false);
  return false;
}

}  // namespace relay::dataplane
