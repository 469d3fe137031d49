// File: webhooks.h
// Webhooks: every Pusher event type, decided once by the control plane, filtered per endpoint,
// persisted in an outbox (<data-dir>/webhooks.db, or etcd: webhook_backend.h) and delivered at
// least once, in order per
// endpoint (hence per channel), batched, signed (X-Pusher-Key, X-Pusher-Signature), retried
// with exponential backoff and jitter. Each endpoint has at most one request in flight, so a
// slow or dead endpoint delays nothing but itself. See docs/webhooks.md.
//
// Threads. Emit is called under the control plane's order lock, so it only decides, in memory,
// what changes (queues, debounce, overflow) and appends the outbox writes that follow to a FIFO;
// the store's one writer thread (AppStore::writer(), shared with the app store) commits that
// FIFO in order, in one transaction per run, at most one run queued at a time. The FIFO is
// bounded by the outbox bound: an insert not yet committed that is dropped again is taken out
// of the FIFO instead of adding a delete. Endpoint changes (Add, Remove) run on the writer and
// report after their commit, like the app store's writes. Delivery and test requests run on
// threads this object owns and joins in Stop: none outlives it. A commit the store could not
// take (etcd unreachable) is retried first, in order, with a backoff; the events it carries are
// not delivered before they are stored.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/webhook_backend.h"
#include "controlplane/webhook_targets.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"
#include "transport/http_client.h"

namespace relay::controlplane {

class AppStore;
class StoreWriter;

// Result of one HTTP POST.
using PostResult = transport::HttpPostResult;

// Sends one HTTP POST (blocking, bounded by `timeout`): GuardedHttpPost (webhook_sender.h) in
// the binaries, a recorder in tests.
using HttpPost = std::function<PostResult(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body, std::chrono::milliseconds timeout)>;

struct WebhookOptions {
  std::chrono::milliseconds request_timeout{5000};
  size_t max_outbox_per_endpoint = 100000;  // beyond it the oldest events are dropped
  // Refuses link-local and self-targeting URLs at Add (see webhook_targets.h); null = no check.
  // The delivery-time check after DNS resolution lives in the HttpPost the binaries pass.
  std::shared_ptr<const WebhookTargets> targets;
};

// One webhook event, before it is matched to endpoints.
struct WebhookEvent {
  std::string name;  // channel_occupied, member_added, ...
  std::string channel;
  std::string user_id;  // member_added/removed, client_event on presence
  std::string json;     // the complete event object
  // The same, field by field, for the lifecycle log (lifecycle_log.h).
  std::string event, data, socket_id;  // client_event
  uint32_t subscription_count = 0;     // subscription_count
};

class Webhooks {
 public:
  // SQLite: <data_dir>/webhooks.db.
  Webhooks(std::string data_dir, AppStore& apps, HttpPost post, WebhookOptions options = {});
  // Any backend (webhook_backend.h: etcd).
  Webhooks(std::unique_ptr<WebhookBackend> backend, AppStore& apps, HttpPost post,
           WebhookOptions options = {});
  ~Webhooks();

  // Opens the store and loads endpoints and undelivered events.
  absl::Status Open();
  // Fences every write from now on (WebhookBackend::SetFence): once `guard` fails, endpoint
  // changes are refused with FAILED_PRECONDITION and outbox writes are dropped, counted in
  // Totals::fenced_writes. Any thread.
  void SetFence(std::function<std::vector<etcd::Compare>()> guard);
  // Replicas: a follower keeps its Webhooks inactive (nothing delivered: the leader does it);
  // the replica elected leader Reloads endpoints and outbox from the store (what the previous
  // leader left) and activates. Active by default. Reload blocks on the store (not on I/O
  // threads).
  void SetActive(bool active) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);
  void Start();
  // Stops dispatching, joins every delivery and test thread (each ends within the request
  // timeout) and commits the outbox writes still queued.
  void Stop();
  // Commits the outbox writes queued so far (at most `rounds` commits: events keep coming while
  // a leader stops) while this process may still write: a leader calls it before it resigns, so
  // what it decided reaches the next leader. Blocks (bounded by the store's call timeouts).
  void StoreQueued(int rounds = 3) ABSL_LOCKS_EXCLUDED(mu_);

  // `done` runs on the writer thread after the commit, or at once (invalid, queue full).
  void Add(const std::string& app_id, relay::v1::Webhook hook,
           std::function<void(absl::StatusOr<relay::v1::Webhook>)> done);
  absl::StatusOr<relay::v1::Webhook> Add(const std::string& app_id, relay::v1::Webhook hook);
  std::vector<relay::v1::Webhook> List(const std::string& app_id) const;
  void Remove(const std::string& webhook_id, std::function<void(absl::Status)> done);
  absl::Status Remove(const std::string& webhook_id);
  // Sends a test event to every endpoint of the app; blocks (bounded by the request timeout per
  // endpoint). The callback form runs it on a thread this object owns.
  std::vector<relay::v1::TestWebhookResult> Test(const std::string& app_id);
  void Test(const std::string& app_id,
            std::function<void(std::vector<relay::v1::TestWebhookResult>)> done);
  // Removes every endpoint of a deleted app.
  void RemoveApp(const std::string& app_id);

  // Queues `event` for every matching endpoint of the app.
  void Emit(const std::string& app_id, const WebhookEvent& event);
  // Totals since start for /metrics (they never go down, unlike an endpoint's stats, which
  // leave with the endpoint).
  struct Totals {
    uint64_t outbox = 0;     // events waiting in every endpoint's outbox now
    uint64_t delivered = 0;  // events acknowledged with a 2xx
    uint64_t failed = 0;     // failed attempts (each is retried until the retry period ends)
    uint64_t dropped_overflow = 0;
    uint64_t dropped_expired = 0;  // given up after the endpoint's retry period
    uint64_t fenced_writes = 0;    // writes the fence refused (no longer the leader)
    uint64_t store_failures = 0;   // outbox commits the store did not take (retried)
  };
  Totals totals() const ABSL_LOCKS_EXCLUDED(mu_);

  // True when some endpoint of the app wants events of this type (to skip building them).
  bool Wants(const std::string& app_id, const std::string& event_name) const;

  // Builders for the event objects Pusher sends.
  static WebhookEvent ChannelEvent(const std::string& name, const std::string& channel);
  static WebhookEvent MemberEvent(const std::string& name, const std::string& channel,
                                  const std::string& user_id);
  static WebhookEvent ClientEvent(const std::string& channel, const std::string& event,
                                  const std::string& data_json, const std::string& socket_id,
                                  const std::string& user_id);
  static WebhookEvent SubscriptionCountEvent(const std::string& channel, uint32_t count);

 private:
  using Entry = WebhookOutboxEntry;
  struct Endpoint {
    relay::v1::Webhook hook;
    std::deque<Entry> queue;
    bool in_flight = false;
    int attempts = 0;
    int64_t next_attempt_ms = 0;
    int64_t first_failure_ms = 0;
  };
  using OutboxWrite = WebhookOutboxWrite;
  // A thread this object owns: deliveries and tests.
  struct Worker {
    std::thread thread;
    bool done = false;
  };

  // Replaces endpoints, queues and the outbox FIFO with what the backend holds.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);
  bool Matches(const relay::v1::Webhook& hook, const WebhookEvent& e) const;
  void DispatchLoop();
  void QueueEvent(const std::string& app_id, const WebhookEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void Deliver(const std::string& endpoint_id, std::vector<Entry> batch);
  // Records the result of a delivery: the batch leaves the outbox, or is retried later.
  void Settle(const std::string& endpoint_id, const std::vector<Entry>& batch,
              const PostResult& result, bool ok, int64_t now) ABSL_LOCKS_EXCLUDED(mu_);
  std::string Body(const std::vector<Entry>& batch) const;
  // Appends to the outbox FIFO (decided under the lock, written by CommitOutbox).
  void InsertRow(const std::string& endpoint, Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteRow(const std::string& endpoint, int64_t row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues CommitOutbox on the writer unless it is queued already, or the store failed less
  // than a backoff ago (unless `now`). Called without the lock.
  void ScheduleCommit(bool now = false) ABSL_LOCKS_EXCLUDED(mu_);
  // Writer thread: commits the FIFO as it is now.
  void CommitOutbox() ABSL_LOCKS_EXCLUDED(mu_);
  // An endpoint change's status, counted in fenced_writes when the fence refused it.
  absl::Status CountFenced(absl::Status st) ABSL_LOCKS_EXCLUDED(mu_);
  // Commits every outbox write queued so far before returning (at most `rounds` commits when
  // > 0). Blocks: not on I/O threads.
  void FlushOutbox(int rounds = 0) ABSL_LOCKS_EXCLUDED(mu_);
  // Starts `fn` on an owned thread; false when stopping (nothing started).
  bool Spawn(std::function<void()> fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins the finished workers, or all of them.
  void Reap(bool all) ABSL_LOCKS_EXCLUDED(mu_);

  AppStore& apps_;
  StoreWriter& writer_;
  HttpPost post_;
  WebhookOptions options_;
  // Loaded by Open; afterwards used only on the writer thread.
  std::unique_ptr<WebhookBackend> backend_;
  std::atomic<bool> opened_{false};

  mutable absl::Mutex mu_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool active_ ABSL_GUARDED_BY(mu_) = true;
  std::thread dispatcher_;
  std::list<Worker> workers_ ABSL_GUARDED_BY(mu_);
  // The outbox writes decided and not yet committed, in order.
  std::deque<OutboxWrite> outbox_writes_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> uncommitted_inserts_ ABSL_GUARDED_BY(mu_);  // rows inserted in the FIFO
  std::set<int64_t> committing_ ABSL_GUARDED_BY(mu_);           // rows the writer is committing now
  bool commit_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_row_ ABSL_GUARDED_BY(mu_) = 1;
  // After a failed commit: no new one is scheduled before this time (the dispatcher retries).
  int64_t commit_retry_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int commit_failures_in_a_row_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_store_error_ ABSL_GUARDED_BY(mu_);
  Totals totals_ ABSL_GUARDED_BY(mu_);  // all but outbox
};

}  // namespace relay::controlplane
