// File: webhook_backend.h
// Where Webhooks keeps its endpoint configs and its outbox: the seam between the delivery logic
// (webhooks.h) and the storage. Two backends:
//   - SQLite (the default): <data-dir>/webhooks.db, tables `webhooks` and `outbox`.
//   - etcd (ControlPlaneOptions::etcd_endpoints): <prefix>/v1/webhooks/<id> holds an endpoint's
//     relay.v1.Webhook, <prefix>/v1/outbox/<endpoint>/<row, 20 digits> one undelivered event
//     (relay.v1.WebhookOutboxEntry), <prefix>/v1/outbox_next_row the highest row ever numbered.
//     A newly elected leader loads them and carries on delivering (docs/webhooks.md).
// Every method runs on the store's writer thread (Open/Load before Start), one at a time, so a
// backend needs no locking of its own beyond the fence.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/etcd/etcd_client.h"
#include "relay/v1/types.pb.h"

namespace relay::controlplane {

// One undelivered event of one endpoint's outbox.
struct WebhookOutboxEntry {
  int64_t row = 0;
  std::string name, channel, user_id, json;
  int64_t created_ms = 0;
  int64_t not_before_ms = 0;  // delayed events (vacated, member_removed)
};

// One outbox write: the insert of `entry` or, when it is empty, the delete of `row` (of
// `endpoint`: the etcd key names it).
struct WebhookOutboxWrite {
  int64_t row = 0;
  std::string endpoint;
  std::optional<WebhookOutboxEntry> entry;
};

// What a backend holds when Webhooks opens it.
struct WebhookStoreContents {
  std::vector<relay::v1::Webhook> endpoints;
  // (endpoint, entry), each endpoint's entries in row order.
  std::vector<std::pair<std::string, WebhookOutboxEntry>> outbox;
  // The highest row ever numbered (new rows continue after it, never reusing one).
  int64_t max_row = 0;
};

// The outcome of committing a run of outbox writes.
struct WebhookCommitResult {
  // The first `written` writes are stored, in order (a prefix: a later write is never stored
  // before an earlier one, which keeps each endpoint's order for whoever loads them next).
  size_t written = 0;
  // OK: all of them. FAILED_PRECONDITION: the fence refused (this process is no longer the
  // leader); nothing more will be written. UNAVAILABLE: the store did not answer; the writes
  // from `written` on may or may not be stored, and writing them again is harmless (puts of the
  // same value, deletes). Other: the writes were dropped (logged by the backend). etcd skips,
  // logged, a transaction it refuses for its content (an event over its request size), so one
  // such event cannot hold back the outbox.
  absl::Status status;
};

class WebhookBackend {
 public:
  virtual ~WebhookBackend() = default;
  // For logs: "webhooks.db", "etcd /relay/v1/".
  virtual std::string Describe() const = 0;
  virtual absl::StatusOr<WebhookStoreContents> Load() = 0;
  virtual absl::Status AddEndpoint(const relay::v1::Webhook& hook) = 0;
  // Removes the endpoint and its whole outbox.
  virtual absl::Status RemoveEndpoint(const std::string& webhook_id) = 0;
  virtual WebhookCommitResult Commit(const std::deque<WebhookOutboxWrite>& writes) = 0;
  // Fencing: when set, every write also requires `guard()`'s compares to hold (one etcd
  // transaction); when they fail nothing is written and the write reports FAILED_PRECONDITION.
  // Ignored by SQLite (a single control plane has nothing to be fenced from). Any thread.
  virtual void SetFence(std::function<std::vector<etcd::Compare>()> guard) { (void)guard; }
};

// <data_dir>/webhooks.db.
std::unique_ptr<WebhookBackend> MakeSqliteWebhookBackend(std::string data_dir);

struct EtcdWebhookOptions {
  // Keys live under <prefix>/v1/ (ControlPlaneOptions::etcd_prefix).
  std::string prefix = "/relay";
  // etcd refuses a transaction of more than --max-txn-ops (128 by default) operations, or a
  // request over --max-request-bytes (1.5 MiB): a run of writes is cut into transactions below
  // both, committed in order. Half a MiB keeps each well inside the client's 2 s call deadline
  // on a slow disk (a transaction that times out is written again).
  size_t max_txn_ops = 128;
  size_t max_txn_bytes = 512 * 1024;
  // Entries read per range request on Load: a response stays under gRPC's 4 MiB message limit
  // with events up to the data plane's default --max-frame-bytes (64 KiB); cut to a quarter
  // after a failed page (larger frames configured), down to one entry.
  int64_t load_page = 50;
};

// `client` must outlive the backend.
std::unique_ptr<WebhookBackend> MakeEtcdWebhookBackend(etcd::Client& client,
                                                       EtcdWebhookOptions options = {});

}  // namespace relay::controlplane
