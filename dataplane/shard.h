// File: shard.h
// One I/O thread's share of the data plane: its sessions, its channel index (app, channel) ->
// sessions, its signed-in users, and the subscriptions waiting for the control plane. Commands
// from the control link arrive as posts; a publish is one post per shard, after which the shard
// only copies shared bytes into each subscriber's queue. No locks on this path. The posts
// waiting to run are bounded (InboxBound): the link stops reading while a shard is full.
// Shard-only unless a method says Post (or WaitForRoom).
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "dataplane/inbox_bound.h"
#include "dataplane/session.h"
#include "dataplane/shard_metrics.h"

namespace relay::dataplane {

// A publish, prepared once by the control link for every shard.
struct Delivery {
  std::string app_id;
  std::vector<std::pair<std::string, FramePtr>> frames;  // (channel, frame)
  std::string exclude_socket_id;
  // When the control plane accepted the publish (Unix microseconds; 0 = unknown, e.g. a
  // client event relayed by this node).
  int64_t accepted_unix_us = 0;
};

class Shard {
 public:
  // `orphan_presence` reports a presence join whose session closed before the reply came.
  Shard(size_t index, boost::asio::io_context& context,
        std::function<void(const relay::v1::PresenceSocket&)> orphan_presence,
        InboxLimits inbox = {});

  size_t index() const { return index_; }
  boost::asio::io_context& context() { return context_; }

  void AddSession(Session* session);
  void RemoveSession(Session* session);
  // Returns true when the session was not yet subscribed.
  bool Subscribe(Session* session, const std::string& app_id, const std::string& channel);
  bool Unsubscribe(Session* session, const std::string& app_id, const std::string& channel);
  void AddUser(Session* session, const std::string& app_id, const std::string& user_id);
  void RemoveUser(Session* session, const std::string& app_id, const std::string& user_id);
  // Registers a pending subscription reply; the id encodes this shard. `presence` (may be null)
  // is the membership the control plane will record, withdrawn here if the session is gone by
  // the time the reply arrives.
  uint64_t AwaitReply(std::weak_ptr<Session> session, const relay::v1::PresenceSocket* presence);
  // Waits for the control plane's ack of `seq` before telling `session` its subscription to
  // `channel` is live (see NodeState::ChannelChanged).
  void AwaitAck(uint64_t seq, std::weak_ptr<Session> session, std::string channel);
  size_t session_count() const { return sessions_.size(); }
  // Written on this shard's thread only; any thread may read (a scrape).
  ShardMetrics& metrics() { return metrics_; }
  const ShardMetrics& metrics() const { return metrics_; }

  // Any thread. False when this shard's posts are within their bound; otherwise runs `on_room`
  // once (on this shard's thread) when they are again, and returns true.
  bool WaitForRoom(std::function<void()> on_room) { return inbox_.WaitForRoom(std::move(on_room)); }
  const InboxBound& inbox() const { return inbox_; }

  // Cross-thread entry points (post onto this shard).
  void PostDeliver(std::shared_ptr<const Delivery> delivery);
  void PostToUser(std::string app_id, std::string user_id, FramePtr frame,
                  std::string exclude_socket_id);
  void PostTerminateUser(std::string app_id, std::string user_id);
  void PostCloseApp(std::string app_id, int code, std::string message);
  void PostReply(relay::v1::SubscribeReply reply);
  void PostWatchlist(relay::v1::WatchlistEvents events);
  // Closes every session with 4200, spread evenly over `window_ms`; stops early once
  // `draining` (when given; it must outlive the window) turns false (an undrain).
  void PostDrain(uint32_t window_ms, const std::atomic<bool>* draining = nullptr);
  void PostCloseAll(int code, std::string message);
  // Hands the new version of an app to its sessions on this shard.
  void PostAppUpdate(AppPtr app);
  // The control plane has applied everything up to `ack`.
  void PostAck(uint64_t ack);
  // The link dropped: nothing will be acknowledged on it; release every wait.
  void PostReleaseAcks();

  static size_t ShardOfRequest(uint64_t request_id) { return request_id & 0xff; }

 private:
  using Key = std::pair<std::string, std::string>;
  // A session as a post that runs later finds it again: by its address and its id, since the
  // address of a session that closed meanwhile may belong to a new one.
  using SessionRef = std::pair<Session*, uint64_t>;
  void Deliver(const Delivery& delivery);
  // Runs `fn` on this shard's thread, counted against the inbox bound as `bytes` until it has
  // run. (Defined in shard.cc, its only user.)
  template <typename Fn>
  void Post(size_t bytes, Fn fn);
  std::vector<SessionRef> SnapshotSessions() const;
  bool StillOpen(const SessionRef& ref) const;

  size_t index_;
  boost::asio::io_context& context_;
  ShardMetrics metrics_;
  InboxBound inbox_;
  // Each session with an id unique on this shard for the shard's life (never reused).
  absl::flat_hash_map<Session*, uint64_t> sessions_;
  uint64_t next_session_id_ = 0;
  absl::flat_hash_map<Key, std::vector<Session*>> channels_;
  absl::flat_hash_map<Key, std::vector<Session*>> users_;
  struct Pending {
    std::weak_ptr<Session> session;
    std::optional<relay::v1::PresenceSocket> presence;
  };
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::function<void(const relay::v1::PresenceSocket&)> orphan_presence_;
  std::multimap<uint64_t, std::pair<std::weak_ptr<Session>, std::string>> awaiting_acks_;

 public:
  // `acked`: the highest seq the control plane has acknowledged on the current stream.
  void set_acked(const std::atomic<uint64_t>* acked) { acked_ = acked; }

 private:
  const std::atomic<uint64_t>* acked_ = nullptr;
  uint64_t next_request_ = 0;
};

}  // namespace relay::dataplane
