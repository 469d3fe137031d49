#include "dataplane/app_table.h"

#include "common/strings.h"

namespace relay::dataplane {

std::vector<std::string> AppTable::ReplaceAll(const std::vector<relay::v1::App>& apps) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<std::string, AppPtr> by_id, by_key;
  for (const auto& a : apps) {
    auto ptr = std::make_shared<const relay::v1::App>(a);
    by_id[a.id()] = ptr;
    by_key[a.key()] = ptr;
  }
  std::vector<std::string> gone;
  for (const auto& [id, a] : by_id_) {
    if (!by_id.contains(id)) gone.push_back(id);
  }
  by_id_ = std::move(by_id);
  by_key_ = std::move(by_key);
  loaded_ = true;
  return gone;
}

void AppTable::Upsert(const relay::v1::App& app) {
  absl::MutexLock lock(&mu_);
  if (auto it = by_id_.find(app.id()); it != by_id_.end()) {
    if (it->second->revision() > app.revision()) return;
    by_key_.erase(it->second->key());
  }
  auto ptr = std::make_shared<const relay::v1::App>(app);
  by_id_[app.id()] = ptr;
  by_key_[app.key()] = ptr;
}

void AppTable::Remove(const std::string& app_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = by_id_.find(app_id); it != by_id_.end()) {
    by_key_.erase(it->second->key());
    by_id_.erase(it);
  }
}

AppPtr AppTable::ByKey(std::string_view key) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_key_.find(common::AbslView(key));
  return it == by_key_.end() ? nullptr : it->second;
}

AppPtr AppTable::ById(std::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_id_.find(common::AbslView(id));
  return it == by_id_.end() ? nullptr : it->second;
}

bool AppTable::loaded() const {
  absl::ReaderMutexLock lock(&mu_);
  return loaded_;
}

}  // namespace relay::dataplane
