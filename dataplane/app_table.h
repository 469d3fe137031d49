// File: app_table.h
// The data plane's copy of the apps, pushed by the control plane (Welcome, AppUpsert, AppRemove).
// Read when a connection opens or subscribes, never per message.
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/types.pb.h"

namespace relay::dataplane {

using AppPtr = std::shared_ptr<const relay::v1::App>;

class AppTable {
 public:
  // Replaces every app; returns the ids of apps that disappeared.
  std::vector<std::string> ReplaceAll(const std::vector<relay::v1::App>& apps);
  // Inserts or updates an app unless `app` is older than what is known.
  void Upsert(const relay::v1::App& app);
  void Remove(const std::string& app_id);

  AppPtr ByKey(std::string_view key) const;
  AppPtr ById(std::string_view id) const;
  // True once the control plane has sent the app list at least once.
  bool loaded() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppPtr> by_id_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, AppPtr> by_key_ ABSL_GUARDED_BY(mu_);
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace relay::dataplane
