// File: app_store.h
// The app store: apps, their credentials and API tokens, persisted in SQLite under the data dir
// (schema migrations in app_store.cc), cached in memory. Every change is reported to the
// listener so the control plane can push it to the data planes at once.
// Thread-safe.
#pragma once

#include <sqlite3.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"

namespace relay::controlplane {

// Defaults applied to limits/features left at zero.
relay::v1::App WithDefaults(relay::v1::App app);

class AppStore {
 public:
  // Called after an app was created or changed (`removed` false) or deleted (`removed` true).
  using Listener = std::function<void(const relay::v1::App& app, bool removed)>;

  // Opens (creating if needed) `<data_dir>/relay.db` and runs pending migrations.
  static absl::StatusOr<std::unique_ptr<AppStore>> Open(const std::string& data_dir);
  ~AppStore();

  void SetListener(Listener listener);

  std::vector<relay::v1::App> List() const;
  // By id or, failing that, by key.
  std::optional<relay::v1::App> Find(std::string_view id_or_key) const;
  std::optional<relay::v1::App> FindByKey(std::string_view key) const;

  absl::StatusOr<relay::v1::App> Create(const relay::v1::CreateAppRequest& request);
  absl::StatusOr<relay::v1::App> Update(const relay::v1::UpdateAppRequest& request);
  absl::Status Delete(std::string_view id_or_key);
  absl::StatusOr<relay::v1::App> RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds,
                                              std::string new_secret);
  // Completes a rotation early: the previous secrets stop verifying now.
  absl::StatusOr<relay::v1::App> EndSecretOverlap(std::string_view id_or_key);

  // Tokens. The secret text is returned once by CreateToken and stored only as a SHA-256 hash.
  absl::StatusOr<relay::v1::CreateTokenResponse> CreateToken(std::string_view app,
                                                             std::string name,
                                                             uint64_t expires_in_seconds);
  absl::StatusOr<std::vector<relay::v1::ApiToken>> ListTokens(std::string_view app) const;
  absl::Status RevokeToken(std::string_view token_id);
  // The app id the bearer token belongs to, when the token is valid and unexpired; records the
  // last-used time.
  std::optional<std::string> VerifyToken(std::string_view token);

  // Daily message counts (day as YYYY-MM-DD, UTC), by app id.
  absl::flat_hash_map<std::string, uint64_t> LoadUsage(const std::string& day) const;
  // Records that `app_id` has sent `messages` messages on `day`; a smaller count than the one
  // stored is ignored, so writers racing each other keep the largest.
  absl::Status SaveUsage(const std::string& day, const std::string& app_id, uint64_t messages);

  // Node credentials (NodeLink.Attach). The token text is returned once by CreateNodeToken and
  // stored only as a SHA-256 hash; verification reads memory only.
  absl::StatusOr<relay::v1::CreateNodeTokenResponse> CreateNodeToken(std::string name,
                                                                     std::string node_id);
  std::vector<relay::v1::NodeToken> ListNodeTokens() const;
  absl::Status RevokeNodeToken(std::string_view token_id);
  // The credential `token` belongs to, or nullopt.
  std::optional<relay::v1::NodeToken> VerifyNodeToken(std::string_view token) const;
  // Records that a node attached with the credential now.
  void TouchNodeToken(std::string_view token_id);
  bool NodeTokenExists(std::string_view token_id) const;


 private:
  explicit AppStore(sqlite3* db);
  // Applies `change` to a copy of the app, bumps its revision, persists and publishes it.
  absl::StatusOr<relay::v1::App> Change(std::string_view id_or_key,
                                        const std::function<void(relay::v1::App&)>& change);
  absl::Status Migrate();
  absl::Status LoadAll();
  absl::Status Persist(const relay::v1::App& app) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const relay::v1::App* FindLocked(std::string_view id_or_key) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Notify(const relay::v1::App& app, bool removed);

  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, relay::v1::App> apps_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> key_to_id_ ABSL_GUARDED_BY(mu_);
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::string usage_pruned_day_ ABSL_GUARDED_BY(mu_);  // the day old usage rows were last pruned
  // Node credentials by the SHA-256 hex of their token.
  absl::flat_hash_map<std::string, relay::v1::NodeToken> node_tokens_ ABSL_GUARDED_BY(mu_);
  Listener listener_;
};

}  // namespace relay::controlplane
