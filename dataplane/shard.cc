#include "dataplane/shard.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/time.h"

namespace relay::dataplane {

namespace net = boost::asio;

namespace {
// What a post costs besides its payload (the handler, the queue's node); a rough figure that
// keeps posts with no payload counted.
constexpr size_t kPostOverhead = 64;

void EraseOne(std::vector<Session*>& v, Session* s) {
  auto it = std::find(v.begin(), v.end(), s);
  if (it != v.end()) {
    *it = v.back();
    v.pop_back();
  }
}
}  // namespace

Shard::Shard(size_t index, net::io_context& context,
             std::function<void(const relay::v1::PresenceSocket&)> orphan_presence,
             InboxLimits inbox)
    : index_(index),
      context_(context),
      inbox_(inbox),
      orphan_presence_(std::move(orphan_presence)) {}

void Shard::AddSession(Session* session) { sessions_.emplace(session, ++next_session_id_); }

void Shard::RemoveSession(Session* session) { sessions_.erase(session); }

std::vector<Shard::SessionRef> Shard::SnapshotSessions() const {
  return std::vector<SessionRef>(sessions_.begin(), sessions_.end());
}

bool Shard::StillOpen(const SessionRef& ref) const {
  auto it = sessions_.find(ref.first);
  return it != sessions_.end() && it->second == ref.second;
}

template <typename Fn>
void Shard::Post(size_t bytes, Fn fn) {
  bytes += kPostOverhead;
  inbox_.Add(bytes);
  net::post(context_, [this, bytes, fn = std::move(fn)] {
    fn();
    inbox_.Done(bytes);
  });
}

bool Shard::Subscribe(Session* session, const std::string& app_id, const std::string& channel) {
  auto& subs = channels_[Key{app_id, channel}];
  if (std::find(subs.begin(), subs.end(), session) != subs.end()) return false;
  subs.push_back(session);
  metrics_.subscriptions.Add();
  return true;
}

bool Shard::Unsubscribe(Session* session, const std::string& app_id, const std::string& channel) {
  auto it = channels_.find(Key{app_id, channel});
  if (it == channels_.end()) return false;
  size_t before = it->second.size();
  EraseOne(it->second, session);
  bool removed = it->second.size() != before;
  if (removed) metrics_.subscriptions.Sub(1);
  if (it->second.empty()) channels_.erase(it);
  return removed;
}

void Shard::AddUser(Session* session, const std::string& app_id, const std::string& user_id) {
  auto& v = users_[Key{app_id, user_id}];
  if (std::find(v.begin(), v.end(), session) == v.end()) v.push_back(session);
}

void Shard::RemoveUser(Session* session, const std::string& app_id, const std::string& user_id) {
  auto it = users_.find(Key{app_id, user_id});
  if (it == users_.end()) return;
  EraseOne(it->second, session);
  if (it->second.empty()) users_.erase(it);
}

uint64_t Shard::AwaitReply(std::weak_ptr<Session> session,
                           const relay::v1::PresenceSocket* presence) {
  uint64_t id = (++next_request_ << 8) | index_;
  Pending& p = pending_[id];
  p.session = std::move(session);
  if (presence != nullptr) p.presence = *presence;
  return id;
}

void Shard::AwaitAck(uint64_t seq, std::weak_ptr<Session> session, std::string channel) {
  if (acked_ != nullptr && acked_->load() >= seq) {
    // Already routed here: live at once, before this shard handles anything else (a publish
    // for the channel may be queued right behind). An ack that comes after the check is
    // posted to the shard and finds the wait registered below.
    if (auto s = session.lock()) s->OnInterestAcked(channel, seq);
    return;
  }
  awaiting_acks_.emplace(seq, std::make_pair(std::move(session), std::move(channel)));
}

void Shard::PostAppUpdate(AppPtr app) {
  Post(0, [this, app = std::move(app)] {
    for (const SessionRef& ref : SnapshotSessions()) {
      if (StillOpen(ref) && ref.first->app_id() == app->id()) ref.first->OnAppUpdated(app);
    }
  });
}

void Shard::PostAck(uint64_t ack) {
  Post(0, [this, ack] {
    while (!awaiting_acks_.empty() && awaiting_acks_.begin()->first <= ack) {
      auto node = awaiting_acks_.extract(awaiting_acks_.begin());
      if (auto s = node.mapped().first.lock()) s->OnInterestAcked(node.mapped().second, node.key());
    }
  });
}

void Shard::PostReleaseAcks() {
  Post(0, [this] {
    auto waits = std::move(awaiting_acks_);
    awaiting_acks_.clear();
    for (auto& [seq, w] : waits) {
      if (auto s = w.first.lock()) s->OnInterestAcked(w.second, seq);
    }
  });
}

void Shard::Deliver(const Delivery& d) {
  bool sent = false;
  for (const auto& [channel, frame] : d.frames) {
    auto it = channels_.find(Key{d.app_id, channel});
    if (it == channels_.end()) continue;
    sent = true;
    // Send() never changes the index (a slow consumer is cut after this handler), so the
    // subscribers are walked in place.
    for (Session* s : it->second) {
      if (!d.exclude_socket_id.empty() && s->socket_id() == d.exclude_socket_id) continue;
      s->Send(frame);
    }
  }
  // Once per publish and shard, not per subscriber, and after the socket writes: Send() queued
  // the frames and scheduled this thread's flush (FlushList) on the shard's io_context, which
  // runs posted handlers in order, so this handler runs once the flush has written the frames
  // to every subscriber socket that had room. A wall clock, since the accept time comes from
  // the control plane's process.
  if (sent && d.accepted_unix_us > 0) {
    net::post(context_, [this, accepted = d.accepted_unix_us] {
      metrics_.publish_latency.Observe(common::NowUnixMicros() - accepted);
    });
  }
}

void Shard::PostDeliver(std::shared_ptr<const Delivery> delivery) {
  size_t bytes = delivery->app_id.size() + delivery->exclude_socket_id.size();
  for (const auto& [channel, frame] : delivery->frames) bytes += channel.size() + frame->size();
  Post(bytes, [this, d = std::move(delivery)] { Deliver(*d); });
}

void Shard::PostToUser(std::string app_id, std::string user_id, FramePtr frame,
                       std::string exclude) {
  size_t bytes = app_id.size() + user_id.size() + frame->size() + exclude.size();
  Post(bytes, [this, key = Key{std::move(app_id), std::move(user_id)}, frame = std::move(frame),
               exclude = std::move(exclude)] {
    auto it = users_.find(key);
    if (it == users_.end()) return;
    for (Session* s : it->second) {  // in place: Send() never changes the index
      if (exclude.empty() || s->socket_id() != exclude) s->Send(frame);
    }
  });
}

void Shard::PostTerminateUser(std::string app_id, std::string user_id) {
  size_t bytes = app_id.size() + user_id.size();
  Post(bytes, [this, key = Key{std::move(app_id), std::move(user_id)}] {
    auto it = users_.find(key);
    if (it == users_.end()) return;
    std::vector<Session*> v = it->second;
    for (Session* s : v) {
      if (sessions_.contains(s)) s->CloseWith(4009, "You got disconnected by the app.");
    }
  });
}

void Shard::PostCloseApp(std::string app_id, int code, std::string message) {
  size_t bytes = app_id.size() + message.size();
  Post(bytes, [this, app_id = std::move(app_id), code, message = std::move(message)] {
    for (const SessionRef& ref : SnapshotSessions()) {
      if (StillOpen(ref) && ref.first->app_id() == app_id) ref.first->CloseWith(code, message);
    }
  });
}

void Shard::PostCloseAll(int code, std::string message) {
  size_t bytes = message.size();
  Post(bytes, [this, code, message = std::move(message)] {
    for (const SessionRef& ref : SnapshotSessions()) {
      if (StillOpen(ref)) ref.first->CloseWith(code, message);
    }
  });
}

void Shard::PostReply(relay::v1::SubscribeReply reply) {
  size_t bytes = reply.ByteSizeLong();
  Post(bytes, [this, reply = std::move(reply)] {
    auto it = pending_.find(reply.request_id());
    if (it == pending_.end()) return;
    auto session = it->second.session.lock();
    auto presence = std::move(it->second.presence);
    pending_.erase(it);
    if (session) {
      session->OnSubscribeReply(reply);
    } else if (reply.ok() && presence && orphan_presence_) {
      orphan_presence_(*presence);
    }
  });
}

void Shard::PostWatchlist(relay::v1::WatchlistEvents events) {
  size_t bytes = events.ByteSizeLong();
  Post(bytes, [this, events = std::move(events)] {
    for (const auto& watcher : events.watcher_user_ids()) {
      auto it = users_.find(Key{events.app_id(), watcher});
      if (it == users_.end()) continue;
      std::vector<Session*> v = it->second;
      for (Session* s : v) {
        if (sessions_.contains(s)) s->OnWatchlist(events);
      }
    }
  });
}

void Shard::PostDrain(uint32_t window_ms, const std::atomic<bool>* draining) {
  Post(0, [this, window_ms, draining] {
    // The sessions open now, each closed at most once: a session that closes during the window
    // is skipped, and a new one that takes its address is not mistaken for it.
    std::vector<SessionRef> v = SnapshotSessions();
    if (v.empty()) return;
    // Spread the closes evenly over the window so clients reconnect gradually.
    auto step = std::chrono::microseconds(static_cast<int64_t>(window_ms) * 1000 /
                                          static_cast<int64_t>(v.size()));
    auto timer = std::make_shared<net::steady_timer>(context_);
    auto index = std::make_shared<size_t>(0);
    auto tick = std::make_shared<std::function<void()>>();
    *tick = [this, v, step, timer, index, tick, draining] {
      if (draining != nullptr && !draining->load()) *index = v.size();  // undrained
      while (*index < v.size()) {
        const SessionRef& ref = v[(*index)++];
        if (StillOpen(ref)) {
          ref.first->CloseWith(4200, "Server is draining; reconnect to another node");
          break;
        }
      }
      if (*index >= v.size()) {
        *tick = nullptr;  // break the self-reference
        return;
      }
      timer->expires_after(step);
      timer->async_wait([tick](const boost::system::error_code& ec) {
        if (!ec && *tick) (*tick)();
      });
    };
    (*tick)();
  });
}

}  // namespace relay::dataplane
