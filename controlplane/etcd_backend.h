// File: etcd_backend.h
// The app store on etcd (store_backend.h), shared by control plane replicas. Keys under
// `<prefix>/v1/`:
//   meta/schema            "1" (a newer schema refuses to open)
//   apps/<id>              relay.v1.App (serialized)
//   app-keys/<key>         the app id: with apps/<id>, one transaction makes an id or key unique
//                          (Compare::Absent), so two replicas creating the same one cannot both win
//   tokens/<id>            relay.v1.StoredApiToken (the token and the SHA-256 of its secret)
//   node-tokens/<id>       relay.v1.StoredNodeToken
//   usage/<day>/<app id>   messages that day (decimal), kept at the largest written
//   nodes/<node id>        when it attached (Unix ms, decimal): the node registry
// Changes another replica makes come back through a watch on the prefix, resumed from the
// revision after the initial load; when the history it needs is compacted, everything is read
// again (Sink::RemoteReload) and the watch restarts. Writes this process made are recognised
// by their revision and not applied twice. An app update or delete runs only if the app is
// still at the revision this process last saw (else ABORTED: retry).
// Fencing (SetFence): every write then goes through Client::CommitIf(guard(), txn).
// Every etcd call is bounded by the client's call timeout. Writer thread only (see
// store_backend.h) except SetFence and StopFollowing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd/watch.h"
#include "controlplane/store_backend.h"

namespace relay::controlplane {

class EtcdBackend : public StoreBackend {
 public:
  static constexpr int64_t kSchema = 1;

  // Checks (and on an empty prefix writes) meta/schema. `client` must outlive the backend.
  // `prefix` like "/relay" (no trailing '/').
  static absl::StatusOr<std::unique_ptr<EtcdBackend>> Open(etcd::Client& client,
                                                           std::string prefix);
  ~EtcdBackend() override;

  // "/relay/v1/" for "/relay".
  const std::string& root() const { return root_; }
  // Times everything was read again because the watch could not resume (compacted history).
  int reloads() const { return reloads_.load(); }

  std::string Describe() const override;
  absl::StatusOr<StoreSnapshot> LoadAll() override;
  absl::Status CreateApp(const relay::v1::App& app) override;
  absl::Status UpdateApp(const relay::v1::App& app) override;
  absl::Status DeleteApp(const relay::v1::App& app,
                         const std::vector<std::string>& token_ids) override;
  absl::Status CreateToken(const std::string& hash, const relay::v1::ApiToken& token) override;
  absl::Status DeleteToken(const std::string& id) override;
  absl::Status CreateNodeToken(const std::string& hash, const relay::v1::NodeToken& token) override;
  absl::Status DeleteNodeToken(const std::string& id) override;
  absl::Status WriteBehind(const UsageCounts& usage,
                           const absl::flat_hash_map<std::string, int64_t>& last_used) override;
  absl::StatusOr<absl::flat_hash_map<std::string, uint64_t>> LoadUsage(
      const std::string& day) override;
  absl::StatusOr<UsageCounts> LoadAllUsage() override;
  absl::StatusOr<std::vector<std::string>> LoadKnownNodes() override;
  absl::Status RememberNode(const std::string& node_id, int64_t now_ms) override;
  absl::Status ForgetNode(const std::string& node_id) override;
  absl::Status Follow(Sink* sink, Schedule schedule) override;
  void StopFollowing() override;
  bool SetFence(Fence guard) override;

 private:
  EtcdBackend(etcd::Client& client, std::string prefix);
  std::string Key(std::string_view kind, std::string_view name) const;
  // `txn` through the fence when one is set: FAILED_PRECONDITION when the fence refused.
  absl::StatusOr<etcd::TxnResult> Commit(const etcd::Txn& txn);
  // Puts `value` at `key` if it is absent and every `also` compare holds; false when not.
  absl::StatusOr<bool> PutIfAbsent(const std::string& key, std::string value,
                                   std::vector<etcd::Compare> also = {});
  absl::Status DeleteKey(const std::string& key);
  // Reads every key under the root (writer thread, or Open).
  absl::StatusOr<StoreSnapshot> Load(int64_t* revision);
  // The watch's events and end, on the writer thread.
  void Apply(const std::vector<etcd::WatchEvent>& events);
  void Reload();
  void StartWatch(int64_t from_revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_);
  // Records what this process wrote (or read) of `key`, so the watch does not apply it again.
  void Saw(const std::string& key, int64_t revision, bool present);

  etcd::Client& client_;
  const std::string prefix_;
  const std::string root_;

  // Writer thread: the last revision seen of each app and token key (with whether it exists),
  // from the load, this process's own writes and the watch.
  struct Seen {
    int64_t revision = 0;
    bool present = false;
  };
  absl::flat_hash_map<std::string, Seen> seen_;
  int64_t loaded_revision_ = 0;
  std::string usage_pruned_day_;
  Sink* sink_ = nullptr;
  Schedule schedule_;

  absl::Mutex fence_mu_;
  Fence fence_ ABSL_GUARDED_BY(fence_mu_);

  absl::Mutex watch_mu_;
  std::unique_ptr<etcd::Watch> watch_ ABSL_GUARDED_BY(watch_mu_);
  bool stopped_ ABSL_GUARDED_BY(watch_mu_) = false;
  absl::Notification stopping_;
  std::atomic<int> reloads_{0};
};

}  // namespace relay::controlplane
