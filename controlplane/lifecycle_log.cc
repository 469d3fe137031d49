#include "controlplane/lifecycle_log.h"

#include <sys/stat.h>

#include <algorithm>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/app_store.h"
#include "controlplane/sqlite_file.h"

namespace relay::controlplane {
namespace {

// WITHOUT ROWID: the rows are stored in (app, cursor) order, which is how they are read.
constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS lifecycle_events (app_id TEXT NOT NULL, cursor INTEGER NOT NULL,"
    " time_ms INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (app_id, cursor))"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS lifecycle_pruned (app_id TEXT PRIMARY KEY,"
    " through INTEGER NOT NULL);";

// Reading pages of the log happens this many pages per job at most, so that one watcher whose
// filter matches nothing cannot hold the writer for long.
constexpr int kPagesPerJob = 16;

// A prepared statement freed at scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &st_, nullptr); }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  sqlite3_stmt* get() const { return st_; }
  bool ok() const { return st_ != nullptr; }
  Stmt& Text(int i, const std::string& s) {
    sqlite3_bind_text(st_, i, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  bool Row() { return st_ != nullptr && sqlite3_step(st_) == SQLITE_ROW; }
  bool Done() { return st_ != nullptr && sqlite3_step(st_) == SQLITE_DONE; }

 private:
  sqlite3_stmt* st_ = nullptr;
};

std::string ColumnText(sqlite3_stmt* st, int c) {
  const auto* p = sqlite3_column_text(st, c);
  return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
}

}  // namespace

bool LifecycleFilter::Matches(const relay::v1::LifecycleEvent& e) const {
  if (!names.empty() && !names.contains(e.name())) return false;
  return prefix.empty() || e.channel().compare(0, prefix.size(), prefix) == 0;
}

LifecycleWatcher::LifecycleWatcher(LifecycleLog* log, std::string app_id, LifecycleFilter filter,
                                   uint64_t next, size_t max_events, size_t max_bytes,
                                   std::function<void()> wake)
    : log_(log),
      app_id_(std::move(app_id)),
      filter_(std::move(filter)),
      max_events_(max_events),
      max_bytes_(max_bytes),
      wake_(std::move(wake)),
      next_(next) {}

LifecycleWatcher::Next LifecycleWatcher::Take() {
  Next next;
  bool read = false;
  {
    absl::MutexLock lock(&mu_);
    if (!queue_.empty()) {
      next.event = std::move(queue_.front().first);
      bytes_ -= queue_.front().second;
      queue_.pop_front();
      last_taken_ = next.event->cursor();
      log_->streamed_.fetch_add(1, std::memory_order_relaxed);
      return next;
    }
    if (end_) {
      next.end = end_;
      return next;
    }
    waiting_ = true;
    if (!live_ && !reading_) reading_ = read = true;
  }
  if (read) log_->ScheduleRead(shared_from_this());
  return next;
}

bool LifecycleWatcher::Push(const Event& event, size_t bytes, bool* wake) {
  if (end_) return true;
  if (queue_.size() + 1 > max_events_ || bytes_ + bytes > max_bytes_) {
    queue_.clear();
    bytes_ = 0;
    live_ = false;
    end_ = absl::ResourceExhaustedError(common::StrCat(
        "watcher too slow: more than ", max_events_, " events or ", max_bytes_,
        " bytes were waiting to be sent to it; nothing is lost: watch again with since_cursor = "
        "the last cursor you processed (the last one sent was ",
        last_taken_, ")"));
    *wake = waiting_;
    waiting_ = false;
    return false;
  }
  bytes_ += bytes;
  queue_.emplace_back(event, bytes);
  if (waiting_) {
    *wake = true;
    waiting_ = false;
  }
  return true;
}

bool LifecycleWatcher::End(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (end_) return false;
  end_ = std::move(status);
  bool wake = waiting_;
  waiting_ = false;
  return wake;
}

LifecycleLog::LifecycleLog(std::string data_dir, StoreWriter& writer, LifecycleLogOptions options,
                           const common::Clock& clock)
    : data_dir_(std::move(data_dir)), writer_(writer), options_(options), clock_(clock) {}

LifecycleLog::~LifecycleLog() {
  Stop();
  if (db_ != nullptr) sqlite3_close(db_);
}

bool LifecycleLog::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK) return true;
  RELAY_LOG(kWarn, "lifecycle", "webhooks.db: ", sqlite3_errmsg(db_));
  return false;
}

absl::Status LifecycleLog::Open() {
  absl::MutexLock lock(&mu_);
  auto db = OpenSqliteFile(data_dir_ + "/webhooks.db");
  if (!db.ok()) return db.status();
  db_ = *db;
  if (sqlite3_exec(db_, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return absl::InternalError(common::StrCat("webhooks.db: ", sqlite3_errmsg(db_)));
  }
  Stmt last(db_, "SELECT app_id, MAX(cursor) FROM lifecycle_events GROUP BY app_id;");
  while (last.Row()) {
    AppLog& a = apps_[ColumnText(last.get(), 0)];
    a.committed = a.assigned = static_cast<uint64_t>(sqlite3_column_int64(last.get(), 1));
  }
  Stmt pruned(db_, "SELECT app_id, through FROM lifecycle_pruned;");
  while (pruned.Row()) {
    AppLog& a = apps_[ColumnText(pruned.get(), 0)];
    a.pruned = static_cast<uint64_t>(sqlite3_column_int64(pruned.get(), 1));
    a.committed = a.assigned = std::max(a.committed, a.pruned);
  }
  return absl::OkStatus();
}

void LifecycleLog::Stop() {
  std::vector<std::shared_ptr<LifecycleWatcher>> ended;
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      closed_ = true;
      for (auto& [id, a] : apps_) ended.insert(ended.end(), a.watchers.begin(), a.watchers.end());
    }
  }
  auto why = absl::UnavailableError(
      "the control plane is shutting down; watch again with since_cursor = your last cursor "
      "once it (or another one) is up");
  for (const auto& w : ended) {
    if (w->End(why)) w->wake_();
  }
  Flush();
}

void LifecycleLog::Flush() {
  if (db_ == nullptr) return;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (pending_.empty() && !commit_scheduled_) break;
    }
    ScheduleCommit();
    writer_.Flush();  // a commit refused for a full queue is retried once the queue drained
  }
  writer_.Flush();
}

void LifecycleLog::Record(const std::string& app_id, const WebhookEvent& e) {
  {
    absl::MutexLock lock(&mu_);
    if (db_ == nullptr) return;
    if (pending_.size() >= options_.max_pending) {
      // Not numbered: the log has no hole, it misses this event (counted, see docs/metrics.md).
      if (dropped_++ % 10000 == 0) {
        RELAY_LOG(kWarn, "lifecycle", "the writer is ", pending_.size(),
                  " events behind; lifecycle events are being dropped");
      }
      return;
    }
    Pending& p = pending_.emplace_back();
    p.app_id = app_id;
    relay::v1::LifecycleEvent& ev = p.event;
    ev.set_cursor(++apps_[app_id].assigned);
    ev.set_name(e.name);
    ev.set_channel(e.channel);
    ev.set_user_id(e.user_id);
    ev.set_event(e.event);
    ev.set_data(e.data);
    ev.set_socket_id(e.socket_id);
    ev.set_subscription_count(e.subscription_count);
    ev.set_time_ms(clock_.NowUnixMs());
  }
  ScheduleCommit();
}

void LifecycleLog::ScheduleCommit() {
  {
    absl::MutexLock lock(&mu_);
    if (commit_scheduled_ || pending_.empty() || db_ == nullptr) return;
    commit_scheduled_ = true;
  }
  writer_.Submit([this](absl::Status admitted) {
    if (admitted.ok()) {
      Commit();
      RunReads();
      return;
    }
    // The queue is full: the events stay queued; the next event or Tick() retries.
    absl::MutexLock lock(&mu_);
    commit_scheduled_ = false;
  });
}

void LifecycleLog::Commit() {
  std::deque<Pending> rows;
  {
    absl::MutexLock lock(&mu_);
    rows.swap(pending_);
    commit_scheduled_ = false;
  }
  if (rows.empty()) return;
  bool ok = Exec("BEGIN;");
  {
    Stmt ins(db_,
             "INSERT OR REPLACE INTO lifecycle_events (app_id, cursor, time_ms, event)"
             " VALUES (?1, ?2, ?3, ?4);");
    std::string blob;
    for (const auto& r : rows) {
      if (!ok || !ins.ok()) break;
      r.event.SerializeToString(&blob);
      ins.Text(1, r.app_id).Int(2, static_cast<int64_t>(r.event.cursor()));
      ins.Int(3, r.event.time_ms());
      sqlite3_bind_blob(ins.get(), 4, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      ok = ins.Done();
      sqlite3_reset(ins.get());
    }
    ok = ok && ins.ok();
  }
  if (!ok || !Exec("COMMIT;")) {
    // Never streamed (only committed events are): no consumer holds one of these cursors.
    Exec("ROLLBACK;");
    absl::MutexLock lock(&mu_);
    dropped_ += rows.size();
    RELAY_LOG(kWarn, "lifecycle", "cannot write ", rows.size(), " lifecycle events");
    return;
  }
  // Hand each event to the watchers at the end of its app's log, one copy per event.
  absl::flat_hash_map<std::string, std::vector<std::shared_ptr<LifecycleWatcher>>> by_app;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& r : rows) {
      AppLog& a = apps_[r.app_id];
      a.committed = std::max(a.committed, r.event.cursor());
      if (!a.watchers.empty() && !by_app.contains(r.app_id)) by_app[r.app_id] = a.watchers;
    }
  }
  if (by_app.empty()) return;
  std::vector<std::shared_ptr<LifecycleWatcher>> wake;
  for (auto& r : rows) {
    auto it = by_app.find(r.app_id);
    if (it == by_app.end()) continue;
    const uint64_t cursor = r.event.cursor();
    LifecycleWatcher::Event shared;
    size_t bytes = 0;
    for (const auto& w : it->second) {
      bool woken = false;
      absl::MutexLock lock(&w->mu_);
      if (!w->live_ || w->end_ || cursor < w->next_) continue;
      w->next_ = cursor + 1;
      if (!w->filter_.Matches(shared ? *shared : r.event)) continue;
      if (!shared) {
        bytes = r.event.ByteSizeLong();
        shared = std::make_shared<const relay::v1::LifecycleEvent>(std::move(r.event));
      }
      if (!w->Push(shared, bytes, &woken)) cut_.fetch_add(1, std::memory_order_relaxed);
      if (woken) wake.push_back(w);
    }
  }
  for (const auto& w : wake) w->wake_();
}

absl::StatusOr<std::shared_ptr<LifecycleWatcher>> LifecycleLog::Watch(const std::string& app_id,
                                                                      LifecycleFilter filter,
                                                                      std::optional<uint64_t> since,
                                                                      std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  if (closed_ || db_ == nullptr) {
    return absl::UnavailableError("the control plane is shutting down; watch again later");
  }
  if (open_ >= options_.watch.max_watchers) {
    return absl::UnavailableError(
        common::StrCat("this control plane has ", options_.watch.max_watchers,
                       " lifecycle watchers open, its limit (--max-watchers); try again later"));
  }
  AppLog& a = apps_[app_id];
  if (a.watchers.size() >= options_.watch.max_watchers_per_app) {
    return absl::ResourceExhaustedError(common::StrCat(
        "app '", app_id, "' has ", a.watchers.size(),
        " lifecycle watchers open, the limit per app (--max-watchers-per-app); close one first"));
  }
  uint64_t next = a.assigned + 1;
  if (since) {
    if (*since > a.assigned) {
      return absl::InvalidArgumentError(
          common::StrCat("since_cursor ", *since, " was never given out: the last cursor of app '",
                         app_id, "' is ", a.assigned, "; resume with a cursor this stream sent"));
    }
    if (*since != 0 && *since < a.pruned) {
      return absl::OutOfRangeError(common::StrCat(
          "since_cursor ", *since, " is older than the lifecycle log keeps: events up to cursor ",
          a.pruned,
          " were pruned (--lifecycle-retention-seconds, --lifecycle-max-events-per-app); "
          "reconcile your state from the channel queries, then watch again without "
          "since_cursor (live) or with since_cursor 0 (the oldest event kept)"));
    }
    next = *since == 0 ? a.pruned + 1 : *since + 1;
  }
  size_t max_events = std::max<size_t>(1, options_.watch.buffer_events);
  auto w = std::make_shared<LifecycleWatcher>(this, app_id, std::move(filter), next, max_events,
                                              options_.watch.buffer_bytes, std::move(wake));
  a.watchers.push_back(w);
  ++open_;
  return w;
}

void LifecycleLog::Close(const std::shared_ptr<LifecycleWatcher>& watcher) {
  watcher->End(absl::CancelledError("closed"));  // a read still queued for it stops there
  absl::MutexLock lock(&mu_);
  auto it = apps_.find(watcher->app_id());
  if (it == apps_.end()) return;
  auto& list = it->second.watchers;
  auto found = std::find(list.begin(), list.end(), watcher);
  if (found == list.end()) return;
  list.erase(found);
  --open_;
}

void LifecycleLog::CloseApp(const std::string& app_id, const absl::Status& why) {
  std::vector<std::shared_ptr<LifecycleWatcher>> ended;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(app_id);
    if (it == apps_.end()) return;
    ended = it->second.watchers;
  }
  for (const auto& w : ended) {
    if (w->End(why)) w->wake_();
  }
}

void LifecycleLog::RemoveApp(const std::string& app_id) {
  CloseApp(app_id, absl::NotFoundError(common::StrCat("app '", app_id, "' was deleted")));
  writer_.Submit([this, app_id](absl::Status admitted) {
    if (!admitted.ok()) return;  // the rows go with the retention instead
    uint64_t through = 0;
    {
      absl::MutexLock lock(&mu_);
      through = apps_[app_id].committed;
    }
    Exec("BEGIN;");
    Stmt del(db_, "DELETE FROM lifecycle_events WHERE app_id = ?1 AND cursor <= ?2;");
    del.Text(1, app_id).Int(2, static_cast<int64_t>(through)).Done();
    Stmt mark(db_, "INSERT OR REPLACE INTO lifecycle_pruned (app_id, through) VALUES (?1, ?2);");
    mark.Text(1, app_id).Int(2, static_cast<int64_t>(through)).Done();
    if (Exec("COMMIT;")) {
      absl::MutexLock lock(&mu_);
      AppLog& a = apps_[app_id];
      a.pruned = std::max(a.pruned, through);
    } else {
      Exec("ROLLBACK;");
    }
  });
}

void LifecycleLog::ScheduleRead(std::shared_ptr<LifecycleWatcher> w) {
  bool submit = false;
  {
    absl::MutexLock lock(&mu_);
    reads_.push_back(std::move(w));
    // On the writer thread the job running now drains reads_ before it returns (a Submit there
    // would run inline, under the caller's locks).
    if (read_scheduled_ || writer_.OnWriterThread()) return;
    read_scheduled_ = submit = true;
  }
  if (!submit) return;
  writer_.Submit([this](absl::Status admitted) {
    if (!admitted.ok()) {
      // The queue is full: the reads stay queued and Tick() retries (no wake from here: the
      // caller may hold its own locks).
      absl::MutexLock lock(&mu_);
      read_scheduled_ = false;
      return;
    }
    RunReads();
  });
}

void LifecycleLog::RunReads() {
  while (true) {
    std::shared_ptr<LifecycleWatcher> w;
    {
      absl::MutexLock lock(&mu_);
      read_scheduled_ = false;
      if (reads_.empty()) return;
      w = std::move(reads_.front());
      reads_.pop_front();
    }
    ReadPage(w);
  }
}

void LifecycleLog::ReadPage(const std::shared_ptr<LifecycleWatcher>& w) {
  const size_t page = std::max<size_t>(1, std::min(options_.page_events, w->max_events_));
  Stmt sel(db_,
           "SELECT cursor, event FROM lifecycle_events WHERE app_id = ?1 AND cursor >= ?2"
           " ORDER BY cursor LIMIT ?3;");
  for (int pages = 0; pages < kPagesPerJob; ++pages) {
    uint64_t next = 0;
    {
      absl::MutexLock lock(&w->mu_);
      if (w->end_) {
        w->reading_ = false;
        return;
      }
      next = w->next_;
    }
    uint64_t pruned = 0, committed = 0;
    {
      absl::MutexLock lock(&mu_);
      AppLog& a = apps_[w->app_id()];
      pruned = a.pruned;
      committed = a.committed;
    }
    if (next <= pruned) {
      bool wake = w->End(absl::OutOfRangeError(
          common::StrCat("the lifecycle log was pruned past cursor ", next - 1,
                         " while this stream caught up", " (events up to ", pruned,
                         " are gone); reconcile from the channel queries, then watch again")));
      if (wake) w->wake_();
      return;
    }
    std::vector<std::pair<LifecycleWatcher::Event, size_t>> rows;
    sqlite3_reset(sel.get());
    sel.Text(1, w->app_id()).Int(2, static_cast<int64_t>(next)).Int(3, static_cast<int64_t>(page));
    while (sel.Row()) {
      auto ev = std::make_shared<relay::v1::LifecycleEvent>();
      ev->ParseFromArray(sqlite3_column_blob(sel.get(), 1), sqlite3_column_bytes(sel.get(), 1));
      size_t bytes = static_cast<size_t>(sqlite3_column_bytes(sel.get(), 1));
      rows.emplace_back(std::move(ev), bytes);
    }
    bool wake = false, done = false;
    {
      absl::MutexLock lock(&w->mu_);
      if (w->end_) {
        w->reading_ = false;
        return;
      }
      size_t taken = 0;
      for (const auto& [ev, bytes] : rows) {
        // Within the byte bound too; what does not fit is read again next time.
        if (!w->queue_.empty() && w->bytes_ + bytes > w->max_bytes_) break;
        ++taken;
        w->next_ = ev->cursor() + 1;
        if (!w->filter_.Matches(*ev)) continue;
        w->bytes_ += bytes;
        w->queue_.emplace_back(ev, bytes);
      }
      // Commits run on this thread too: nothing was committed since the read.
      if (taken == rows.size() && (rows.size() < page || w->next_ > committed)) w->live_ = true;
      if (!w->queue_.empty() || w->live_) {
        w->reading_ = false;
        done = true;
        wake = w->waiting_ && !w->queue_.empty();
        if (wake) w->waiting_ = false;
      }
    }
    if (wake) w->wake_();
    if (done) return;
  }
  // Only filtered-out events so far: go on after the other jobs (reading_ stays set).
  absl::MutexLock lock(&mu_);
  reads_.push_back(w);
}

void LifecycleLog::Tick() {
  ScheduleCommit();
  bool reads = false;
  {
    absl::MutexLock lock(&mu_);
    reads = !reads_.empty() && !read_scheduled_;
    if (reads) read_scheduled_ = true;
  }
  if (reads) {
    writer_.Submit([this](absl::Status admitted) {
      if (admitted.ok()) return RunReads();
      absl::MutexLock lock(&mu_);
      read_scheduled_ = false;
    });
  }
  SchedulePrune();
}

void LifecycleLog::SchedulePrune() {
  int64_t now = clock_.NowUnixMs();
  {
    absl::MutexLock lock(&mu_);
    if (db_ == nullptr || prune_scheduled_ || now - last_prune_ms_ < 1000) return;
    prune_scheduled_ = true;
    last_prune_ms_ = now;
  }
  writer_.Submit([this](absl::Status admitted) {
    if (admitted.ok()) Prune();
    absl::MutexLock lock(&mu_);
    prune_scheduled_ = false;
  });
}

void LifecycleLog::PruneNow() {
  if (db_ == nullptr) return;
  writer_.Submit([this](absl::Status admitted) {
    if (admitted.ok()) Prune();
  });
  writer_.Flush();
}

void LifecycleLog::Prune() {
  const int64_t cutoff =
      clock_.NowUnixMs() -
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.retention).count();
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> logs;  // app, pruned, committed
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, a] : apps_) {
      if (a.committed > a.pruned) logs.emplace_back(id, a.pruned, a.committed);
    }
  }
  uint64_t budget = std::max<uint64_t>(1, options_.prune_batch);
  Stmt old(db_,
           "SELECT MAX(cursor) FROM (SELECT cursor, time_ms FROM lifecycle_events"
           " WHERE app_id = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3) WHERE time_ms < ?4;");
  Stmt del(db_, "DELETE FROM lifecycle_events WHERE app_id = ?1 AND cursor <= ?2;");
  Stmt mark(db_, "INSERT OR REPLACE INTO lifecycle_pruned (app_id, through) VALUES (?1, ?2);");
  for (const auto& [app_id, pruned, committed] : logs) {
    if (budget == 0) break;
    uint64_t through =
        committed > options_.max_events_per_app ? committed - options_.max_events_per_app : 0;
    sqlite3_reset(old.get());
    old.Text(1, app_id).Int(2, static_cast<int64_t>(pruned));
    old.Int(3, static_cast<int64_t>(budget)).Int(4, cutoff);
    if (old.Row() && sqlite3_column_type(old.get(), 0) != SQLITE_NULL) {
      through = std::max(through, static_cast<uint64_t>(sqlite3_column_int64(old.get(), 0)));
    }
    through = std::min(through, pruned + budget);
    if (through <= pruned) continue;
    if (!Exec("BEGIN;")) return;
    sqlite3_reset(del.get());
    sqlite3_reset(mark.get());
    bool ok = del.Text(1, app_id).Int(2, static_cast<int64_t>(through)).Done() &&
              mark.Text(1, app_id).Int(2, static_cast<int64_t>(through)).Done();
    if (!ok || !Exec("COMMIT;")) {
      Exec("ROLLBACK;");
      return;
    }
    budget -= through - pruned;
    absl::MutexLock lock(&mu_);
    AppLog& a = apps_[app_id];
    a.pruned = std::max(a.pruned, through);
    pruned_total_ += through - pruned;
  }
}

LifecycleLog::Stats LifecycleLog::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s;
  for (const auto& [id, a] : apps_) s.events += a.committed - std::min(a.committed, a.pruned);
  s.pruned = pruned_total_;
  s.dropped = dropped_;
  s.watchers = open_;
  s.streamed = streamed_.load(std::memory_order_relaxed);
  s.cut = cut_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace relay::controlplane
