// File: session.h
// What a shard needs from a client connection. Implemented by the WebSocket session
// (ws_session.cc), which keeps Beast out of every other translation unit.
// Shard-only: every method is called on the owning shard's thread.
#pragma once

#include <memory>
#include <string>

#include "dataplane/app_table.h"
#include "relay/v1/node_link.pb.h"

namespace relay::dataplane {

// A rendered frame, shared by every recipient (serialized once per publish).
using FramePtr = std::shared_ptr<const std::string>;

class Session {
 public:
  virtual ~Session() = default;
  virtual const std::string& socket_id() const = 0;
  virtual const std::string& app_id() const = 0;
  // Queues a frame; a session over its queue bounds is closed as a slow consumer, after the
  // current handler: Send() never changes shard state, so callers may walk an index while sending.
  virtual void Send(const FramePtr& frame) = 0;
  // Sends pusher:error (when `message` is not empty) and closes with `code`.
  virtual void CloseWith(int code, const std::string& message) = 0;
  // The control plane answered a subscription this session asked for.
  virtual void OnSubscribeReply(const relay::v1::SubscribeReply& reply) = 0;
  // The control plane acknowledged the delta with `seq` that registered this node's interest in
  // `channel` (or the link dropped, `seq` 0): the subscription may go live.
  virtual void OnInterestAcked(const std::string& channel, uint64_t seq) = 0;
  // The control plane changed this session's app (credentials, limits, features, enabled).
  virtual void OnAppUpdated(const AppPtr& app) = 0;
  // Watchlist transitions for this (signed-in) session.
  virtual void OnWatchlist(const relay::v1::WatchlistEvents& events) = 0;
};

}  // namespace relay::dataplane
