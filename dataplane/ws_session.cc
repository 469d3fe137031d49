#include "dataplane/ws_session.h"

#include <simdjson.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "common/app_secrets.h"
#include "common/channel.h"
#include "common/frames.h"
#include "common/json.h"
#include "common/log.h"
#include "common/pusher_auth.h"
#include "common/strings.h"
#include "common/time.h"
#include "dataplane/data_plane.h"
#include "dataplane/shard.h"
#include "transport/ws_conn.h"

namespace relay::dataplane {
namespace {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxUserIdLength = 128;
constexpr size_t kMaxWatchlist = 100;
// How long a closing connection may take to finish the closing handshake.
constexpr std::chrono::seconds kCloseTimeout{5};

// A second per-thread parser for JSON nested in strings (channel_data, user_data) while the
// outer document from ThreadParser() is still in use.
simdjson::dom::parser& InnerParser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

FramePtr MakeFrame(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

// Reasons in close frames must stay under 123 bytes.
std::string CloseReasonText(std::string_view message) {
  return std::string(message.substr(0, 120));
}

// The client's address when connections per address are capped, else "" (nothing counted).
std::string PeerAddress(DataPlane& dp, transport::ClientStream& stream) {
  if (dp.options().max_connections_per_ip == 0) return "";
  boost::system::error_code ec;
  auto& socket =
      stream.tls ? boost::beast::get_lowest_layer(*stream.tls).socket() : stream.plain->socket();
  auto endpoint = socket.remote_endpoint(ec);
  return ec ? "" : endpoint.address().to_string();
}

// The connection-level refusal for an upgrade request, or nullopt when it may proceed.
struct Refusal {
  int code;
  std::string message;
};

class WsSession final : public Session,
                        public transport::WsConn::Listener,
                        public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(DataPlane& dp, Shard& shard, transport::ClientStream stream,
            const transport::WsLimits& limits)
      : dp_(dp),
        shard_(shard),
        address_(PeerAddress(dp, stream)),
        conn_(std::move(stream), limits),
        timer_(shard.context()),
        auth_timer_(shard.context()) {}

  ~WsSession() override = default;

  void Run(const transport::BeastRequest& request, std::string leftover) {
    std::optional<Refusal> refusal = Check(request);
    if (!conn_.Accept(request, dp_.options().permessage_deflate, weak_from_this())) {
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      return;  // answered with an HTTP error; nothing was registered
    }
    OnAccept(refusal);
    conn_.Start(std::move(leftover));
  }

  // Session
  const std::string& socket_id() const override { return socket_id_; }
  const std::string& app_id() const override { return app_id_; }

  void Send(const FramePtr& frame) override {
    if (closed_) return;
    auto sent = conn_.Send(frame);
    if (sent == transport::WsConn::SendResult::kQueued) SyncQueueBytes();
    if (sent == transport::WsConn::SendResult::kOverBounds && !cut_) {
      // Cut after the current handler: a shard delivering to its channel index must not see
      // the index change under it.
      cut_ = true;
      shard_.metrics().slow_consumers_cut.Add();
      NoteClose(CloseReason::kSlowConsumer, kNoCloseCode);
      RELAY_LOG(kDebug, "ws", "socket ", socket_id_, " is too slow; dropping it");
      net::post(shard_.context(), [self = shared_from_this()] { self->HardClose(); });
    }
  }

  void CloseWith(int code, const std::string& message) override {
    if (closed_ || conn_.closing()) return;
    NoteClose(CloseReason::kServer, code);
    if (!message.empty()) Send(MakeFrame(common::RenderError(code, message)));
    conn_.Close(static_cast<uint16_t>(code), CloseReasonText(message));
    SyncQueueBytes();
    ArmCloseTimer();
  }

  // transport::WsConn::Listener
  void OnWsMessage(std::string_view payload, bool text) override {
    last_rx_ = Clock::now();
    pinged_ = false;
    shard_.metrics().messages_in.Add();
    shard_.metrics().bytes_in.Add(payload.size());
    if (!registered_ || conn_.closing()) return;
    if (!text) return ProtocolError("Binary frames are not supported; send JSON text frames");
    HandleFrame(payload);
  }

  void OnWsViolation(uint16_t code, std::string_view why) override {
    dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    NoteClose(CloseReason::kViolation, code);
    RELAY_LOG(kDebug, "ws", "socket ", socket_id_, " closed with ", code, ": ", why);
    ArmCloseTimer();
  }

  void OnWsSent(size_t messages, size_t bytes) override {
    shard_.metrics().messages_out.Add(messages);
    shard_.metrics().bytes_out.Add(bytes);
    SyncQueueBytes();
  }

  void OnWsClosed() override { Cleanup(); }

  void OnSubscribeReply(const relay::v1::SubscribeReply& reply) override {
    auto it = pending_.find(reply.request_id());
    if (it == pending_.end()) return;
    std::string channel = std::move(it->second);
    pending_.erase(it);
    auto sub = subs_.find(channel);
    bool still_wanted = sub != subs_.end() && sub->second.request_id == reply.request_id();
    if (!still_wanted || closed_) {
      // Unsubscribed (or closed) while waiting: withdraw a membership the control plane added.
      if (reply.ok() && !reply.roster().empty()) {
        dp_.state().PresenceLeft(PresenceOf(channel, sub_user_for_orphan_[reply.request_id()]));
      }
      sub_user_for_orphan_.erase(reply.request_id());
      return;
    }
    sub_user_for_orphan_.erase(reply.request_id());
    if (!reply.ok()) {
      subs_.erase(sub);
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      Send(MakeFrame(common::RenderSubscriptionError(channel, reply.error_type(),
                                                     reply.error_message(),
                                                     static_cast<int>(reply.error_status()))));
      return;
    }
    sub->second.request_id = 0;
    common::ChannelKind kind = common::ClassifyChannel(channel);
    std::string succeeded = "{}";
    if (kind.is_presence) {
      // With its user_info: the snapshot a restarted control plane rebuilds rosters from.
      relay::v1::PresenceSocket joined = PresenceOf(channel, sub->second.user_id);
      joined.set_user_info_json(std::move(sub->second.user_info));
      dp_.state().PresenceJoined(joined);
      common::JsonWriter w;
      w.BeginObject().Key("presence").BeginObject().Key("ids").BeginArray();
      for (const auto& m : reply.roster()) w.String(m.user_id());
      w.EndArray().Key("hash").BeginObject();
      for (const auto& m : reply.roster()) {
        w.Key(m.user_id()).Raw(m.user_info_json().empty() ? "{}" : m.user_info_json());
      }
      w.EndObject().Key("count").Uint(static_cast<uint64_t>(reply.roster_size()));
      w.EndObject().EndObject();
      succeeded = w.Take();
    }
    std::vector<FramePtr> after;
    if (kind.is_cache) {
      after.push_back(reply.has_cache() ? MakeFrame(common::RenderEvent(
                                              reply.cache().event(), channel, reply.cache().data()))
                                        : CacheMissFrame(channel));
    }
    Activate(channel, succeeded, std::move(after));
  }

  void OnInterestAcked(const std::string& channel, uint64_t seq) override {
    auto it = subs_.find(channel);
    if (it == subs_.end() || closed_) return;
    Sub& sub = it->second;
    if (sub.live || sub.ack_seq != seq) return;
    GoLive(channel, sub);
  }

  void OnAppUpdated(const AppPtr& app) override {
    app_ = app;  // limits and features apply from the next frame on
    if (!app->enabled()) CloseWith(4003, "Application disabled");
  }

  void OnWatchlist(const relay::v1::WatchlistEvents& events) override {
    common::JsonWriter w;
    w.BeginObject().Key("events").BeginArray();
    for (const auto& [name, list] :
         {std::pair{"online", &events.online()}, std::pair{"offline", &events.offline()}}) {
      if (list->empty()) continue;
      w.BeginObject().Key("name").String(name).Key("user_ids").BeginArray();
      for (const auto& u : *list) w.String(u);
      w.EndArray().EndObject();
    }
    w.EndArray().EndObject();
    Send(MakeFrame(common::RenderEvent("pusher_internal:watchlist_events", "", w.str())));
  }

 private:
  struct Sub {
    uint64_t request_id = 0;        // non-zero while the control plane has not answered
    std::string user_id;            // presence member id
    std::string user_info;          // presence member info JSON, until the join is recorded
    bool counted = false;           // counted in NodeState (reported to the control plane)
    bool live = false;              // in the shard index; subscription_succeeded sent
    uint64_t ack_seq = 0;           // waiting for the control plane to route this node's interest
    std::vector<FramePtr> on_live;  // subscription_succeeded and what follows it
  };

  std::optional<Refusal> Check(const transport::BeastRequest& req) {
    std::string_view target = req.target();
    size_t q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
    constexpr std::string_view kPrefix = "/app/";
    if (path.substr(0, kPrefix.size()) != kPrefix || path.size() == kPrefix.size() ||
        path.find('/', kPrefix.size()) != std::string_view::npos) {
      return Refusal{4005, "Path not found"};
    }
    std::string key;
    if (!common::PercentDecode(path.substr(kPrefix.size()), &key)) {
      return Refusal{4005, "Path not found"};
    }
    common::QueryParams params;
    common::ParseQuery(query, &params);
    for (const auto& [k, v] : params) {
      if (k == "version") {
        bool valid = !v.empty() && v.size() <= 32 && std::all_of(v.begin(), v.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' ||
                 c == '_';
        });
        if (!valid) return Refusal{4006, "Invalid version string format"};
      }
      if (k != "protocol") continue;
      int protocol = 0;
      if (!absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &protocol)) {
        return Refusal{4007, "Unsupported protocol version"};
      }
      if (protocol < 5 || protocol > 7) return Refusal{4007, "Unsupported protocol version"};
    }
    if (dp_.draining()) return Refusal{4200, "Server is draining; reconnect to another node"};
    app_ = dp_.apps().ByKey(key);
    if (!app_) {
      if (!dp_.apps().loaded()) {
        // The control plane has not told us about any app yet: ask the client to come back.
        return Refusal{4100, "Server is starting; try again shortly"};
      }
      return Refusal{4001, "Application does not exist"};
    }
    if (!app_->enabled()) return Refusal{4003, "Application disabled"};
    uint64_t capacity = dp_.options().capacity;
    if (capacity > 0 && dp_.counters().connections.load() >= capacity) {
      return Refusal{4100, "Over capacity"};
    }
    uint32_t max = app_->limits().max_connections();
    if (max > 0 && dp_.state().ClusterAppConnections(app_->id()) >= max) {
      return Refusal{4004, "Application is over connection quota"};
    }
    return std::nullopt;
  }

  void OnAccept(std::optional<Refusal> refusal) {
    // Counted last, so that no other refusal holds a slot of the address.
    if (!refusal && !address_.empty()) {
      if (dp_.AcquireAddress(address_)) {
        address_counted_ = true;
      } else {
        refusal = Refusal{4100, "Too many connections from this address"};
      }
    }
    if (refusal) {
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      shard_.metrics().refused[CloseCodeIndex(refusal->code)].Add();
      CloseWith(refusal->code, refusal->message);
      return;
    }
    registered_ = true;
    app_id_ = app_->id();
    socket_id_ = dp_.NextSocketId();
    shard_.AddSession(this);
    shard_.metrics().connections_opened.Add();
    dp_.counters().connections.fetch_add(1, std::memory_order_relaxed);
    dp_.state().ConnectionChanged(app_id_, +1);
    last_rx_ = Clock::now();
    subscribe_tokens_ = static_cast<double>(dp_.options().subscribe_burst);
    subscribe_tokens_at_ = last_rx_;
    common::JsonWriter data;
    data.BeginObject()
        .Key("socket_id")
        .String(socket_id_)
        .Key("activity_timeout")
        .Uint(dp_.options().activity_timeout_seconds)
        .EndObject();
    Send(MakeFrame(common::RenderEvent("pusher:connection_established", "", data.str())));
    ArmActivityTimer();
    if (app_->features().require_user_authentication()) ArmAuthTimer();
  }

  void ProtocolError(std::string_view message) {
    dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    Send(MakeFrame(common::RenderError(std::nullopt, message)));
  }

  void HandleFrame(std::string_view text) {
    simdjson::dom::element doc;
    simdjson::dom::object obj;
    if (common::ThreadParser().parse(text).get(doc) || doc.get(obj)) {
      return ProtocolError("Received invalid JSON");
    }
    std::string_view event;
    if (obj["event"].get(event)) return ProtocolError("Every message needs a string 'event'");
    // `data` may be an object or (older clients) a JSON string holding an object.
    simdjson::dom::element data_el;
    simdjson::dom::object data;
    bool has_data = obj["data"].get(data_el) == simdjson::SUCCESS;
    std::string data_text;
    if (has_data) {
      std::string_view s;
      if (data_el.get(s) == simdjson::SUCCESS) {
        data_text = std::string(s);
      }
    }
    if (event == "pusher:ping") {
      Send(MakeFrame(R"({"event":"pusher:pong","data":"{}"})"));
      return;
    }
    if (event == "pusher:pong") return;
    if (event.substr(0, 7) == "client-") {
      std::string_view channel;
      if (obj["channel"].get(channel)) return ProtocolError("Client events need a 'channel'");
      if (!has_data) return ProtocolError("Client events need 'data'");
      return HandleClientEvent(event, channel, simdjson::minify(data_el));
    }
    bool known =
        event == "pusher:subscribe" || event == "pusher:unsubscribe" || event == "pusher:signin";
    if (!known) {
      if (event.substr(0, 7) == "pusher:") return;  // unknown pusher: events are ignored
      return ProtocolError(
          common::StrCat("Unknown event '", event, "'; client events must start with 'client-'"));
    }
    // Parse string-encoded data for the control events.
    simdjson::dom::parser& parser = InnerParser();
    if (has_data && !data_text.empty()) {
      simdjson::dom::element inner;
      if (parser.parse(data_text).get(inner) || inner.get(data)) {
        return ProtocolError("'data' must be an object");
      }
    } else if (!has_data || data_el.get(data)) {
      return ProtocolError("'data' must be an object");
    }
    if (event == "pusher:subscribe") return HandleSubscribe(data);
    if (event == "pusher:unsubscribe") {
      std::string_view channel;
      if (data["channel"].get(channel)) return ProtocolError("Unsubscribe needs a 'channel'");
      Unsubscribe(std::string(channel));
      return;
    }
    HandleSignin(data);
  }

  void SubscriptionError(const std::string& channel, std::string_view type,
                         std::string_view message, int status) {
    dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    Send(MakeFrame(common::RenderSubscriptionError(channel, type, message, status)));
  }

  std::vector<std::string_view> Secrets() const {
    return common::AcceptedSecrets(*app_, common::NowUnixMs());
  }

  void HandleSubscribe(simdjson::dom::object data) {
    std::string_view channel_sv;
    if (data["channel"].get(channel_sv)) return ProtocolError("Subscribe needs a 'channel'");
    std::string channel(channel_sv);
    if (!TakeSubscribeToken()) {
      shard_.metrics().subscribe_rate_limited.Add();
      return SubscriptionError(
          channel, "LimitReached",
          common::StrCat("Too many subscribe requests: at most ", dp_.options().subscribe_rate,
                         " per second per connection; retry later"),
          4301);
    }
    std::string err = common::ChannelNameError(channel, true);
    if (!err.empty()) return SubscriptionError(channel, "InvalidChannel", err, 4009);
    if (auto it = subs_.find(channel); it != subs_.end()) {
      // Idempotent: answer again unless the first answer is still on its way.
      if (!it->second.live) return;
      common::ChannelKind k = common::ClassifyChannel(channel);
      if (!k.is_presence && !k.is_cache) {
        Send(MakeFrame(
            common::RenderEvent("pusher_internal:subscription_succeeded", channel, "{}")));
        return;
      }
      Unsubscribe(channel);  // presence/cache: re-run the full subscribe for a fresh roster
    }
    // Subscriptions and the requests still waiting on the control plane (including those of
    // channels unsubscribed meanwhile) are what a connection holds per channel.
    uint64_t max_subs = dp_.options().max_subscriptions_per_connection;
    if (std::max(subs_.size(), pending_.size()) >= max_subs) {
      return SubscriptionError(
          channel, "LimitReached",
          common::StrCat("A connection may subscribe to at most ", max_subs, " channels"), 4100);
    }
    common::ChannelKind kind = common::ClassifyChannel(channel);
    std::string_view auth, channel_data_sv;
    if (data["auth"].get(auth)) auth = {};
    if (data["channel_data"].get(channel_data_sv)) channel_data_sv = {};
    // A copy: when `data` came as a string, its strings live in InnerParser(), which parses
    // channel_data below.
    std::string channel_data(channel_data_sv);

    if (kind.is_server_to_user) {
      if (signed_in_user_.empty() || common::ServerToUserId(channel) != signed_in_user_) {
        return SubscriptionError(channel, "AuthError",
                                 "Only the signed-in user may subscribe to its own channel", 401);
      }
      subs_[channel].live = true;  // delivered through the user index, not the channel index
      Send(MakeFrame(common::RenderEvent("pusher_internal:subscription_succeeded", channel, "{}")));
      return;
    }
    std::string user_id, user_info = "{}";
    if (kind.NeedsAuth()) {
      bool use_signin = kind.is_presence && channel_data.empty() && !signed_in_user_.empty();
      std::string to_sign = common::ChannelStringToSign(socket_id_, channel, channel_data);
      if (!common::VerifyToken(auth, app_->key(), Secrets(), to_sign)) {
        return SubscriptionError(
            channel, "AuthError",
            common::StrCat("Invalid signature: expected HMAC SHA256 hex digest of ", to_sign), 401);
      }
      if (kind.is_presence) {
        if (use_signin) {
          user_id = signed_in_user_;
          user_info = signed_in_info_;
        } else {
          simdjson::dom::element cd;
          if (channel_data.empty() || InnerParser().parse(channel_data).get(cd) ||
              !cd.is_object()) {
            return SubscriptionError(channel, "AuthError",
                                     "Presence channels need channel_data (a JSON object)", 401);
          }
          simdjson::dom::element uid;
          if (cd["user_id"].get(uid)) {
            return SubscriptionError(channel, "AuthError", "channel_data needs a user_id", 401);
          }
          std::string_view s;
          if (uid.get(s) == simdjson::SUCCESS) {
            user_id = std::string(s);
          } else if (uid.is_number()) {
            user_id = simdjson::minify(uid);
          }
          if (user_id.empty() || user_id.size() > kMaxUserIdLength) {
            return SubscriptionError(channel, "AuthError",
                                     "user_id must be a non-empty string of at most 128 characters",
                                     401);
          }
          simdjson::dom::element info;
          if (cd["user_info"].get(info) == simdjson::SUCCESS) user_info = simdjson::minify(info);
        }
        // Also for the signed-in user's info, which pusher:signin does not bound.
        if (user_info.size() > app_->limits().max_presence_user_info_bytes()) {
          return SubscriptionError(
              channel, "LimitReached",
              common::StrCat("user_info is larger than ",
                             app_->limits().max_presence_user_info_bytes(), " bytes"),
              4100);
        }
      }
      authorized_ = true;
      auth_timer_.cancel();
    }
    if (kind.is_presence || kind.is_cache) {
      relay::v1::NodeMessage msg;
      auto* req = msg.mutable_subscribe();
      relay::v1::PresenceSocket presence = PresenceOf(channel, user_id);
      uint64_t id = shard_.AwaitReply(weak_from_this(), kind.is_presence ? &presence : nullptr);
      req->set_request_id(id);
      req->set_app_id(app_id_);
      req->set_channel(channel);
      req->set_socket_id(socket_id_);
      if (kind.is_presence) {
        req->mutable_member()->set_user_id(user_id);
        req->mutable_member()->set_user_info_json(user_info);
      }
      if (!dp_.state().SendUp(std::move(msg))) {
        if (kind.is_presence) {
          return SubscriptionError(channel, "Unavailable",
                                   "Presence channels are unavailable while this node cannot "
                                   "reach the control plane; retry shortly",
                                   503);
        }
        // A cache channel without the control plane: subscribe, but the cache is unknown.
        subs_[channel] = Sub{};
        Activate(channel, "{}", {CacheMissFrame(channel)});
        return;
      }
      Sub pending_sub;
      pending_sub.request_id = id;
      pending_sub.user_id = user_id;
      if (kind.is_presence) pending_sub.user_info = user_info;
      subs_[channel] = std::move(pending_sub);
      pending_[id] = channel;
      sub_user_for_orphan_[id] = user_id;
      return;
    }
    subs_[channel] = Sub{};
    Activate(channel, "{}");
  }

  // One pusher:subscribe from the connection's token bucket; false when it is empty.
  bool TakeSubscribeToken() {
    const DataPlaneOptions& o = dp_.options();
    if (o.subscribe_rate == 0) return true;
    auto now = Clock::now();
    double elapsed = std::chrono::duration<double>(now - subscribe_tokens_at_).count();
    subscribe_tokens_at_ = now;
    double refill = elapsed * static_cast<double>(o.subscribe_rate);
    subscribe_tokens_ =
        std::min(static_cast<double>(o.subscribe_burst), subscribe_tokens_ + refill);
    if (subscribe_tokens_ < 1) return false;
    subscribe_tokens_ -= 1;
    return true;
  }

  relay::v1::PresenceSocket PresenceOf(const std::string& channel, const std::string& user_id) {
    relay::v1::PresenceSocket p;
    p.set_app_id(app_id_);
    p.set_channel(channel);
    p.set_user_id(user_id);
    p.set_socket_id(socket_id_);
    return p;
  }

  static FramePtr CacheMissFrame(const std::string& channel) {
    return MakeFrame(common::StrCat(
        "{\"event\":\"pusher:cache_miss\",\"channel\":", common::JsonQuote(channel), "}"));
  }

  // The subscription is accepted: count it, and go live at once, or, when this node had no
  // subscriber of the channel yet, once the control plane has acknowledged that it routes the
  // channel here (so an event published after subscription_succeeded is never missed).
  void Activate(const std::string& channel, std::string_view succeeded_data,
                std::vector<FramePtr> after = {}) {
    auto it = subs_.find(channel);
    if (it == subs_.end()) return;
    Sub& sub = it->second;
    sub.on_live.push_back(MakeFrame(
        common::RenderEvent("pusher_internal:subscription_succeeded", channel, succeeded_data)));
    for (auto& f : after) sub.on_live.push_back(std::move(f));
    sub.counted = true;
    uint64_t seq = dp_.state().ChannelChanged(app_id_, channel, +1);
    if (seq == 0) return GoLive(channel, sub);
    sub.ack_seq = seq;
    shard_.AwaitAck(seq, weak_from_this(), channel);
  }

  void GoLive(const std::string& channel, Sub& sub) {
    // The replies are queued before the socket can receive channel traffic (same thread).
    for (auto& f : sub.on_live) Send(f);
    sub.on_live.clear();
    sub.live = true;
    shard_.Subscribe(this, app_id_, channel);
  }

  void Unsubscribe(const std::string& channel) {
    auto it = subs_.find(channel);
    if (it == subs_.end()) return;
    Sub sub = it->second;
    subs_.erase(it);
    if (sub.request_id != 0) return;  // still pending: OnSubscribeReply withdraws it
    if (common::ClassifyChannel(channel).is_server_to_user) return;
    // The member leaves before the count drops, so member_removed precedes channel_vacated.
    if (common::ClassifyChannel(channel).is_presence) {
      dp_.state().PresenceLeft(PresenceOf(channel, sub.user_id));
    }
    if (sub.live) shard_.Unsubscribe(this, app_id_, channel);
    if (sub.counted) dp_.state().ChannelChanged(app_id_, channel, -1);
  }

  void HandleClientEvent(std::string_view event, std::string_view channel_sv,
                         std::string data_json) {
    std::string channel(channel_sv);
    if (!app_->features().client_events()) {
      return ProtocolError(
          "To send client events, you must enable this feature in the app's settings");
    }
    common::ChannelKind kind = common::ClassifyChannel(channel);
    if (!kind.AllowsClientEvents()) {
      return ProtocolError(
          "Client event rejected - only supported on private and presence channels");
    }
    auto it = subs_.find(channel);
    if (it == subs_.end() || !it->second.live) {
      return ProtocolError(common::StrCat(
          "Cannot broadcast client event (connection not subscribed to channel ", channel, ")"));
    }
    if (event.size() > 200) return ProtocolError("Client event name is longer than 200 characters");
    auto now = Clock::now();
    if (now - rate_window_start_ >= std::chrono::seconds(1)) {
      rate_window_start_ = now;
      rate_count_ = 0;
    }
    if (++rate_count_ > app_->limits().max_client_events_per_second()) {
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      shard_.metrics().client_event_rate_limited.Add();
      Send(MakeFrame(common::RenderError(4301, "Client event rejected due to rate limit")));
      return;
    }
    if (data_json.size() > app_->limits().max_event_payload_bytes()) {
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      Send(MakeFrame(common::RenderError(
          4301, common::StrCat("Client event rejected: data is larger than ",
                               app_->limits().max_event_payload_bytes(), " bytes"))));
      return;
    }
    std::string user_id = kind.is_presence ? it->second.user_id : "";
    auto delivery = std::make_shared<Delivery>();
    delivery->app_id = app_id_;
    delivery->exclude_socket_id = socket_id_;
    delivery->frames.emplace_back(
        channel, MakeFrame(common::RenderEvent(event, channel, data_json, true, user_id)));
    dp_.DeliverToAll(std::move(delivery));
    shard_.metrics().client_events.Add();
    relay::v1::NodeMessage msg;
    auto* up = msg.mutable_client_event();
    up->set_app_id(app_id_);
    up->set_channel(channel);
    up->set_event(std::string(event));
    up->set_data_json(std::move(data_json));
    up->set_socket_id(socket_id_);
    up->set_user_id(user_id);
    dp_.state().SendUp(std::move(msg));
  }

  void HandleSignin(simdjson::dom::object data) {
    std::string_view auth, user_data_sv;
    if (data["auth"].get(auth) || data["user_data"].get(user_data_sv)) {
      return FailSignin("pusher:signin needs 'auth' and 'user_data' strings");
    }
    // A copy: when `data` came as a string, its strings live in InnerParser(), which parses
    // user_data below (and would overwrite them before the reply echoes it).
    std::string user_data(user_data_sv);
    if (!common::VerifyToken(auth, app_->key(), Secrets(),
                             common::UserStringToSign(socket_id_, user_data))) {
      return FailSignin("Invalid signature for user authentication");
    }
    simdjson::dom::element doc;
    std::string_view id;
    if (InnerParser().parse(user_data).get(doc) || !doc.is_object() || doc["id"].get(id) ||
        id.empty()) {
      return FailSignin("The returned user data must contain the \"id\" field.");
    }
    if (id.size() > kMaxUserIdLength) {
      return FailSignin("The user id must be at most 128 characters");
    }
    if (!signed_in_user_.empty() && signed_in_user_ != id) {
      dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      Send(MakeFrame(
          common::RenderError(4009, "The connection is already signed in as another user")));
      return;
    }
    std::vector<std::string> watchlist;
    bool watchlist_truncated = false;
    simdjson::dom::array wl;
    if (doc["watchlist"].get(wl) == simdjson::SUCCESS) {
      for (auto w : wl) {
        std::string_view s;
        // Entries that cannot be user ids are skipped, like entries that are not strings.
        if (w.get(s) != simdjson::SUCCESS || s.empty() || s.size() > kMaxUserIdLength) continue;
        if (watchlist.size() >= kMaxWatchlist) {
          watchlist_truncated = true;
          break;
        }
        watchlist.emplace_back(s);
      }
    }
    simdjson::dom::element info;
    signed_in_info_ =
        doc["user_info"].get(info) == simdjson::SUCCESS ? simdjson::minify(info) : "{}";
    bool first = signed_in_user_.empty();
    signed_in_user_ = std::string(id);
    authorized_ = true;
    auth_timer_.cancel();
    common::JsonWriter w;
    w.BeginObject().Key("event").String("pusher:signin_success").Key("data").BeginObject();
    w.Key("user_data").String(user_data).EndObject().EndObject();
    Send(MakeFrame(w.Take()));
    if (watchlist_truncated) {
      Send(MakeFrame(common::RenderError(
          4302, "Watchlist limit exceeded. Only the first 100 user IDs are accepted.")));
    }
    if (first) {
      shard_.AddUser(this, app_id_, signed_in_user_);
      relay::v1::SignedInSocket s;
      s.set_app_id(app_id_);
      s.set_user_id(signed_in_user_);
      s.set_socket_id(socket_id_);
      for (auto& u : watchlist) s.add_watchlist(u);
      dp_.state().SignedIn(s);
    }
  }

  void FailSignin(std::string_view message) {
    dp_.counters().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    CloseWith(4009, std::string(message));
  }

  void ArmActivityTimer() {
    auto wait = pinged_ ? std::chrono::seconds(dp_.options().pong_timeout_seconds)
                        : std::chrono::seconds(dp_.options().activity_timeout_seconds);
    timer_.expires_after(wait);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      if (self->conn_.closing()) return self->HardClose();  // a close that never completed
      self->OnActivityTimer();
    });
  }

  void OnActivityTimer() {
    auto idle = Clock::now() - last_rx_;
    if (pinged_) {
      if (idle >= std::chrono::seconds(dp_.options().pong_timeout_seconds)) {
        return CloseWith(4201, "Pong reply not received");
      }
    } else if (idle >= std::chrono::seconds(dp_.options().activity_timeout_seconds)) {
      Send(MakeFrame(R"({"event":"pusher:ping","data":"{}"})"));
      pinged_ = true;
    }
    ArmActivityTimer();
  }

  void ArmAuthTimer() {
    auth_timer_.expires_after(
        std::chrono::seconds(app_->features().user_authentication_timeout_seconds()));
    auth_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_ || self->authorized_) return;
      self->CloseWith(4009, "Connection not authorized within timeout.");
    });
  }

  // A closing connection gets kCloseTimeout to finish; then its socket is closed.
  void ArmCloseTimer() {
    if (closed_) return;
    timer_.expires_after(kCloseTimeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      self->HardClose();
    });
  }

  // The first cause of the close wins (a server close after a violation stays a violation).
  void NoteClose(CloseReason reason, int code) {
    if (close_noted_) return;
    close_noted_ = true;
    close_reason_ = reason;
    close_code_ = code;
  }

  // Keeps the shard's write queue gauge equal to the sum of its connections' queues: adds what
  // this queue changed since the last call (0 once closed).
  void SyncQueueBytes() {
    size_t now = closed_ ? 0 : conn_.queued_bytes();
    if (now >= reported_queue_bytes_) {
      shard_.metrics().queue_bytes.Add(now - reported_queue_bytes_);
    } else {
      shard_.metrics().queue_bytes.Sub(reported_queue_bytes_ - now);
    }
    reported_queue_bytes_ = now;
  }

  // Closes the socket now; OnWsClosed() cleans up.
  void HardClose() { conn_.Abort(); }

  void Cleanup() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    auth_timer_.cancel();
    SyncQueueBytes();
    if (!registered_) return;
    shard_.metrics().Closed(close_reason_, close_code_);
    std::vector<std::string> channels;
    for (const auto& [c, s] : subs_) channels.push_back(c);
    for (const auto& c : channels) Unsubscribe(c);
    if (!signed_in_user_.empty()) {
      shard_.RemoveUser(this, app_id_, signed_in_user_);
      relay::v1::SignedInSocket s;
      s.set_app_id(app_id_);
      s.set_user_id(signed_in_user_);
      s.set_socket_id(socket_id_);
      dp_.state().SignedOut(s);
    }
    shard_.RemoveSession(this);
    if (address_counted_) dp_.ReleaseAddress(address_);
    dp_.counters().connections.fetch_sub(1, std::memory_order_relaxed);
    dp_.state().ConnectionChanged(app_id_, -1);
  }

  DataPlane& dp_;
  Shard& shard_;
  const std::string address_;  // the client's address, when connections per address are capped
  bool address_counted_ = false;
  transport::WsConn conn_;
  net::steady_timer timer_;
  net::steady_timer auth_timer_;
  AppPtr app_;
  std::string app_id_;
  std::string socket_id_;
  bool registered_ = false;
  bool closed_ = false;
  bool cut_ = false;  // over its queue bounds; closing
  bool close_noted_ = false;
  CloseReason close_reason_ = CloseReason::kClient;
  int close_code_ = kNoCloseCode;
  size_t reported_queue_bytes_ = 0;  // this connection's part of the shard's queue_bytes
  bool pinged_ = false;
  bool authorized_ = false;
  Clock::time_point last_rx_;
  Clock::time_point rate_window_start_;
  uint32_t rate_count_ = 0;
  double subscribe_tokens_ = 0;  // token bucket of subscribe_rate, filled at connect
  Clock::time_point subscribe_tokens_at_;
  absl::flat_hash_map<std::string, Sub> subs_;
  absl::flat_hash_map<uint64_t, std::string> pending_;
  absl::flat_hash_map<uint64_t, std::string> sub_user_for_orphan_;
  std::string signed_in_user_;
  std::string signed_in_info_;
};

}  // namespace

void StartWsSession(DataPlane& dp, Shard& shard, transport::ClientStream stream,
                    transport::BeastRequest request, std::string leftover) {
  std::make_shared<WsSession>(dp, shard, std::move(stream), dp.ws_limits())
      ->Run(request, std::move(leftover));
}

}  // namespace relay::dataplane
