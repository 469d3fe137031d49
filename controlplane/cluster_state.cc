#include "controlplane/cluster_state.h"

#include <algorithm>

#include "common/time.h"

namespace relay::controlplane {

void ClusterState::SetChannelCount(NodeData& node, const std::string& node_id, const Key& key,
                                   uint32_t count, Effects& fx) {
  uint32_t before = 0;
  if (auto it = node.channels.find(key); it != node.channels.end()) before = it->second;
  if (before == count) return;
  if (before == 0) fx.node_interest_added = true;
  if (count == 0) {
    node.channels.erase(key);
  } else {
    node.channels[key] = count;
  }
  uint32_t& total = channel_totals_[key];
  uint32_t old_total = total;
  total = total - before + count;
  if (count > 0) {
    channel_nodes_[key].insert(node_id);
  } else if (auto it = channel_nodes_.find(key); it != channel_nodes_.end()) {
    it->second.erase(node_id);
    if (it->second.empty()) channel_nodes_.erase(it);
  }
  Effects::Channel c{key.first, key.second, total};
  if (old_total == 0 && total > 0) fx.occupied.push_back(c);
  if (old_total > 0 && total == 0) fx.vacated.push_back(c);
  fx.subscription_counts.push_back(c);
  if (total == 0) channel_totals_.erase(key);
}

void ClusterState::PresenceAdd(NodeData& node, const std::string& node_id,
                               const std::string& app_id, const std::string& channel,
                               const std::string& user_id, const std::string& info,
                               const std::string& socket_id, Effects& fx) {
  auto [it, inserted] = node.presence.emplace(std::make_tuple(app_id, channel, socket_id), user_id);
  if (!inserted) return;  // the same socket joining twice changes nothing
  auto& members = presence_[{app_id, channel}];
  auto [m, fresh] = members.try_emplace(user_id);
  if (fresh) m->second.user_info_json = info;  // the first-seen info stays
  m->second.sockets.insert({node_id, socket_id});
  if (fresh) fx.member_added.push_back({app_id, channel, user_id, info, socket_id});
}

void ClusterState::PresenceLeave(NodeData& node, const std::string& node_id,
                                 const relay::v1::PresenceSocket& s, Effects& fx) {
  auto it = node.presence.find(std::make_tuple(s.app_id(), s.channel(), s.socket_id()));
  if (it == node.presence.end()) return;
  std::string user_id = it->second;
  node.presence.erase(it);
  Key key{s.app_id(), s.channel()};
  auto ch = presence_.find(key);
  if (ch == presence_.end()) return;
  auto m = ch->second.find(user_id);
  if (m == ch->second.end()) return;
  m->second.sockets.erase({node_id, s.socket_id()});
  if (m->second.sockets.empty()) {
    ch->second.erase(m);
    fx.member_removed.push_back({s.app_id(), s.channel(), user_id, "", s.socket_id()});
    if (ch->second.empty()) presence_.erase(ch);
  }
}

void ClusterState::SignIn(NodeData& node, const std::string& node_id,
                          const relay::v1::SignedInSocket& s, Effects& fx) {
  if (!node.signed_in.try_emplace(s.socket_id(), Key{s.app_id(), s.user_id()}).second) return;
  auto& per_node = user_nodes_[{s.app_id(), s.user_id()}];
  bool was_online = !per_node.empty();
  ++per_node[node_id];
  if (!was_online) fx.user_transitions.push_back({s.app_id(), s.user_id(), true});
  if (s.watchlist().empty()) return;
  auto& list = node.watchlists[s.socket_id()];
  Effects::WatchStart start{node_id, s.app_id(), s.user_id(), {}};
  for (const auto& watched : s.watchlist()) {
    list.push_back(watched);
    ++watchers_[{s.app_id(), watched}][s.user_id()];
    if (user_nodes_.contains(Key{s.app_id(), watched})) start.online.push_back(watched);
  }
  if (!start.online.empty()) fx.watch_starts.push_back(std::move(start));
}

void ClusterState::SignOut(NodeData& node, const std::string& node_id, const std::string& socket_id,
                           Effects& fx) {
  auto it = node.signed_in.find(socket_id);
  if (it == node.signed_in.end()) return;
  Key key = it->second;
  node.signed_in.erase(it);
  if (auto w = node.watchlists.find(socket_id); w != node.watchlists.end()) {
    for (const auto& watched : w->second) {
      auto ws = watchers_.find(Key{key.first, watched});
      if (ws == watchers_.end()) continue;
      if (auto c = ws->second.find(key.second); c != ws->second.end() && --c->second == 0) {
        ws->second.erase(c);
      }
      if (ws->second.empty()) watchers_.erase(ws);
    }
    node.watchlists.erase(w);
  }
  auto u = user_nodes_.find(key);
  if (u == user_nodes_.end()) return;
  if (auto n = u->second.find(node_id); n != u->second.end() && --n->second == 0) {
    u->second.erase(n);
  }
  if (u->second.empty()) {
    user_nodes_.erase(u);
    fx.user_transitions.push_back({key.first, key.second, false});
  }
}

std::map<std::string, std::vector<std::string>> ClusterState::WatchersByNode(
    const std::string& app_id, const std::string& user_id) const {
  absl::ReaderMutexLock lock(&mu_);
  std::map<std::string, std::vector<std::string>> out;
  auto ws = watchers_.find(Key{app_id, user_id});
  if (ws == watchers_.end()) return out;
  for (const auto& [watcher, n] : ws->second) {
    auto u = user_nodes_.find(Key{app_id, watcher});
    if (u == user_nodes_.end()) continue;
    for (const auto& [node, count] : u->second) out[node].push_back(watcher);
  }
  return out;
}

Effects ClusterState::ClearNode(const std::string& node_id) {
  Effects fx;
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return fx;
  NodeData& node = it->second;
  std::vector<Key> channels;
  for (const auto& [k, v] : node.channels) channels.push_back(k);
  for (const auto& k : channels) SetChannelCount(node, node_id, k, 0, fx);
  auto presence = node.presence;
  for (const auto& [k, user] : presence) {
    relay::v1::PresenceSocket s;
    s.set_app_id(std::get<0>(k));
    s.set_channel(std::get<1>(k));
    s.set_socket_id(std::get<2>(k));
    PresenceLeave(node, node_id, s, fx);
  }
  std::vector<std::string> sockets;
  for (const auto& [sock, k] : node.signed_in) sockets.push_back(sock);
  for (const auto& s : sockets) SignOut(node, node_id, s, fx);
  for (const auto& [app, n] : node.app_connections) {
    app_connections_[app] -= n;
    if (n > 0) fx.connections_changed.push_back(app);
  }
  nodes_.erase(it);
  return fx;
}

Effects ClusterState::ApplySnapshot(const std::string& node_id,
                                    const relay::v1::NodeSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  // Diff the node's known state against the snapshot, so whatever is in both (a re-attach after
  // a control plane restart finds nothing, a reconnect of a live node finds everything) produces
  // no member or occupancy events.
  Effects fx;
  NodeData& node = nodes_[node_id];
  absl::flat_hash_map<Key, uint32_t> wanted;
  for (const auto& c : snapshot.channels()) wanted[{c.app_id(), c.channel()}] = c.subscriptions();
  std::vector<Key> existing;
  for (const auto& [k, v] : node.channels) existing.push_back(k);
  for (const auto& k : existing) {
    if (!wanted.contains(k)) SetChannelCount(node, node_id, k, 0, fx);
  }
  for (const auto& [k, v] : wanted) SetChannelCount(node, node_id, k, v, fx);
  // Presence: add new sockets, remove missing ones.
  std::set<std::tuple<std::string, std::string, std::string>> keep;
  for (const auto& p : snapshot.presence()) {
    keep.insert({p.app_id(), p.channel(), p.socket_id()});
    PresenceAdd(node, node_id, p.app_id(), p.channel(), p.user_id(), p.user_info_json(),
                p.socket_id(), fx);
  }
  auto presence = node.presence;
  for (const auto& [k, user] : presence) {
    if (keep.contains(k)) continue;
    relay::v1::PresenceSocket s;
    s.set_app_id(std::get<0>(k));
    s.set_channel(std::get<1>(k));
    s.set_socket_id(std::get<2>(k));
    PresenceLeave(node, node_id, s, fx);
  }
  absl::flat_hash_set<std::string> signed_in_now;
  for (const auto& u : snapshot.users()) signed_in_now.insert(u.socket_id());
  std::vector<std::string> sockets;
  for (const auto& [sock, k] : node.signed_in) {
    if (!signed_in_now.contains(sock)) sockets.push_back(sock);
  }
  for (const auto& s : sockets) SignOut(node, node_id, s, fx);
  for (const auto& u : snapshot.users()) SignIn(node, node_id, u, fx);
  for (const auto& [app, n] : node.app_connections) {
    app_connections_[app] -= n;
    auto now = snapshot.app_connections().find(app);
    if (now == snapshot.app_connections().end() || now->second != n) {
      fx.connections_changed.push_back(app);
    }
  }
  for (const auto& [app, n] : snapshot.app_connections()) {
    if (!node.app_connections.contains(app) && n > 0) fx.connections_changed.push_back(app);
  }
  node.app_connections.clear();
  for (const auto& [app, n] : snapshot.app_connections()) {
    node.app_connections[app] = n;
    app_connections_[app] += n;
  }
  return fx;
}

Effects ClusterState::ApplyDelta(const std::string& node_id, const relay::v1::StateDelta& delta) {
  absl::MutexLock lock(&mu_);
  Effects fx;
  NodeData& node = nodes_[node_id];
  for (const auto& c : delta.channels()) {
    SetChannelCount(node, node_id, {c.app_id(), c.channel()}, c.subscriptions(), fx);
  }
  for (const auto& p : delta.presence_left()) PresenceLeave(node, node_id, p, fx);
  for (const auto& s : delta.signed_in()) SignIn(node, node_id, s, fx);
  for (const auto& s : delta.signed_out()) SignOut(node, node_id, s.socket_id(), fx);
  for (const auto& [app, n] : delta.app_connections()) {
    uint64_t& mine = node.app_connections[app];
    if (mine == n) continue;
    app_connections_[app] = app_connections_[app] - mine + n;
    mine = n;
    fx.connections_changed.push_back(app);
  }
  return fx;
}

NodeKeys ClusterState::KeysOf(const std::string& node_id) const {
  absl::ReaderMutexLock lock(&mu_);
  NodeKeys keys;
  if (auto it = nodes_.find(node_id); it != nodes_.end()) {
    for (const auto& [k, n] : it->second.channels) keys.channels.insert(k);
    for (const auto& [sock, user] : it->second.signed_in) keys.users.insert(user);
  }
  return keys;
}

Effects ClusterState::RemoveNode(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  return ClearNode(node_id);
}

Effects ClusterState::PresenceJoin(const std::string& node_id,
                                   const relay::v1::SubscribeRequest& request, uint32_t max_members,
                                   relay::v1::SubscribeReply* reply) {
  absl::MutexLock lock(&mu_);
  Effects fx;
  Key key{request.app_id(), request.channel()};
  const std::string& user_id = request.member().user_id();
  auto ch = presence_.find(key);
  bool already = ch != presence_.end() && ch->second.contains(user_id);
  size_t count = ch == presence_.end() ? 0 : ch->second.size();
  reply->set_request_id(request.request_id());
  if (!already && max_members > 0 && count >= max_members) {
    reply->set_ok(false);
    reply->set_error_type("LimitReached");
    reply->set_error_message("The maximum members per presence channel limit was reached");
    reply->set_error_status(4100);
    return fx;
  }
  NodeData& node = nodes_[node_id];
  PresenceAdd(node, node_id, request.app_id(), request.channel(), user_id,
              request.member().user_info_json(), request.socket_id(), fx);
  reply->set_ok(true);
  for (const auto& [uid, m] : presence_[key]) {
    auto* r = reply->add_roster();
    r->set_user_id(uid);
    r->set_user_info_json(m.user_info_json);
  }
  return fx;
}

std::vector<std::string> ClusterState::NodesWithInterest(
    const std::string& app_id, const std::vector<std::string>& channels) const {
  absl::ReaderMutexLock lock(&mu_);
  std::set<std::string> out;
  for (const auto& c : channels) {
    if (auto it = channel_nodes_.find(Key{app_id, c}); it != channel_nodes_.end()) {
      out.insert(it->second.begin(), it->second.end());
    }
  }
  return {out.begin(), out.end()};
}

bool ClusterState::NodeHasChannel(const std::string& node_id, const std::string& app_id,
                                  const std::string& channel) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = channel_nodes_.find(Key{app_id, channel});
  return it != channel_nodes_.end() && it->second.contains(node_id);
}

std::vector<std::string> ClusterState::NodesWithUser(const std::string& app_id,
                                                     const std::string& user_id) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  if (auto it = user_nodes_.find(Key{app_id, user_id}); it != user_nodes_.end()) {
    for (const auto& [node, n] : it->second) out.push_back(node);
  }
  std::sort(out.begin(), out.end());
  return out;
}

relay::v1::ChannelInfo ClusterState::GetChannel(const std::string& app_id,
                                                const std::string& channel) const {
  absl::ReaderMutexLock lock(&mu_);
  relay::v1::ChannelInfo info;
  info.set_name(channel);
  Key key{app_id, channel};
  if (auto it = channel_totals_.find(key); it != channel_totals_.end()) {
    info.set_occupied(it->second > 0);
    info.set_subscription_count(it->second);
  }
  if (auto it = presence_.find(key); it != presence_.end()) {
    info.set_user_count(static_cast<uint32_t>(it->second.size()));
  }
  return info;
}

std::vector<relay::v1::ChannelInfo> ClusterState::ListChannels(const std::string& app_id,
                                                               const std::string& prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::ChannelInfo> out;
  for (auto it = channel_totals_.lower_bound(Key{app_id, prefix});
       it != channel_totals_.end() && it->first.first == app_id &&
       it->first.second.compare(0, prefix.size(), prefix) == 0;
       ++it) {
    relay::v1::ChannelInfo info;
    info.set_name(it->first.second);
    info.set_occupied(true);
    info.set_subscription_count(it->second);
    if (auto p = presence_.find(it->first); p != presence_.end()) {
      info.set_user_count(static_cast<uint32_t>(p->second.size()));
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<relay::v1::PresenceMember> ClusterState::PresenceMembers(
    const std::string& app_id, const std::string& channel) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::PresenceMember> out;
  if (auto it = presence_.find(Key{app_id, channel}); it != presence_.end()) {
    for (const auto& [uid, m] : it->second) {
      relay::v1::PresenceMember member;
      member.set_user_id(uid);
      member.set_user_info_json(m.user_info_json);
      out.push_back(std::move(member));
    }
  }
  return out;
}

uint64_t ClusterState::AppConnections(const std::string& app_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = app_connections_.find(app_id);
  return it == app_connections_.end() ? 0 : it->second;
}

absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>>
ClusterState::ConnectionsElsewhere(const std::vector<std::string>& nodes,
                                   const std::vector<std::string>* apps) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>> out;
  auto add = [&](const std::string& app, uint64_t total) {
    for (const auto& node : nodes) {
      uint64_t own = 0;
      if (auto n = nodes_.find(node); n != nodes_.end()) {
        if (auto c = n->second.app_connections.find(app); c != n->second.app_connections.end()) {
          own = c->second;
        }
      }
      out[node][app] = total - std::min(total, own);
    }
  };
  if (apps == nullptr) {
    for (const auto& [app, total] : app_connections_) {
      if (total > 0) add(app, total);
    }
  } else {
    for (const auto& app : *apps) {
      auto it = app_connections_.find(app);
      add(app, it == app_connections_.end() ? 0 : it->second);
    }
  }
  return out;
}

void ClusterState::StoreCache(const std::string& app_id, const std::string& channel,
                              const std::string& event, const std::string& data,
                              uint32_t ttl_seconds, uint64_t seq) {
  absl::MutexLock lock(&mu_);
  CacheEntry& entry = cache_[Key{app_id, channel}];
  if (seq != 0 && seq < entry.seq) return;
  entry.seq = seq;
  relay::v1::CachedEvent& c = entry.event;
  c.set_event(event);
  c.set_data(data);
  c.set_expires_unix_ms(common::NowUnixMs() + static_cast<int64_t>(ttl_seconds) * 1000);
}

std::optional<relay::v1::CachedEvent> ClusterState::GetCache(const std::string& app_id,
                                                             const std::string& channel) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = cache_.find(Key{app_id, channel});
  if (it == cache_.end()) return std::nullopt;
  int64_t now = common::NowUnixMs();
  if (it->second.event.expires_unix_ms() <= now) return std::nullopt;
  relay::v1::CachedEvent c = it->second.event;
  c.set_ttl_seconds(static_cast<uint32_t>((c.expires_unix_ms() - now + 999) / 1000));
  return c;
}

}  // namespace relay::controlplane
