#include "dataplane/node_state.h"

#include <optional>

namespace relay::dataplane {

uint64_t NodeState::Emit(relay::v1::StateDelta delta) {
  if (!uplink_) return 0;  // the snapshot on the next attach carries it
  relay::v1::NodeMessage msg;
  *msg.mutable_delta() = std::move(delta);
  uint64_t seq = uplink_(std::move(msg));
  if (seq == 0) uplink_ = nullptr;
  return seq;
}

uint64_t NodeState::ChannelChanged(const std::string& app_id, const std::string& channel,
                                   int delta) {
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(app_id, channel);
  uint32_t& count = channels_[key];
  bool new_interest = count == 0 && delta > 0;
  count = static_cast<uint32_t>(static_cast<int64_t>(count) + delta);
  relay::v1::StateDelta d;
  auto* c = d.add_channels();
  c->set_app_id(app_id);
  c->set_channel(channel);
  c->set_subscriptions(count);
  if (count == 0) channels_.erase(key);
  uint64_t seq = Emit(std::move(d));
  return new_interest ? seq : 0;
}

void NodeState::PresenceJoined(const relay::v1::PresenceSocket& socket) {
  // The join itself went up as a SubscribeRequest; only remember it for snapshots.
  absl::MutexLock lock(&mu_);
  presence_[{socket.app_id(), socket.channel(), socket.socket_id()}] = socket;
}

void NodeState::PresenceLeft(const relay::v1::PresenceSocket& socket) {
  absl::MutexLock lock(&mu_);
  presence_.erase({socket.app_id(), socket.channel(), socket.socket_id()});
  relay::v1::StateDelta d;
  *d.add_presence_left() = socket;
  Emit(std::move(d));
}

void NodeState::SignedIn(const relay::v1::SignedInSocket& socket) {
  absl::MutexLock lock(&mu_);
  signed_in_[socket.socket_id()] = socket;
  relay::v1::StateDelta d;
  *d.add_signed_in() = socket;
  Emit(std::move(d));
}

void NodeState::SignedOut(const relay::v1::SignedInSocket& socket) {
  absl::MutexLock lock(&mu_);
  signed_in_.erase(socket.socket_id());
  relay::v1::StateDelta d;
  *d.add_signed_out() = socket;
  Emit(std::move(d));
}

void NodeState::ConnectionChanged(const std::string& app_id, int delta) {
  absl::MutexLock lock(&mu_);
  uint64_t& n = app_connections_[app_id];
  n = static_cast<uint64_t>(static_cast<int64_t>(n) + delta);
  relay::v1::StateDelta d;
  (*d.mutable_app_connections())[app_id] = n;
  if (n == 0) app_connections_.erase(app_id);
  Emit(std::move(d));
}

bool NodeState::SendUp(relay::v1::NodeMessage msg) {
  absl::MutexLock lock(&mu_);
  if (!uplink_) return false;
  std::optional<relay::v1::SubscribeRequest> request;
  if (msg.has_subscribe()) request = msg.subscribe();
  if (uplink_(std::move(msg)) == 0) {
    uplink_ = nullptr;
    return false;
  }
  if (request) outstanding_[request->request_id()] = std::move(*request);
  return true;
}

void NodeState::Answered(uint64_t request_id) {
  absl::MutexLock lock(&mu_);
  outstanding_.erase(request_id);
}

std::vector<relay::v1::SubscribeRequest> NodeState::TakeUnanswered() {
  absl::MutexLock lock(&mu_);
  std::vector<relay::v1::SubscribeRequest> out;
  out.reserve(outstanding_.size());
  for (auto& [id, r] : outstanding_) out.push_back(std::move(r));
  outstanding_.clear();
  return out;
}

void NodeState::Attach(Uplink uplink, const relay::v1::NodeLoad& load) {
  absl::MutexLock lock(&mu_);
  relay::v1::NodeMessage msg;
  auto* s = msg.mutable_snapshot();
  for (const auto& [k, n] : channels_) {
    auto* c = s->add_channels();
    c->set_app_id(k.first);
    c->set_channel(k.second);
    c->set_subscriptions(n);
  }
  for (const auto& [k, p] : presence_) *s->add_presence() = p;
  for (const auto& [k, u] : signed_in_) *s->add_users() = u;
  for (const auto& [app, n] : app_connections_) (*s->mutable_app_connections())[app] = n;
  *s->mutable_load() = load;
  if (uplink(std::move(msg)) != 0) uplink_ = std::move(uplink);
}

void NodeState::Detach() {
  absl::MutexLock lock(&mu_);
  uplink_ = nullptr;
}

bool NodeState::attached() const {
  absl::MutexLock lock(&mu_);
  return static_cast<bool>(uplink_);
}

uint64_t NodeState::channels() const {
  absl::MutexLock lock(&mu_);
  return channels_.size();
}

uint64_t NodeState::AppConnections(const std::string& app_id) const {
  absl::MutexLock lock(&mu_);
  auto it = app_connections_.find(app_id);
  return it == app_connections_.end() ? 0 : it->second;
}

}  // namespace relay::dataplane
