// File: sqlite_backend.h
// The app store's default backend: SQLite in `<data dir>/relay.db` (WAL), with its schema
// migrations. One process per data dir (common/dir_lock.h), so it has no remote changes to
// follow and nothing to fence. Writer thread only once opened (store_backend.h).
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <vector>

#include "controlplane/store_backend.h"

namespace relay::controlplane {

class SqliteBackend : public StoreBackend {
 public:
  // Opens (creating it and the directory if needed) `<data_dir>/relay.db` and runs pending
  // migrations.
  static absl::StatusOr<std::unique_ptr<SqliteBackend>> Open(const std::string& data_dir);
  // Opens an existing database file (the SQLite import): NotFound when there is none.
  static absl::StatusOr<std::unique_ptr<SqliteBackend>> OpenExisting(const std::string& path);
  ~SqliteBackend() override;

  std::string Describe() const override { return path_; }
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

 private:
  SqliteBackend(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  static absl::StatusOr<std::unique_ptr<SqliteBackend>> OpenFile(const std::string& path);
  absl::Status Migrate();
  absl::Status Persist(const relay::v1::App& app);

  sqlite3* db_;
  const std::string path_;
  std::string usage_pruned_day_;  // the day old usage rows were last pruned
};

}  // namespace relay::controlplane
