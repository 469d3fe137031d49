#include "controlplane/route_gate.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace relay::controlplane {

namespace {
constexpr char kRetryAfterPayload[] = "relay.v1/retry-after-seconds";
// Re-attaching takes a data plane from 200 ms to 5 s (its backoff); one second is a retry
// interval that neither hammers the control plane nor waits long after the gate opens.
constexpr int64_t kRetryAfterSeconds = 1;
}  // namespace

absl::Status RetryLaterError(std::string message, int64_t retry_after_s) {
  absl::Status st = absl::UnavailableError(message);
  st.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(retry_after_s)));
  return st;
}

int64_t RetryAfterSeconds(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  int64_t s = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &s)) return 0;
  return s;
}

RouteGate::RouteGate(std::chrono::milliseconds node_timeout, const common::Clock& clock)
    : node_timeout_(node_timeout), clock_(clock) {}

void RouteGate::Publish() {
  size_t awaiting = 0;
  for (const auto& [id, a] : absent_) awaiting += a.kind == Kind::kAwaited ? 1 : 0;
  awaiting_.store(awaiting);
  detached_.store(absent_.size() - awaiting);
  absent_count_.store(absent_.size());
}

void RouteGate::ExpectNodes(const std::vector<std::string>& node_ids) {
  absl::MutexLock lock(&mu_);
  int64_t deadline = clock_.NowUnixMs() + node_timeout_.count();
  for (const auto& id : node_ids) {
    if (absent_.contains(id)) continue;
    absent_[id] = Absent{Kind::kAwaited, deadline, {}};
  }
  Publish();
}

void RouteGate::Reset(const std::vector<std::string>& node_ids) {
  {
    absl::MutexLock lock(&mu_);
    absent_.clear();
    blocked_channels_.clear();
    blocked_users_.clear();
    expired_.clear();
    Publish();
  }
  ExpectNodes(node_ids);
}

void RouteGate::ForgetLocked(const std::string& node_id) {
  auto it = absent_.find(node_id);
  if (it == absent_.end()) return;
  auto release = [](auto& blocked, const auto& keys) {
    for (const auto& k : keys) {
      auto b = blocked.find(k);
      if (b != blocked.end() && --b->second <= 0) blocked.erase(b);
    }
  };
  release(blocked_channels_, it->second.keys.channels);
  release(blocked_users_, it->second.keys.users);
  absent_.erase(it);
}

void RouteGate::Attached(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  ForgetLocked(node_id);
  Publish();
}

void RouteGate::Left(const std::string& node_id) { Attached(node_id); }

void RouteGate::Detached(const std::string& node_id, NodeKeys keys) {
  absl::MutexLock lock(&mu_);
  ForgetLocked(node_id);
  for (const auto& k : keys.channels) ++blocked_channels_[k];
  for (const auto& k : keys.users) ++blocked_users_[k];
  absent_[node_id] =
      Absent{Kind::kDetached, clock_.NowUnixMs() + node_timeout_.count(), std::move(keys)};
  Publish();
}

void RouteGate::ExpireLocked() {
  int64_t now = clock_.NowUnixMs();
  std::vector<std::string> due;
  for (const auto& [id, a] : absent_) {
    if (now >= a.deadline_ms) due.push_back(id);
  }
  for (const auto& id : due) ForgetLocked(id);
  if (!due.empty()) Publish();
  expired_.insert(expired_.end(), due.begin(), due.end());
}

std::vector<std::string> RouteGate::Expire() {
  absl::MutexLock lock(&mu_);
  ExpireLocked();
  return std::exchange(expired_, {});
}

absl::Status RouteGate::Refuse(GateRefusal why, std::string message) {
  Count(why);
  return RetryLaterError(std::move(message), kRetryAfterSeconds);
}

absl::Status RouteGate::AdmitAnyLocked() {
  // Expired here too, so the gate opens at the timeout itself and not at the next sweep.
  ExpireLocked();
  if (size_t n = awaiting_.load(); n > 0) {
    return Refuse(GateRefusal::kReattaching,
                  absl::StrCat("the control plane restarted and is waiting for ", n,
                               " data plane(s) to re-attach; nothing was sent, retry shortly"));
  }
  return absl::OkStatus();
}

absl::Status RouteGate::AdmitChannels(const std::string& app_id,
                                      const std::vector<std::string>& channels) {
  if (absent_count_.load() == 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (auto st = AdmitAnyLocked(); !st.ok()) return st;
  for (const auto& c : channels) {
    if (blocked_channels_.contains(std::make_pair(app_id, c))) {
      return Refuse(GateRefusal::kNodeDetached,
                    absl::StrCat("a data plane with subscribers of '", c,
                                 "' is re-attaching; nothing was sent, retry shortly"));
    }
  }
  return absl::OkStatus();
}

absl::Status RouteGate::AdmitUser(const std::string& app_id, const std::string& user_id) {
  if (absent_count_.load() == 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (auto st = AdmitAnyLocked(); !st.ok()) return st;
  if (blocked_users_.contains(std::make_pair(app_id, user_id))) {
    return Refuse(GateRefusal::kNodeDetached,
                  "a data plane where the user is signed in is re-attaching; nothing was sent, "
                  "retry shortly");
  }
  return absl::OkStatus();
}

size_t RouteGate::awaiting() const {
  if (absent_count_.load() == 0) return 0;
  // The timeout may have passed since the last sweep.
  absl::MutexLock lock(&mu_);
  int64_t now = clock_.NowUnixMs();
  size_t n = 0;
  for (const auto& [id, a] : absent_) {
    if (a.kind == Kind::kAwaited && now < a.deadline_ms) ++n;
  }
  return n;
}

size_t RouteGate::detached() const { return detached_.load(); }

}  // namespace relay::controlplane
