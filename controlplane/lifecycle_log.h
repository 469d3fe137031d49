// File: lifecycle_log.h
// The lifecycle log behind relay.v1.Channels.WatchLifecycleEvents: every webhook event type the
// control plane decides (channel_occupied, channel_vacated, member_added, member_removed,
// client_event, cache_miss, subscription_count), for every app, whether or not it has webhook
// endpoints, kept in a per-app log in <data-dir>/webhooks.db (table lifecycle_events) with a
// cursor that increases by one per event of the app. Pruned by age and by a row cap per app
// (bounded work per run); the highest cursor pruned is kept per app, so a cursor that fell out
// of the log is refused (OUT_OF_RANGE) instead of silently skipping what was pruned.
//
// Threads. Record is called where webhooks are emitted (under the control plane's order lock):
// it numbers the event and appends it to a FIFO in memory. Every SQLite access (commit of the
// FIFO, catch-up reads, pruning) runs on the store's one writer thread (AppStore::writer(),
// shared with the app store and the webhook outbox), so reads, commits and prunes never race.
// An event reaches watchers only once it is committed: a consumer never holds a cursor that a
// crash could take back. Watchers behind the log read it from disk a page at a time; a watcher
// at the end of the log is handed each commit (bounded buffer, cut when it passes the bound).
// Thread-safe.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controlplane/channel_watch.h"
#include "controlplane/webhooks.h"
#include "relay/v1/public.pb.h"

namespace relay::controlplane {

class StoreWriter;

struct LifecycleLogOptions {
  // Events older than this are pruned; 0 turns the log (and the stream) off.
  std::chrono::seconds retention{86400};
  // At most this many events kept per app (the oldest go first).
  uint64_t max_events_per_app = 100000;
  // Events read from disk per catch-up step of one watcher.
  size_t page_events = 256;
  // Events numbered and not yet committed; beyond it new events are dropped (counted, logged):
  // the writer is that far behind.
  size_t max_pending = 100000;
  // Rows deleted per prune run (one a second), at most.
  size_t prune_batch = 10000;
  // Watcher limits and buffers, as for WatchChannelEvents (counted separately).
  ChannelWatchOptions watch;
};

// Which events a watcher wants: these names (empty: all) on channels starting with `prefix`.
struct LifecycleFilter {
  std::set<std::string> names;
  std::string prefix;
  bool Matches(const relay::v1::LifecycleEvent& e) const;
};

class LifecycleLog;

// One WatchLifecycleEvents consumer: where it is in its app's log and its bounded buffer. The
// consumer calls Take() when it can write, as for ChannelWatcher.
class LifecycleWatcher : public std::enable_shared_from_this<LifecycleWatcher> {
 public:
  using Event = std::shared_ptr<const relay::v1::LifecycleEvent>;
  struct Next {
    Event event;
    std::optional<absl::Status> end;
  };
  LifecycleWatcher(LifecycleLog* log, std::string app_id, LifecycleFilter filter, uint64_t next,
                   size_t max_events, size_t max_bytes, std::function<void()> wake);

  // The next event in cursor order; once ended and drained, the status to end with. When nothing
  // waits, `wake` is called once something does (never from within Take: the caller may hold its
  // own lock around it).
  Next Take();
  const std::string& app_id() const { return app_id_; }

 private:
  friend class LifecycleLog;
  // Queues a committed event (live watchers): false when that passed a bound (the watcher is cut).
  bool Push(const Event& event, size_t bytes, bool* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends after what waits; true when the consumer must be woken.
  bool End(absl::Status status);

  LifecycleLog* const log_;
  const std::string app_id_;
  const LifecycleFilter filter_;
  const size_t max_events_;
  const size_t max_bytes_;
  const std::function<void()> wake_;
  absl::Mutex mu_;
  std::deque<std::pair<Event, size_t>> queue_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_);  // the next cursor to look at
  // Every committed event before next_ was looked at: commits are pushed to it.
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;  // a catch-up read is queued
  uint64_t last_taken_ ABSL_GUARDED_BY(mu_) = 0;
};

class LifecycleLog {
 public:
  LifecycleLog(std::string data_dir, StoreWriter& writer, LifecycleLogOptions options,
               const common::Clock& clock = common::Clock::Real());
  // Commits what is queued; no job of this object outlives it.
  ~LifecycleLog();

  // Opens <data-dir>/webhooks.db and loads each app's last and pruned cursors.
  absl::Status Open();
  // Ends every watcher (UNAVAILABLE), refuses new ones and commits what is queued.
  void Stop();

  // Numbers `event` in `app_id`'s log and queues its commit. Cheap: no I/O.
  void Record(const std::string& app_id, const WebhookEvent& event);

  // A watcher of `app_id`'s log: unset `since` = the events recorded after this call; 0 = from
  // the oldest kept; N = after cursor N (OUT_OF_RANGE when events after N were pruned,
  // INVALID_ARGUMENT when N was never given out). Limits as ChannelWatch::Open.
  absl::StatusOr<std::shared_ptr<LifecycleWatcher>> Watch(const std::string& app_id,
                                                          LifecycleFilter filter,
                                                          std::optional<uint64_t> since,
                                                          std::function<void()> wake);
  // The consumer is gone: forgets the watcher and stops its catch-up reads. Idempotent.
  void Close(const std::shared_ptr<LifecycleWatcher>& watcher);
  // Ends the app's watchers with `why`.
  void CloseApp(const std::string& app_id, const absl::Status& why);
  // Ends the app's watchers and deletes its log (its cursors are not given out again).
  void RemoveApp(const std::string& app_id);
  // Called every few hundred ms (the control plane's sweeper): prunes at most once a second and
  // retries writer jobs a full queue refused.
  void Tick();
  // Runs a prune now and waits for it (tests).
  void PruneNow();
  // Waits until every event recorded so far is committed (tests, Stop). Not on I/O threads.
  void Flush();

  struct Stats {
    uint64_t events = 0;    // events kept in the log now
    uint64_t pruned = 0;    // events pruned since start
    uint64_t dropped = 0;   // events not recorded because the writer was behind
    uint64_t watchers = 0;  // WatchLifecycleEvents streams open now
    uint64_t streamed = 0;  // events handed to streams
    uint64_t cut = 0;       // streams cut for falling behind
  };
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class LifecycleWatcher;
  struct AppLog {
    uint64_t assigned = 0;   // the last cursor given out
    uint64_t committed = 0;  // the last cursor on disk
    uint64_t pruned = 0;     // every cursor up to this one was pruned
    std::vector<std::shared_ptr<LifecycleWatcher>> watchers;  // registered, not closed
  };
  struct Pending {
    std::string app_id;
    relay::v1::LifecycleEvent event;
  };

  void ScheduleCommit() ABSL_LOCKS_EXCLUDED(mu_);
  void ScheduleRead(std::shared_ptr<LifecycleWatcher> w) ABSL_LOCKS_EXCLUDED(mu_);
  void SchedulePrune() ABSL_LOCKS_EXCLUDED(mu_);
  // Writer thread.
  void Commit() ABSL_LOCKS_EXCLUDED(mu_);
  void RunReads() ABSL_LOCKS_EXCLUDED(mu_);
  void ReadPage(const std::shared_ptr<LifecycleWatcher>& w) ABSL_LOCKS_EXCLUDED(mu_);
  void Prune() ABSL_LOCKS_EXCLUDED(mu_);
  bool Exec(const char* sql);

  const std::string data_dir_;
  StoreWriter& writer_;
  const LifecycleLogOptions options_;
  const common::Clock& clock_;
  sqlite3* db_ = nullptr;  // opened by Open; then used only on the writer thread

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppLog> apps_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<LifecycleWatcher>> reads_ ABSL_GUARDED_BY(mu_);
  bool commit_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool read_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool prune_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_prune_ms_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t open_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pruned_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> streamed_{0};
  std::atomic<uint64_t> cut_{0};
};

}  // namespace relay::controlplane
