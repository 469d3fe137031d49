// File: app_store.h
// The app store: apps, their credentials, API tokens, node credentials, daily usage and the
// node registry, persisted by a backend (store_backend.h: SQLite under the data dir by default,
// or etcd shared by control plane replicas) and cached in memory. Every change, made here or
// (etcd) by another replica and seen through the backend's watch, is reported to the listener
// so the control plane can push it to the data planes at once.
//
// Threads. Reads (Find, List, VerifyToken, VerifyNodeToken, ...) are served from memory and never
// wait for SQLite. Every write runs on the one StoreWriter thread, in the order it was asked for:
// a change is decided and persisted there, and only then applied to memory and reported, so the
// memory never shows what is not stored and `mu_` is never held across the backend's I/O.
// Changes another replica made are applied on the writer thread too, in the order etcd made them.
// Each write comes in two forms:
//  - with a callback (for I/O and gRPC threads): it returns at once; the callback runs on the
//    writer thread once the change is committed (or refused), or on the calling thread at once
//    when the request is invalid or the write queue is full (UNAVAILABLE, see StoreWriter);
//  - without one: it waits for the commit. For startup, tests and tools, never on an I/O thread.
// Usage counts and last-used stamps are coalesced in memory and written behind (best effort).
// Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "controlplane/store_backend.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"

namespace relay::controlplane {

// Defaults applied to limits/features left at zero.
relay::v1::App WithDefaults(relay::v1::App app);

// One thread that runs the control plane's SQLite writes (the app store's and the webhook
// outbox's), one job at a time, in the order they were submitted.
// Bounded: at most `capacity` jobs wait. When the queue is full, Submit refuses at once with
// UNAVAILABLE instead of blocking, because its callers are I/O and gRPC threads; an admin call
// then fails with UNAVAILABLE and can be retried. A job submitted from the writer thread itself
// (a job that causes another write) runs at once, inline, as part of the job that caused it, so a
// job never waits for the queue it is draining.
class StoreWriter {
 public:
  explicit StoreWriter(size_t capacity);
  // Runs every job still queued, then joins the thread.
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Called exactly once: on the writer thread with OK (run now), or at once on the calling thread
  // with UNAVAILABLE when the queue is full or the writer is shutting down.
  using Job = std::function<void(absl::Status admitted)>;

  void Submit(Job job);
  // Not bounded by the capacity (refused only while shutting down): for what must be applied
  // whatever the load, like changes another replica already made.
  void SubmitUnbounded(Job job) { Enqueue(std::move(job), false); }
  // Returns once every job submitted before has run. Not bounded by the capacity; blocks, so
  // never on an I/O thread. From the writer thread it returns at once.
  void Flush();
  // Jobs waiting (not counting the one running).
  size_t queued() const;
  size_t capacity() const { return capacity_; }
  bool OnWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run();
  void Enqueue(Job job, bool bounded);

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Calls `start` with a callback and waits for it: the blocking forms of writes that report on
// the writer thread. Never on an I/O thread.
template <typename T>
absl::StatusOr<T> AwaitResult(
    const std::function<void(std::function<void(absl::StatusOr<T>)>)>& start) {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("no result");
  start([&](absl::StatusOr<T> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}
absl::Status AwaitStatus(const std::function<void(std::function<void(absl::Status)>)>& start);

class AppStore : private StoreBackend::Sink {
 public:
  // Called after an app was created or changed (`removed` false) or deleted (`removed` true),
  // on the writer thread, after the change is committed.
  using Listener = std::function<void(const relay::v1::App& app, bool removed)>;
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;
  using DoneStatus = std::function<void(absl::Status)>;

  static constexpr size_t kDefaultMaxQueuedWrites = 1024;

  // Opens (creating if needed) `<data_dir>/relay.db` and runs pending migrations. `clock` times
  // token expiry, secret-rotation overlaps and last-used stamps; it must outlive the store.
  static absl::StatusOr<std::unique_ptr<AppStore>> Open(
      const std::string& data_dir, const common::Clock& clock = common::Clock::Real(),
      size_t max_queued_writes = kDefaultMaxQueuedWrites);
  // On `backend` (EtcdBackend for replicas): loads everything, then follows the changes other
  // processes make.
  static absl::StatusOr<std::unique_ptr<AppStore>> Open(
      std::unique_ptr<StoreBackend> backend, const common::Clock& clock = common::Clock::Real(),
      size_t max_queued_writes = kDefaultMaxQueuedWrites);
  // Runs the writes still queued, then closes the backend.
  ~AppStore() override;

  // Fencing (etcd backend only, store_backend.h): every write from now on commits only while
  // `guard()`'s compares hold, else fails with FAILED_PRECONDITION ("not the leader ...") and
  // writes nothing. False when the backend cannot fence (SQLite). Any thread.
  bool SetFence(StoreBackend::Fence guard) { return backend_->SetFence(std::move(guard)); }
  // Stops applying changes other replicas make (etcd); those already queued still run on the
  // writer (Flush it after this). Before the listener's targets go away. Blocks briefly.
  void StopFollowing() { backend_->StopFollowing(); }
  // "relay.db path" or "etcd prefix ..." (for logs).
  std::string Describe() const { return backend_->Describe(); }

  void SetListener(Listener listener);
  // The writer shared with the webhook outbox (one SQLite writer per control plane).
  StoreWriter& writer() { return *writer_; }

  std::vector<relay::v1::App> List() const;
  // By id or, failing that, by key.
  std::optional<relay::v1::App> Find(std::string_view id_or_key) const;
  std::optional<relay::v1::App> FindByKey(std::string_view key) const;

  void Create(const relay::v1::CreateAppRequest& request, Done<relay::v1::App> done);
  absl::StatusOr<relay::v1::App> Create(const relay::v1::CreateAppRequest& request);
  void Update(const relay::v1::UpdateAppRequest& request, Done<relay::v1::App> done);
  absl::StatusOr<relay::v1::App> Update(const relay::v1::UpdateAppRequest& request);
  void Delete(std::string_view id_or_key, DoneStatus done);
  absl::Status Delete(std::string_view id_or_key);
  void RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds, std::string new_secret,
                    Done<relay::v1::App> done);
  absl::StatusOr<relay::v1::App> RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds,
                                              std::string new_secret);
  // Completes a rotation early: the previous secrets stop verifying now.
  void EndSecretOverlap(std::string_view id_or_key, Done<relay::v1::App> done);
  absl::StatusOr<relay::v1::App> EndSecretOverlap(std::string_view id_or_key);

  // Tokens. The secret text is returned once by CreateToken and stored only as a SHA-256 hash.
  void CreateToken(std::string_view app, std::string name, uint64_t expires_in_seconds,
                   Done<relay::v1::CreateTokenResponse> done);
  absl::StatusOr<relay::v1::CreateTokenResponse> CreateToken(std::string_view app, std::string name,
                                                             uint64_t expires_in_seconds);
  absl::StatusOr<std::vector<relay::v1::ApiToken>> ListTokens(std::string_view app) const;
  void RevokeToken(std::string_view token_id, DoneStatus done);
  absl::Status RevokeToken(std::string_view token_id);
  // The app id the bearer token belongs to, when the token is valid and unexpired (a token is
  // refused from its expiry instant on); records the last-used time (written behind).
  std::optional<std::string> VerifyToken(std::string_view token);

  // Daily message counts (day as YYYY-MM-DD, UTC), by app id. Blocks on the writer: startup only.
  absl::flat_hash_map<std::string, uint64_t> LoadUsage(const std::string& day) const;
  // Records that `app_id` has sent `messages` messages on `day`; a smaller count than the one
  // stored is ignored, so writers racing each other keep the largest. Never blocks: the count
  // is kept in memory and written behind; UNAVAILABLE when the write queue is full (the count is
  // kept and written with the next one).
  absl::Status SaveUsage(const std::string& day, const std::string& app_id, uint64_t messages);

  // Node credentials (NodeLink.Attach). The token text is returned once by CreateNodeToken and
  // stored only as a SHA-256 hash; verification reads memory only.
  void CreateNodeToken(std::string name, std::string node_id,
                       Done<relay::v1::CreateNodeTokenResponse> done);
  absl::StatusOr<relay::v1::CreateNodeTokenResponse> CreateNodeToken(std::string name,
                                                                     std::string node_id);
  std::vector<relay::v1::NodeToken> ListNodeTokens() const;
  void RevokeNodeToken(std::string_view token_id, DoneStatus done);
  absl::Status RevokeNodeToken(std::string_view token_id);
  // The credential `token` belongs to, or nullopt.
  std::optional<relay::v1::NodeToken> VerifyNodeToken(std::string_view token) const;
  // Records that a node attached with the credential now (in memory).
  void TouchNodeToken(std::string_view token_id);
  bool NodeTokenExists(std::string_view token_id) const;

  // The node registry: data planes attached and not known to be gone (left with a goodbye or
  // declared gone after the node timeout). A restarted control plane waits for them before it
  // routes (route_gate.h). LoadKnownNodes blocks on the writer (startup only); the other two
  // are written behind, in order, and a failure is logged.
  std::vector<std::string> LoadKnownNodes() const;
  void RememberNode(const std::string& node_id);
  void ForgetNode(const std::string& node_id);

 private:
  AppStore(std::unique_ptr<StoreBackend> backend, const common::Clock& clock,
           size_t max_queued_writes);
  // Replaces the cache with `snapshot`; returns the apps that are gone.
  std::vector<relay::v1::App> Replace(StoreSnapshot snapshot);
  // StoreBackend::Sink: changes another replica made (writer thread).
  void RemoteAppPut(const relay::v1::App& app) override;
  void RemoteAppDeleted(const std::string& id) override;
  void RemoteTokenPut(const std::string& hash, const relay::v1::ApiToken& token) override;
  void RemoteTokenDeleted(const std::string& id) override;
  void RemoteNodeTokenPut(const std::string& hash, const relay::v1::NodeToken& token) override;
  void RemoteNodeTokenDeleted(const std::string& id) override;
  void RemoteReload(StoreSnapshot snapshot) override;
  // Runs `body` on the writer and hands its result to `done` (the refusal, when not admitted).
  template <typename T>
  void OnWriter(std::function<absl::StatusOr<T>()> body, Done<T> done) const;
  void OnWriter(std::function<absl::Status()> body, DoneStatus done) const;
  // On the writer: applies `change` to a copy of the app, bumps its revision, persists, then
  // applies and publishes it.
  absl::StatusOr<relay::v1::App> ChangeOnWriter(
      std::string_view id_or_key, const std::function<absl::Status(relay::v1::App&)>& change);
  // Writes the coalesced usage counts and last-used stamps (writer thread).
  void WriteBehind();
  // Queues WriteBehind unless it is queued already; false when the queue refused it.
  bool ScheduleWriteBehind();
  const relay::v1::App* FindLocked(std::string_view id_or_key) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Notify(const relay::v1::App& app, bool removed);

  const common::Clock& clock_;
  // Used only on the writer thread once Open has returned (Open itself runs before the writer
  // has any job); SetFence and Describe are thread-safe.
  std::unique_ptr<StoreBackend> backend_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, relay::v1::App> apps_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> key_to_id_ ABSL_GUARDED_BY(mu_);
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  // API tokens and node credentials by the SHA-256 hex of their secret.
  absl::flat_hash_map<std::string, relay::v1::ApiToken> tokens_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, relay::v1::NodeToken> node_tokens_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);

  // Written behind: usage by (day, app id), last-used stamps by token id.
  mutable absl::Mutex pending_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::map<std::pair<std::string, std::string>, uint64_t> pending_usage_
      ABSL_GUARDED_BY(pending_mu_);
  absl::flat_hash_map<std::string, int64_t> pending_last_used_ ABSL_GUARDED_BY(pending_mu_);
  bool write_behind_scheduled_ ABSL_GUARDED_BY(pending_mu_) = false;

  // Last: destroyed first, so its remaining jobs run while everything above is alive.
  std::unique_ptr<StoreWriter> writer_;
};

}  // namespace relay::controlplane
