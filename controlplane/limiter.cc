#include "controlplane/limiter.h"

namespace relay::controlplane {

uint64_t PlanDailyQuota(const std::string& plan) {
  static const std::map<std::string, uint64_t> kPlans = {
      {"free", 200000}, {"startup", 1000000}, {"pro", 10000000}, {"business", 100000000}};
  auto it = kPlans.find(plan);
  return it == kPlans.end() ? 0 : it->second;
}

bool FixedWindow::Hit(const std::string& key, uint64_t limit, int64_t window_s, uint64_t cost,
                      int64_t now_s, RateInfo* info) {
  absl::MutexLock lock(&mu_);
  // Forget idle windows now and then so the map stays bounded by active keys.
  if (now_s - last_sweep_ > 60) {
    for (auto it = windows_.begin(); it != windows_.end();) {
      auto cur = it++;
      if (now_s - cur->second.start >= 2 * window_s) windows_.erase(cur);
    }
    last_sweep_ = now_s;
  }
  Window& w = windows_[key];
  int64_t start = now_s - (now_s % window_s);
  if (w.start != start) {
    w.start = start;
    w.used = 0;
  }
  bool ok = w.used + cost <= limit;
  if (ok) w.used += cost;
  if (info != nullptr) {
    info->present = true;
    info->limit = limit;
    info->remaining = limit > w.used ? limit - w.used : 0;
    info->reset_unix_s = start + window_s;
  }
  return ok;
}

}  // namespace relay::controlplane
