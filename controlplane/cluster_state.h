// File: cluster_state.h
// The control plane's view of the cluster, built only from what data planes report: per node the
// channels with subscribers, presence sockets and signed-in sockets; aggregated over nodes into
// channel occupancy, subscription counts, presence rosters and user -> sockets. It also holds the
// cluster-wide cache channel contents. Decisions that must be made once for the whole cluster
// (occupied/vacated, member added/removed) come out of it as Effects.
// Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "relay/v1/node_link.pb.h"
#include "relay/v1/types.pb.h"

namespace relay::controlplane {

// Cluster-wide consequences of a state change, to be acted on outside the lock.
struct Effects {
  struct Member {
    std::string app_id, channel, user_id, user_info_json, socket_id;
  };
  struct Channel {
    std::string app_id, channel;
    uint32_t count = 0;
  };
  std::vector<Member> member_added;
  std::vector<Member> member_removed;
  std::vector<Channel> occupied;
  std::vector<Channel> vacated;
  std::vector<Channel> subscription_counts;  // channels whose cluster-wide count changed
  // A node reported its first subscriber of some channel: it waits for an ack before going live.
  bool node_interest_added = false;
  // Watchlist: a user came online (first signed-in socket anywhere) or went offline (last).
  struct Presence {
    std::string app_id, user_id;
    bool online = false;
  };
  std::vector<Presence> user_transitions;
  // Watchlist: a socket signed in with a watchlist; tell it who of its list is online now.
  struct WatchStart {
    std::string node_id, app_id, watcher;
    std::vector<std::string> online;
  };
  std::vector<WatchStart> watch_starts;
  // Apps whose connection count changed on some node (cluster-wide connection limits).
  std::vector<std::string> connections_changed;
};

// What a node reported that it serves: (app, channel) and (app, user) pairs.
struct NodeKeys {
  std::set<std::pair<std::string, std::string>> channels;
  std::set<std::pair<std::string, std::string>> users;
};

class ClusterState {
 public:
  // A node (re)attached: its previous state is replaced by the snapshot.
  Effects ApplySnapshot(const std::string& node_id, const relay::v1::NodeSnapshot& snapshot);
  Effects ApplyDelta(const std::string& node_id, const relay::v1::StateDelta& delta);
  // A node detached or was declared dead: everything it reported is withdrawn.
  Effects RemoveNode(const std::string& node_id);
  // The channels the node has subscribers of and the users signed in on it.
  NodeKeys KeysOf(const std::string& node_id) const;

  // Presence join decided for the cluster. `max_members` 0 = unlimited. Fills `reply` (ok or
  // LimitReached with the roster after the join).
  Effects PresenceJoin(const std::string& node_id, const relay::v1::SubscribeRequest& request,
                       uint32_t max_members, relay::v1::SubscribeReply* reply);

  // Nodes that have at least one subscriber of any of `channels` of `app_id`.
  std::vector<std::string> NodesWithInterest(const std::string& app_id,
                                             const std::vector<std::string>& channels) const;
  // Whether `node_id` reported at least one subscriber of the channel.
  bool NodeHasChannel(const std::string& node_id, const std::string& app_id,
                      const std::string& channel) const;
  // Nodes where `user_id` has a signed-in socket.
  std::vector<std::string> NodesWithUser(const std::string& app_id,
                                         const std::string& user_id) const;

  // Cluster-wide channel figures (occupied, subscription_count, user_count).
  relay::v1::ChannelInfo GetChannel(const std::string& app_id, const std::string& channel) const;
  // Occupied channels of an app whose names start with `prefix`, sorted.
  std::vector<relay::v1::ChannelInfo> ListChannels(const std::string& app_id,
                                                   const std::string& prefix) const;
  // Distinct members of a presence channel, sorted by user id.
  std::vector<relay::v1::PresenceMember> PresenceMembers(const std::string& app_id,
                                                         const std::string& channel) const;
  // For a user's online/offline transition: node id -> watchers on that node who watch the user.
  std::map<std::string, std::vector<std::string>> WatchersByNode(const std::string& app_id,
                                                                 const std::string& user_id) const;
  // Connections of an app across the cluster.
  uint64_t AppConnections(const std::string& app_id) const;
  // For each of `nodes`: app id -> the app's connections on all the other nodes, for each of
  // `apps` (zeros included), or for every app with connections when `apps` is null.
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>> ConnectionsElsewhere(
      const std::vector<std::string>& nodes, const std::vector<std::string>* apps) const;

  // Cache channels.
  // `seq` orders the stores of one channel: a store with a lower seq than the one kept (a
  // publish accepted earlier whose store comes late) does not replace it. 0 = unordered.
  void StoreCache(const std::string& app_id, const std::string& channel, const std::string& event,
                  const std::string& data, uint32_t ttl_seconds, uint64_t seq = 0);
  std::optional<relay::v1::CachedEvent> GetCache(const std::string& app_id,
                                                 const std::string& channel) const;

 private:
  using Key = std::pair<std::string, std::string>;  // (app_id, channel) or (app_id, user_id)
  struct PresenceSocketRef {
    std::string node_id, socket_id;
    bool operator<(const PresenceSocketRef& o) const {
      return std::tie(node_id, socket_id) < std::tie(o.node_id, o.socket_id);
    }
  };
  struct Member {
    std::string user_info_json;
    std::set<PresenceSocketRef> sockets;
  };
  struct NodeData {
    absl::flat_hash_map<Key, uint32_t> channels;
    // (app, channel, socket) -> user id
    std::map<std::tuple<std::string, std::string, std::string>, std::string> presence;
    // socket -> (app, user)
    absl::flat_hash_map<std::string, Key> signed_in;
    // socket -> the user ids it watches
    absl::flat_hash_map<std::string, std::vector<std::string>> watchlists;
    absl::flat_hash_map<std::string, uint64_t> app_connections;
  };

  void SetChannelCount(NodeData& node, const std::string& node_id, const Key& key, uint32_t count,
                       Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PresenceLeave(NodeData& node, const std::string& node_id,
                     const relay::v1::PresenceSocket& socket, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PresenceAdd(NodeData& node, const std::string& node_id, const std::string& app_id,
                   const std::string& channel, const std::string& user_id, const std::string& info,
                   const std::string& socket_id, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SignIn(NodeData& node, const std::string& node_id, const relay::v1::SignedInSocket& s,
              Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SignOut(NodeData& node, const std::string& node_id, const std::string& socket_id,
               Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Effects ClearNode(const std::string& node_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, NodeData> nodes_ ABSL_GUARDED_BY(mu_);
  // Aggregates over nodes.
  std::map<Key, uint32_t> channel_totals_ ABSL_GUARDED_BY(mu_);  // ordered for prefix listing
  absl::flat_hash_map<Key, absl::flat_hash_set<std::string>> channel_nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, std::map<std::string, Member>> presence_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, absl::flat_hash_map<std::string, uint32_t>> user_nodes_
      ABSL_GUARDED_BY(mu_);
  // (app, watched user) -> watcher user -> number of watching sockets
  absl::flat_hash_map<Key, absl::flat_hash_map<std::string, uint32_t>> watchers_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> app_connections_ ABSL_GUARDED_BY(mu_);
  struct CacheEntry {
    relay::v1::CachedEvent event;
    uint64_t seq = 0;  // of the publish stored (StoreCache)
  };
  absl::flat_hash_map<Key, CacheEntry> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::controlplane
