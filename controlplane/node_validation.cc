#include "controlplane/node_validation.h"

#include <simdjson.h>

#include "common/channel.h"
#include "common/json.h"
#include "common/strings.h"

namespace relay::controlplane {
namespace {

using relay::v1::NodeMessage;

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(common::StrCat("node link: ", what));
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':';
}

// App ids follow the app store's rule (1-128 of [A-Za-z0-9._-]).
bool IsValidAppId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!IsIdChar(c) || c == ':') return false;
  }
  return true;
}

bool IsValidJson(std::string_view text) {
  simdjson::dom::element doc;
  return !common::ThreadParser().parse(text.data(), text.size()).get(doc);
}

bool IsValidUserId(std::string_view id, const NodeLimits& limits) {
  return !id.empty() && id.size() <= limits.max_user_id;
}

absl::Status CheckChannel(std::string_view app_id, std::string_view channel) {
  if (!IsValidAppId(app_id)) return Invalid("invalid app id");
  if (std::string err = common::ChannelNameError(channel, false); !err.empty()) {
    return Invalid(common::StrCat("invalid channel name: ", err));
  }
  return absl::OkStatus();
}

absl::Status CheckChannelCount(const relay::v1::ChannelCount& c) {
  return CheckChannel(c.app_id(), c.channel());
}

absl::Status CheckPresenceSocket(const relay::v1::PresenceSocket& p, const NodeLimits& limits,
                                 bool joining) {
  if (auto st = CheckChannel(p.app_id(), p.channel()); !st.ok()) return st;
  if (!common::ClassifyChannel(p.channel()).is_presence) {
    return Invalid("a presence entry names a channel that is not a presence channel");
  }
  if (!IsValidUserId(p.user_id(), limits)) return Invalid("invalid presence user id");
  if (!common::IsValidSocketId(p.socket_id())) return Invalid("invalid socket id");
  if (joining && !p.user_info_json().empty()) {
    if (p.user_info_json().size() > limits.max_user_info_bytes ||
        !IsValidJson(p.user_info_json())) {
      return Invalid("presence user_info is not valid JSON within the size limit");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSignedIn(const relay::v1::SignedInSocket& s, const NodeLimits& limits) {
  if (!IsValidAppId(s.app_id())) return Invalid("invalid app id");
  if (!IsValidUserId(s.user_id(), limits)) return Invalid("invalid signed-in user id");
  if (!common::IsValidSocketId(s.socket_id())) return Invalid("invalid socket id");
  if (static_cast<size_t>(s.watchlist_size()) > limits.max_watchlist) {
    return Invalid("watchlist longer than 100 entries");
  }
  for (const auto& w : s.watchlist()) {
    if (!IsValidUserId(w, limits)) return Invalid("invalid watchlist user id");
  }
  return absl::OkStatus();
}

absl::Status CheckAppConnections(const google::protobuf::Map<std::string, uint64_t>& apps) {
  for (const auto& [app, n] : apps) {
    if (!IsValidAppId(app)) return Invalid("invalid app id in app_connections");
  }
  return absl::OkStatus();
}

absl::Status CheckDelta(const relay::v1::StateDelta& d, const NodeLimits& limits) {
  for (const auto& c : d.channels()) {
    if (auto st = CheckChannelCount(c); !st.ok()) return st;
  }
  for (const auto& p : d.presence_left()) {
    if (auto st = CheckPresenceSocket(p, limits, false); !st.ok()) return st;
  }
  for (const auto* list : {&d.signed_in(), &d.signed_out()}) {
    for (const auto& s : *list) {
      if (auto st = CheckSignedIn(s, limits); !st.ok()) return st;
    }
  }
  return CheckAppConnections(d.app_connections());
}

absl::Status CheckClientEvent(const relay::v1::ClientEventUp& e, const NodeLimits& limits) {
  if (auto st = CheckChannel(e.app_id(), e.channel()); !st.ok()) return st;
  common::ChannelKind kind = common::ClassifyChannel(e.channel());
  if (!kind.AllowsClientEvents()) {
    return Invalid("client events are allowed on private and presence channels only");
  }
  if (e.event().compare(0, 7, "client-") != 0 || e.event().size() > limits.max_event_name) {
    return Invalid("a client event name must start with 'client-' and be at most 200 characters");
  }
  if (e.data_json().size() > limits.max_event_data_bytes || !IsValidJson(e.data_json())) {
    return Invalid("client event data is not valid JSON within the size limit");
  }
  if (!common::IsValidSocketId(e.socket_id())) return Invalid("invalid socket id");
  if (kind.is_presence ? !IsValidUserId(e.user_id(), limits) : !e.user_id().empty()) {
    return Invalid("a client event carries a user id exactly on presence channels");
  }
  return absl::OkStatus();
}

absl::Status CheckSubscribe(const relay::v1::SubscribeRequest& r, const NodeLimits& limits) {
  if (auto st = CheckChannel(r.app_id(), r.channel()); !st.ok()) return st;
  if (!common::IsValidSocketId(r.socket_id())) return Invalid("invalid socket id");
  common::ChannelKind kind = common::ClassifyChannel(r.channel());
  if (kind.is_presence != r.has_member()) {
    return Invalid("a subscribe request carries a member exactly for presence channels");
  }
  if (!kind.is_presence && !kind.is_cache) {
    return Invalid("only presence and cache subscriptions are decided by the control plane");
  }
  if (r.has_member()) {
    if (!IsValidUserId(r.member().user_id(), limits)) return Invalid("invalid member user id");
    const std::string& info = r.member().user_info_json();
    if (!info.empty() && (info.size() > limits.max_user_info_bytes || !IsValidJson(info))) {
      return Invalid("member user_info is not valid JSON within the size limit");
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidNodeId(std::string_view id, size_t max) {
  if (id.empty() || id.size() > max) return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

absl::Status ValidateHello(const relay::v1::NodeHello& hello, const NodeLimits& limits) {
  if (!IsValidNodeId(hello.node_id(), limits.max_node_id)) {
    return Invalid("the node id must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  if (hello.address().size() > limits.max_text || hello.version().size() > limits.max_text) {
    return Invalid("hello address or version too long");
  }
  return absl::OkStatus();
}

absl::Status ValidateSnapshot(const relay::v1::NodeSnapshot& s, const NodeLimits& limits) {
  size_t entries = static_cast<size_t>(s.channels_size()) + s.presence_size() + s.users_size() +
                   s.app_connections_size();
  if (entries > limits.max_snapshot_entries) return Invalid("snapshot too large");
  for (const auto& c : s.channels()) {
    if (auto st = CheckChannelCount(c); !st.ok()) return st;
  }
  for (const auto& p : s.presence()) {
    if (auto st = CheckPresenceSocket(p, limits, true); !st.ok()) return st;
  }
  for (const auto& u : s.users()) {
    if (auto st = CheckSignedIn(u, limits); !st.ok()) return st;
  }
  return CheckAppConnections(s.app_connections());
}

absl::Status ValidateNodeMessage(const NodeMessage& msg, const NodeLimits& limits) {
  switch (msg.body_case()) {
    case NodeMessage::kHello:
      return ValidateHello(msg.hello(), limits);
    case NodeMessage::kSnapshot:
      return ValidateSnapshot(msg.snapshot(), limits);
    case NodeMessage::kDelta:
      return CheckDelta(msg.delta(), limits);
    case NodeMessage::kClientEvent:
      return CheckClientEvent(msg.client_event(), limits);
    case NodeMessage::kSubscribe:
      return CheckSubscribe(msg.subscribe(), limits);
    case NodeMessage::kHeartbeat:
    case NodeMessage::kGoodbye:
    case NodeMessage::BODY_NOT_SET:  // an empty message carries only seq/ack
      return absl::OkStatus();
  }
  return Invalid("unknown message");
}

}  // namespace relay::controlplane
