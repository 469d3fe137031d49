// File: watch.h
// A watch on a key or a key range over etcd's Watch stream that survives a broken stream or a
// lost member: it resumes on the next endpoint from the revision after the last one delivered,
// so no event is missed or repeated. A member that stops answering (paused) is left within about
// 3 s: a quiet stream is asked for progress, and given up when that goes unanswered. When the
// revision to resume from has been compacted away, the watch ends with OUT_OF_RANGE: the caller
// re-reads the current state and watches again from its revision. Thread-safe. Destroy before the
// Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "controlplane/etcd/etcd_client.h"

namespace relay::controlplane::etcd {

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: the key and the revision of the delete (mod_revision)
};

struct WatchOptions {
  std::string key;
  std::string range_end;       // PrefixEnd(key) for a prefix; empty for the key alone
  int64_t start_revision = 0;  // 0: from now on
};

class Watch {
 public:
  // Events, in revision order, on gRPC's threads (one call at a time); must not block.
  using EventsFn = std::function<void(const std::vector<WatchEvent>&)>;
  // The watch ended for good (OUT_OF_RANGE on compaction); runs at most once, not after
  // the destructor returned.
  using EndFn = std::function<void(absl::Status)>;

  Watch(Client& client, WatchOptions options, EventsFn on_events, EndFn on_end = nullptr);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  // The revision the watch resumes from after a broken stream.
  int64_t next_revision() const;
  // True once etcd confirmed the first watch (events after its revision will all arrive).
  bool created() const;
  // How many streams the watch has opened (1 while its first member stays healthy).
  int streams() const;
  // Waits (bounded) until created().
  bool WaitCreated(Duration timeout) const;

 private:
  void Run();

  Client& client_;
  const WatchOptions options_;
  EventsFn on_events_;
  EndFn on_end_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  int64_t next_revision_ ABSL_GUARDED_BY(mu_);
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_heard_ ABSL_GUARDED_BY(mu_);  // on this stream
  absl::Status end_ ABSL_GUARDED_BY(mu_);  // set when the watch cannot go on
};

}  // namespace relay::controlplane::etcd
