// File: channel_watch.h
// The watchers of relay.v1.Channels.WatchChannelEvents: which channels of which app each one
// watches, and each one's bounded buffer between the threads that accept events (API calls, node
// links) and the one stream that writes them. Knows nothing of gRPC: a watcher's consumer takes
// one event at a time, and is woken when something arrives while it waits.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/public.pb.h"

namespace relay::controlplane {

struct ChannelWatchOptions {
  // Watchers open at once on this control plane, and per app (beyond: UNAVAILABLE, and
  // RESOURCE_EXHAUSTED per app).
  size_t max_watchers = 500;
  size_t max_watchers_per_app = 50;
  // Events waiting for one watcher's stream, by count and by serialized bytes; beyond either the
  // watcher is cut (RESOURCE_EXHAUSTED) and what waited is freed at once.
  size_t buffer_events = 5000;
  size_t buffer_bytes = 2u << 20;
};

// Which channels a watcher wants: the exact `channels` and those starting with `prefix`; with
// neither, every channel of the app.
struct WatchFilter {
  absl::flat_hash_set<std::string> channels;
  std::string prefix;

  bool Matches(std::string_view channel) const;
};

class ChannelWatch;

// One watcher: its filter and its buffer. The consumer (the stream) calls Take() when it can
// write; a watcher ends (cut, app removed, shutdown) with the status its stream ends with.
class ChannelWatcher {
 public:
  using Event = std::shared_ptr<const relay::v1::ChannelEvent>;
  struct Next {
    Event event;                      // write this one, then Take() again
    std::optional<absl::Status> end;  // nothing more will come: end the stream with this
    // Neither: nothing waits; `wake` is called once something does.
  };
  // `wake` is called on the thread that brought the event or ended the watcher, outside every
  // lock of this class, at most once per Take() that found nothing.
  ChannelWatcher(std::string app_id, WatchFilter filter, const ChannelWatchOptions& options,
                 std::function<void()> wake, std::atomic<uint64_t>* streamed);

  // The next event, in the order they were accepted; once the watcher ended and what waited was
  // taken (nothing, when it was cut), the status to end with.
  Next Take();

  const std::string& app_id() const { return app_id_; }
  const WatchFilter& filter() const { return filter_; }

 private:
  friend class ChannelWatch;
  struct Pushed {
    bool wake = false;
    bool cut = false;
  };
  // Queues `event` (`bytes` as serialized); cuts the watcher when that passes a bound.
  Pushed Push(const Event& event, size_t bytes);
  // Ends the watcher after what waits: true when the consumer must be woken to see it.
  bool End(absl::Status status);

  const std::string app_id_;
  const WatchFilter filter_;
  const size_t max_events_;
  const size_t max_bytes_;
  const std::function<void()> wake_;
  std::atomic<uint64_t>* streamed_;
  absl::Mutex mu_;
  std::deque<std::pair<Event, size_t>> queue_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;  // the last Take() found nothing
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
};

class ChannelWatch {
 public:
  explicit ChannelWatch(ChannelWatchOptions options = {});

  // Registers a watcher of `app_id`'s channels matching `filter`. UNAVAILABLE beyond
  // max_watchers or after CloseAll(); RESOURCE_EXHAUSTED beyond max_watchers_per_app. A watcher
  // counts against both until Close(), even once it ended: a stream that was cut but whose
  // caller does not read its end still holds what is on its way.
  absl::StatusOr<std::shared_ptr<ChannelWatcher>> Open(const std::string& app_id,
                                                       WatchFilter filter,
                                                       std::function<void()> wake);
  // The consumer is gone (its stream is done): forgets the watcher. Idempotent.
  void Close(const std::shared_ptr<ChannelWatcher>& watcher);

  // Cheap: false when no watcher of the app exists (callers skip building the event).
  bool Wants(std::string_view app_id) const;
  // Hands `event` to every watcher of the app whose filter matches its channel.
  void Publish(const std::string& app_id, relay::v1::ChannelEvent event);
  // Ends every watcher of the app with `why` (after what waits for it): deleted, disabled.
  void CloseApp(const std::string& app_id, const absl::Status& why);
  // Ends every watcher with `why` and refuses new ones (shutdown).
  void CloseAll(const absl::Status& why);

  // Watchers open now (registered and not yet closed).
  uint64_t open() const { return open_.load(std::memory_order_relaxed); }
  // Events handed to watchers' streams since start.
  uint64_t streamed() const { return streamed_.load(std::memory_order_relaxed); }
  // Watchers cut for falling behind since start.
  uint64_t cut() const { return cut_.load(std::memory_order_relaxed); }

 private:
  struct AppWatchers {
    std::vector<std::shared_ptr<ChannelWatcher>> live;  // receiving events
    size_t open = 0;                                    // registered and not closed
  };
  // Stops handing events to `watcher`; false when it got none already.
  bool Unlink(const ChannelWatcher* watcher) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ChannelWatchOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppWatchers> apps_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<const ChannelWatcher*> open_watchers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> open_{0};
  std::atomic<uint64_t> streamed_{0};
  std::atomic<uint64_t> cut_{0};
};

}  // namespace relay::controlplane
