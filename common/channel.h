// File: channel.h
// Pusher channel naming rules: which kind a channel is (by prefix, most specific first) and
// whether a name is valid. See ../shared/spec/pusher-protocol.md section 3 and docs/protocol.md.
#pragma once

#include <string>
#include <string_view>

namespace relay::common {

// Pusher's documented maximum channel name length.
inline constexpr size_t kMaxChannelNameLength = 164;

// Prefix of the per-user channel that carries server-to-user events.
inline constexpr std::string_view kServerToUserPrefix = "#server-to-user-";

// What a channel name says about the channel.
struct ChannelKind {
  bool is_private = false;    // private-, private-encrypted-, private-cache-... (needs auth)
  bool is_presence = false;   // presence-, presence-cache- (needs auth + channel_data)
  bool is_encrypted = false;  // private-encrypted-, private-encrypted-cache-
  bool is_cache = false;      // cache-, private-cache-, presence-cache-, private-encrypted-cache-
  bool is_server_to_user = false;  // #server-to-user-<id>

  // Subscriptions must carry a valid signature.
  bool NeedsAuth() const { return is_private || is_presence; }
  // Clients may send client- events on it.
  bool AllowsClientEvents() const { return (is_private || is_presence) && !is_encrypted; }
};

// Classifies `name` by its prefix. Does not validate it.
ChannelKind ClassifyChannel(std::string_view name);

// Why a channel name is invalid, or empty when it is valid. Allowed characters are
// [A-Za-z0-9_-=@,.;]; `#server-to-user-<id>` is valid only when `allow_server_to_user`.
std::string ChannelNameError(std::string_view name, bool allow_server_to_user);

// The user id of a `#server-to-user-<id>` channel, or empty.
std::string_view ServerToUserId(std::string_view name);

// True when `id` matches ^\d+\.\d+$ (the socket id format every SDK validates).
bool IsValidSocketId(std::string_view id);

}  // namespace relay::common
