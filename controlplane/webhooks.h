// File: webhooks.h
// Webhooks: every Pusher event type, decided once by the control plane, filtered per endpoint,
// persisted in an outbox (<data-dir>/webhooks.db) and delivered at least once, in order per
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
// threads this object owns and joins in Stop: none outlives it.
// Thread-safe.
#pragma once

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
#include "controlplane/webhook_targets.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"
#include "transport/http_client.h"

struct sqlite3;

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
  Webhooks(std::string data_dir, AppStore& apps, HttpPost post, WebhookOptions options = {});
  ~Webhooks();

  // Opens the store and loads endpoints and undelivered events.
  absl::Status Open();
  void Start();
  // Stops dispatching, joins every delivery and test thread (each ends within the request
  // timeout) and commits the outbox writes still queued.
  void Stop();

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
  struct Entry {
    int64_t row = 0;
    std::string name, channel, user_id, json;
    int64_t created_ms = 0;
    int64_t not_before_ms = 0;  // delayed events (vacated, member_removed)
  };
  struct Endpoint {
    relay::v1::Webhook hook;
    std::deque<Entry> queue;
    bool in_flight = false;
    int attempts = 0;
    int64_t next_attempt_ms = 0;
    int64_t first_failure_ms = 0;
  };

  // One outbox write: the insert of `entry` or, when it is empty, the delete of `row`.
  struct OutboxWrite {
    int64_t row = 0;
    std::string endpoint;
    std::optional<Entry> entry;
  };
  // A thread this object owns: deliveries and tests.
  struct Worker {
    std::thread thread;
    bool done = false;
  };

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
  void DeleteRow(int64_t row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues CommitOutbox on the writer unless it is queued already. Called without the lock.
  void ScheduleCommit() ABSL_LOCKS_EXCLUDED(mu_);
  // Writer thread: commits the FIFO as it is now.
  void CommitOutbox() ABSL_LOCKS_EXCLUDED(mu_);
  void Commit(const std::deque<OutboxWrite>& writes) ABSL_LOCKS_EXCLUDED(mu_);
  // Commits every outbox write queued so far before returning. Blocks: not on I/O threads.
  void FlushOutbox() ABSL_LOCKS_EXCLUDED(mu_);
  // Starts `fn` on an owned thread; false when stopping (nothing started).
  bool Spawn(std::function<void()> fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins the finished workers, or all of them.
  void Reap(bool all) ABSL_LOCKS_EXCLUDED(mu_);

  std::string data_dir_;
  AppStore& apps_;
  StoreWriter& writer_;
  HttpPost post_;
  WebhookOptions options_;
  // Opened by Open; afterwards used only on the writer thread.
  sqlite3* db_ = nullptr;

  mutable absl::Mutex mu_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread dispatcher_;
  std::list<Worker> workers_ ABSL_GUARDED_BY(mu_);
  // The outbox writes decided and not yet committed, in order.
  std::deque<OutboxWrite> outbox_writes_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> uncommitted_inserts_ ABSL_GUARDED_BY(mu_);  // rows inserted in the FIFO
  std::set<int64_t> committing_ ABSL_GUARDED_BY(mu_);           // rows the writer is committing now
  bool commit_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_row_ ABSL_GUARDED_BY(mu_) = 1;
  Totals totals_ ABSL_GUARDED_BY(mu_);  // all but outbox
};

}  // namespace relay::controlplane
