// File: store_backend.h
// Where the app store (app_store.h) keeps its records: the seam between the store's in-memory
// cache, which serves every read, and the durable copy. Two backends:
//  - SqliteBackend (sqlite_backend.h): `<data dir>/relay.db`, the default, one process per data
//    dir;
//  - EtcdBackend (etcd_backend.h): keys under `<prefix>/v1/` in etcd, shared by control plane
//    replicas; changes another replica makes come back through Follow().
// The store calls every method on its writer thread (StoreWriter), one at a time, except
// LoadAll, which Open calls before the writer has any job. A write that returns OK is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"

namespace relay::controlplane {

// Everything the store caches, as read at one instant.
struct StoreSnapshot {
  std::vector<relay::v1::App> apps;
  // API tokens and node credentials with the SHA-256 hex of their secret.
  std::vector<std::pair<std::string, relay::v1::ApiToken>> tokens;
  std::vector<std::pair<std::string, relay::v1::NodeToken>> node_tokens;
};

// Daily message counts by (day YYYY-MM-DD, app id).
using UsageCounts = std::map<std::pair<std::string, std::string>, uint64_t>;

class StoreBackend {
 public:
  // Where changes made by another process (another control plane on the same etcd prefix)
  // go. Called on the store's writer thread, in the order the backend saw them; each call is
  // one change already committed elsewhere.
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void RemoteAppPut(const relay::v1::App& app) = 0;
    virtual void RemoteAppDeleted(const std::string& id) = 0;
    virtual void RemoteTokenPut(const std::string& hash, const relay::v1::ApiToken& token) = 0;
    virtual void RemoteTokenDeleted(const std::string& id) = 0;
    virtual void RemoteNodeTokenPut(const std::string& hash, const relay::v1::NodeToken& token) = 0;
    virtual void RemoteNodeTokenDeleted(const std::string& id) = 0;
    // The backend lost track of changes (its history was compacted): this is everything now.
    virtual void RemoteReload(StoreSnapshot snapshot) = 0;
  };
  // Runs a job on the store's writer thread, after the jobs queued before it; never refuses
  // (what it carries already happened elsewhere) except while the store shuts down.
  using Schedule = std::function<void(std::function<void()>)>;

  virtual ~StoreBackend() = default;
  // What the store is for messages ("relay.db", "etcd prefix /relay").
  virtual std::string Describe() const = 0;

  virtual absl::StatusOr<StoreSnapshot> LoadAll() = 0;

  // A new app: AlreadyExists when another app already uses its id or key (as an id or a key).
  virtual absl::Status CreateApp(const relay::v1::App& app) = 0;
  // A changed app (same id and key as stored). ABORTED when another process changed it since
  // this one last saw it.
  virtual absl::Status UpdateApp(const relay::v1::App& app) = 0;
  // The app and its API tokens (`token_ids`).
  virtual absl::Status DeleteApp(const relay::v1::App& app,
                                 const std::vector<std::string>& token_ids) = 0;

  virtual absl::Status CreateToken(const std::string& hash, const relay::v1::ApiToken& token) = 0;
  virtual absl::Status DeleteToken(const std::string& id) = 0;
  virtual absl::Status CreateNodeToken(const std::string& hash,
                                       const relay::v1::NodeToken& token) = 0;
  virtual absl::Status DeleteNodeToken(const std::string& id) = 0;

  // Usage counts (kept at the largest of stored and given) and tokens' last-used stamps (by
  // token id), written behind; best effort.
  virtual absl::Status WriteBehind(const UsageCounts& usage,
                                   const absl::flat_hash_map<std::string, int64_t>& last_used) = 0;
  virtual absl::StatusOr<absl::flat_hash_map<std::string, uint64_t>> LoadUsage(
      const std::string& day) = 0;
  // Every count stored (the SQLite import).
  virtual absl::StatusOr<UsageCounts> LoadAllUsage() = 0;

  // The node registry (route_gate.h).
  virtual absl::StatusOr<std::vector<std::string>> LoadKnownNodes() = 0;
  virtual absl::Status RememberNode(const std::string& node_id, int64_t now_ms) = 0;
  virtual absl::Status ForgetNode(const std::string& node_id) = 0;

  // Starts reporting changes made by other processes to `sink` through `schedule`. SQLite has
  // none (one process per data dir). Called once, after LoadAll.
  virtual absl::Status Follow(Sink* sink, Schedule schedule) {
    (void)sink;
    (void)schedule;
    return absl::OkStatus();
  }
  // Stops reporting (before the sink goes away).
  virtual void StopFollowing() {}

  // Fencing (etcd only): when set, every write is one etcd transaction that runs only while
  // every compare `guard()` returns holds; otherwise the write fails with FAILED_PRECONDITION
  // ("not the leader ...") and nothing is written. Null clears it. Any thread. False when the
  // backend cannot fence (SQLite: one process per data dir, nothing to fence against).
  using Fence = std::function<std::vector<etcd::Compare>()>;
  virtual bool SetFence(Fence guard) {
    (void)guard;
    return false;
  }
};

}  // namespace relay::controlplane
