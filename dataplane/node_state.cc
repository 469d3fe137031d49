#include "dataplane/node_state.h"

#include <optional>

#include "common/node_link_limits.h"

namespace relay::dataplane {

uint64_t NodeState::Emit(relay::v1::NodeMessage msg, std::shared_ptr<const Uplink>* flush) {
  if (!uplink_) return 0;  // the snapshot on the next attach carries it
  uint64_t seq = uplink_->push(std::move(msg));
  if (seq == 0) {
    uplink_ = nullptr;
  } else {
    *flush = uplink_;
  }
  return seq;
}

uint64_t NodeState::EmitDelta(relay::v1::StateDelta delta, std::shared_ptr<const Uplink>* flush) {
  relay::v1::NodeMessage msg;
  *msg.mutable_delta() = std::move(delta);
  return Emit(std::move(msg), flush);
}

void NodeState::Flush(const std::shared_ptr<const Uplink>& link) {
  if (link) link->flush();
}

void NodeState::Report(absl::FunctionRef<relay::v1::StateDelta()> change) {
  std::shared_ptr<const Uplink> flush;
  {
    absl::MutexLock lock(&mu_);
    EmitDelta(change(), &flush);
  }
  Flush(flush);
}

uint64_t NodeState::ChannelChanged(const std::string& app_id, const std::string& channel,
                                   int delta) {
  std::shared_ptr<const Uplink> flush;
  uint64_t wait_for = 0;
  {
    absl::MutexLock lock(&mu_);
    auto key = std::make_pair(app_id, channel);
    Channel& ch = channels_[key];
    bool new_interest = ch.count == 0 && delta > 0;
    ch.count = static_cast<uint32_t>(static_cast<int64_t>(ch.count) + delta);
    relay::v1::StateDelta d;
    auto* c = d.add_channels();
    c->set_app_id(app_id);
    c->set_channel(channel);
    c->set_subscriptions(ch.count);
    uint64_t seq = EmitDelta(std::move(d), &flush);
    if (new_interest) ch.interest_seq = seq;
    // A later subscriber waits for the same ack as the first while it is outstanding: until then
    // the control plane does not route the channel here.
    if (delta > 0 && ch.interest_seq > acked_.load()) wait_for = ch.interest_seq;
    if (ch.count == 0) channels_.erase(key);
  }
  Flush(flush);
  return wait_for;
}

void NodeState::PresenceJoined(const relay::v1::PresenceSocket& socket) {
  // The join itself went up as a SubscribeRequest; only remember it for snapshots.
  absl::MutexLock lock(&mu_);
  presence_[{socket.app_id(), socket.channel(), socket.socket_id()}] = socket;
}

void NodeState::PresenceLeft(const relay::v1::PresenceSocket& socket) {
  Report([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    presence_.erase({socket.app_id(), socket.channel(), socket.socket_id()});
    relay::v1::StateDelta d;
    *d.add_presence_left() = socket;
    return d;
  });
}

void NodeState::SignedIn(const relay::v1::SignedInSocket& socket) {
  Report([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    signed_in_[socket.socket_id()] = socket;
    relay::v1::StateDelta d;
    *d.add_signed_in() = socket;
    return d;
  });
}

void NodeState::SignedOut(const relay::v1::SignedInSocket& socket) {
  Report([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    signed_in_.erase(socket.socket_id());
    relay::v1::StateDelta d;
    *d.add_signed_out() = socket;
    return d;
  });
}

void NodeState::ConnectionChanged(const std::string& app_id, int delta) {
  Report([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t& n = app_connections_[app_id];
    n = static_cast<uint64_t>(static_cast<int64_t>(n) + delta);
    relay::v1::StateDelta d;
    (*d.mutable_app_connections())[app_id] = n;
    if (n == 0) app_connections_.erase(app_id);
    return d;
  });
}

bool NodeState::SendUp(relay::v1::NodeMessage msg) {
  std::shared_ptr<const Uplink> flush;
  uint64_t seq = 0;
  {
    absl::MutexLock lock(&mu_);
    std::optional<relay::v1::SubscribeRequest> request;
    if (msg.has_subscribe()) request = msg.subscribe();
    seq = Emit(std::move(msg), &flush);
    if (seq != 0 && request) outstanding_[request->request_id()] = std::move(*request);
  }
  Flush(flush);
  return seq != 0;
}

void NodeState::Acked(uint64_t ack) { acked_.store(ack); }

void NodeState::SetRemoteConnections(const relay::v1::RemoteConnections& remote) {
  absl::MutexLock lock(&mu_);
  if (remote.replace()) remote_connections_.clear();
  for (const auto& [app, n] : remote.others()) {
    if (n == 0) {
      remote_connections_.erase(app);
    } else {
      remote_connections_[app] = n;
    }
  }
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

std::vector<relay::v1::NodeMessage> NodeState::SnapshotParts(const relay::v1::NodeLoad& load,
                                                             size_t part_bytes) const {
  std::vector<relay::v1::NodeMessage> parts(1);
  size_t bytes = 0;
  // The part to add an entry of `size` bytes to: a new one once the current is full.
  auto part = [&](size_t size) -> relay::v1::NodeSnapshot* {
    if (bytes > 0 && bytes + size > part_bytes) {
      parts.back().mutable_snapshot()->set_more(true);
      parts.emplace_back();
      bytes = 0;
    }
    bytes += size + 8;  // the entry's own tag and length
    return parts.back().mutable_snapshot();
  };
  for (const auto& [k, ch] : channels_) {
    auto* c = part(k.first.size() + k.second.size() + 16)->add_channels();
    c->set_app_id(k.first);
    c->set_channel(k.second);
    c->set_subscriptions(ch.count);
  }
  for (const auto& [k, p] : presence_) *part(p.ByteSizeLong())->add_presence() = p;
  for (const auto& [k, u] : signed_in_) *part(u.ByteSizeLong())->add_users() = u;
  for (const auto& [app, n] : app_connections_) {
    (*part(app.size() + 16)->mutable_app_connections())[app] = n;
  }
  *parts.back().mutable_snapshot()->mutable_load() = load;
  return parts;
}

std::vector<relay::v1::NodeMessage> NodeState::SnapshotPartsForTest(size_t part_bytes) const {
  absl::MutexLock lock(&mu_);
  return SnapshotParts(relay::v1::NodeLoad(), part_bytes);
}

void NodeState::Attach(Uplink uplink, const relay::v1::NodeLoad& load) {
  auto link = std::make_shared<const Uplink>(std::move(uplink));
  {
    absl::MutexLock lock(&mu_);
    acked_.store(0);  // seqs start from 1 again on the new stream
    // In parts, so that no amount of client state makes a message the link cannot carry.
    uint64_t seq = 0;
    for (auto& msg : SnapshotParts(load, common::kSnapshotPartBytes)) {
      seq = link->push(std::move(msg));
      if (seq == 0) return;
    }
    // Until the control plane acknowledges the snapshot it routes nothing here.
    for (auto& [k, ch] : channels_) ch.interest_seq = seq;
    uplink_ = link;
  }
  link->flush();
}

void NodeState::Detach() {
  absl::MutexLock lock(&mu_);
  uplink_ = nullptr;
  // Nothing on the old stream will be acknowledged (its waits are released); the next attach
  // makes every channel wait for its snapshot.
  for (auto& [k, ch] : channels_) ch.interest_seq = 0;
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

std::vector<std::pair<std::string, uint64_t>> NodeState::AppConnectionCounts() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, uint64_t>> out;
  out.reserve(app_connections_.size());
  for (const auto& [app, n] : app_connections_) {
    if (n > 0) out.emplace_back(app, n);
  }
  return out;
}

uint64_t NodeState::ClusterAppConnections(const std::string& app_id) const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  if (auto it = app_connections_.find(app_id); it != app_connections_.end()) total += it->second;
  if (auto it = remote_connections_.find(app_id); it != remote_connections_.end()) {
    total += it->second;
  }
  return total;
}

}  // namespace relay::dataplane
