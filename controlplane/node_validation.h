// File: node_validation.h
// What the control plane accepts from a data plane. A node is authenticated, but everything it
// sends is still checked as strictly as client input (a compromised or buggy node must not be
// able to relay malformed events to real subscribers, invent impossible state or make the
// control plane hold unbounded memory). Structural rules only: whether an app exists, has client
// events enabled and so on is decided by the handlers, since an app can be deleted while a node's
// message is in flight.
// Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "relay/v1/node_link.pb.h"

namespace relay::controlplane {

// Bounds on what a node may report. Data planes enforce tighter per-connection limits; these
// are the backstop.
struct NodeLimits {
  // Longest node id, address and version text in a hello.
  size_t max_node_id = 128;
  size_t max_text = 256;
  // Longest user id (as the data plane allows) and user_info JSON. The app's own user_info
  // limit (1 KiB by default, but an operator may raise it without bound) is the data plane's to
  // enforce; this is only a backstop, so it is far above any sensible setting.
  size_t max_user_id = 128;
  size_t max_user_info_bytes = 1024 * 1024;
  // Largest client event data (JSON text), also a backstop; the app's limit is checked by the
  // handler.
  size_t max_event_data_bytes = 8 * 1024 * 1024;
  // Longest event name (Pusher: 200).
  size_t max_event_name = 200;
  // Watchlist entries per signed-in socket (Pusher: 100).
  size_t max_watchlist = 100;
  // Entries in one snapshot once its parts are assembled (channels + presence + users + apps),
  // and its bytes (a faithful data plane's outbox holds at most 128 MiB).
  size_t max_snapshot_entries = 4'000'000;
  size_t max_snapshot_bytes = 256u << 20;
};

// Why `msg` breaks the node link's rules (INVALID_ARGUMENT), or OK.
absl::Status ValidateNodeMessage(const relay::v1::NodeMessage& msg, const NodeLimits& limits);

// The same for a hello alone and for one snapshot part.
absl::Status ValidateHello(const relay::v1::NodeHello& hello, const NodeLimits& limits);
absl::Status ValidateSnapshot(const relay::v1::NodeSnapshot& snapshot, const NodeLimits& limits);

// True for 1..max characters of [A-Za-z0-9._:-] (node ids, app ids).
bool IsValidNodeId(std::string_view id, size_t max);

}  // namespace relay::controlplane
