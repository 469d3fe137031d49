#include "controlplane/connection_totals.h"

namespace relay::controlplane {

void ConnectionTotals::Changed(const std::vector<std::string>& apps) {
  if (apps.empty()) return;
  absl::MutexLock lock(&mu_);
  dirty_.insert(apps.begin(), apps.end());
}

void ConnectionTotals::Reset(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  sent_.erase(node_id);
}

std::vector<std::pair<std::string, relay::v1::ControlMessage>> ConnectionTotals::Collect(
    const ClusterState& cluster, const std::vector<std::string>& nodes) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> fresh, known;
  for (const auto& node : nodes) (sent_.contains(node) ? known : fresh).push_back(node);
  std::vector<std::pair<std::string, relay::v1::ControlMessage>> out;
  if (!fresh.empty()) {
    auto all = cluster.ConnectionsElsewhere(fresh, nullptr);
    for (const auto& node : fresh) {
      relay::v1::ControlMessage msg;
      auto* rc = msg.mutable_remote_connections();
      rc->set_replace(true);
      auto& sent = sent_[node];
      for (const auto& [app, n] : all[node]) {
        if (n == 0) continue;
        (*rc->mutable_others())[app] = n;
        sent[app] = n;
      }
      out.emplace_back(node, std::move(msg));
    }
  }
  if (!known.empty() && !dirty_.empty()) {
    std::vector<std::string> apps(dirty_.begin(), dirty_.end());
    auto changed = cluster.ConnectionsElsewhere(known, &apps);
    for (const auto& node : known) {
      auto& sent = sent_[node];
      relay::v1::ControlMessage msg;
      auto* rc = msg.mutable_remote_connections();
      for (const auto& [app, n] : changed[node]) {
        auto it = sent.find(app);
        uint64_t before = it == sent.end() ? 0 : it->second;
        if (before == n) continue;
        (*rc->mutable_others())[app] = n;
        if (n == 0) {
          sent.erase(it);
        } else {
          sent[app] = n;
        }
      }
      if (rc->others_size() > 0) out.emplace_back(node, std::move(msg));
    }
  }
  dirty_.clear();
  // Forget nodes that are gone.
  absl::flat_hash_set<std::string> attached(nodes.begin(), nodes.end());
  for (auto it = sent_.begin(); it != sent_.end();) {
    if (attached.contains(it->first)) {
      ++it;
    } else {
      sent_.erase(it++);
    }
  }
  return out;
}

}  // namespace relay::controlplane
