#include "dataplane/data_plane.h"

#include <sys/resource.h>

#include <algorithm>
#include <thread>

#include "common/crypto.h"
#include "common/frames.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/well_known_secret.h"
#include "dataplane/ws_session.h"

namespace relay::dataplane {

uint64_t DefaultCapacity() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  uint64_t limit = rl.rlim_cur;
  uint64_t reserve = std::clamp<uint64_t>(limit / 10, 64, 1024);
  return limit > reserve + 1 ? limit - reserve : 1;
}

namespace {
size_t ShardCount(size_t wanted) {
  if (wanted > 0) return std::min<size_t>(wanted, 255);
  size_t hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : std::min<size_t>(hw, 255);
}
}  // namespace

relay::v1::App DataPlane::Guarded(relay::v1::App app) const {
  // On an address others can reach, an app whose secret is the well-known default is open to
  // anyone who can sign with it: serve it as disabled (4003) until its secret is rotated, and
  // never accept the default as a previous secret during a rotation's overlap.
  if (common::IsLoopbackHost(options_.host)) return app;
  auto* previous = app.mutable_previous_secrets();
  for (int i = previous->size() - 1; i >= 0; --i) {
    if (previous->Get(i).secret() == common::kWellKnownSecret) previous->DeleteSubrange(i, 1);
  }
  if (app.enabled() && app.secret() == common::kWellKnownSecret) {
    app.set_enabled(false);
    absl::MutexLock lock(&warned_mu_);
    if (warned_apps_.insert(app.id()).second) {  // once per app, not on every re-attach
      RELAY_LOG(kError, "dataplane", "app '", app.id(),
                "' uses the well-known default secret "
                "'app-secret' and this node listens on ",
                options_.host,
                ": its connections are refused (4003) until the secret is rotated "
                "(relayctl apps rotate-secret ",
                app.id(), ")");
    }
  }
  return app;
}

DataPlane::DataPlane(DataPlaneOptions options, transport::HttpHandler http_fallback)
    : options_(std::move(options)),
      ws_limits_{options_.max_frame_bytes, options_.max_queue_bytes, options_.max_queue_frames},
      http_fallback_(std::move(http_fallback)),
      pool_(ShardCount(options_.shards)) {
  if (options_.node_id.empty()) options_.node_id = common::StrCat("node-", common::RandomHex(4));
  // Past the file limit accept() fails anyway, and takes the descriptors gRPC, webhooks and
  // SQLite need with it; refusing with 4100 before that keeps the process working.
  if (options_.capacity == 0) options_.capacity = DefaultCapacity();
  // Socket ids are "<prefix>.<counter>": a random 31-bit prefix per process and a counter, so
  // they are unique across the cluster without coordination.
  socket_prefix_ = common::RandomU32() & 0x7fffffff;
  for (size_t i = 0; i < pool_.size(); ++i) {
    shards_.push_back(std::make_unique<Shard>(
        i, pool_.context(i), [this](const relay::v1::PresenceSocket& p) { state_.PresenceLeft(p); },
        options_.shard_inbox));
    shards_.back()->set_acked(&last_ack_);
  }
}

DataPlane::~DataPlane() { Stop(); }

std::string DataPlane::NextSocketId() {
  return common::StrCat(socket_prefix_, ".", socket_counter_.fetch_add(1) + 1);
}

bool DataPlane::AcquireAddress(const std::string& address) {
  std::lock_guard lock(addresses_mu_);
  uint64_t& n = addresses_[address];
  if (n >= options_.max_connections_per_ip) return false;  // (the entry exists while n > 0)
  ++n;
  return true;
}

void DataPlane::ReleaseAddress(const std::string& address) {
  std::lock_guard lock(addresses_mu_);
  auto it = addresses_.find(address);
  if (it == addresses_.end()) return;
  if (--it->second == 0) addresses_.erase(it);
}

void DataPlane::DeliverToAll(std::shared_ptr<const Delivery> delivery) {
  for (auto& s : shards_) s->PostDeliver(delivery);
}

relay::v1::NodeLoad DataPlane::Load() {
  relay::v1::NodeLoad load;
  load.set_connections(counters_.connections.load());
  load.set_channels(state_.channels());
  // Summed over the shards' own counters (the same figures /metrics shows).
  uint64_t in = 0, out = 0, cut = 0;
  for (const auto& s : shards_) {
    in += s->metrics().messages_in.Get();
    out += s->metrics().messages_out.Get();
    cut += s->metrics().slow_consumers_cut.Get();
  }
  load.set_messages_in(in);
  load.set_messages_out(out);
  load.set_slow_consumers_dropped(cut);
  load.set_protocol_errors(counters_.protocol_errors.load());
  return load;
}

absl::Status DataPlane::Start() {
  transport::HttpServerOptions http_options{.host = options_.host, .port = options_.port};
  http_options.tls = options_.tls;
  http_options.readiness = [this] { return Readiness(); };
  http_options.accept_upgrades = [this]() -> transport::Readiness {
    if (draining_.load()) return {false, "Server is draining; reconnect to another node"};
    return {};
  };
  http_ = std::make_unique<transport::HttpServer>(
      std::move(http_options), pool_, http_fallback_,
      [this](size_t context, transport::ClientStream stream, transport::BeastRequest request,
             std::string leftover) {
        OnUpgrade(context, std::move(stream), std::move(request), std::move(leftover));
      });
  auto port = http_->Start();
  if (!port.ok()) return port.status();
  port_ = *port;
  RELAY_LOG(kInfo, "dataplane", "accepting up to ", options_.capacity, " connections",
            options_.capacity == 0 ? " (no file limit: unlimited)" : "",
            options_.max_connections_per_ip
                ? common::StrCat(", ", options_.max_connections_per_ip, " per client address")
                : std::string());
  pool_.Start("shard");
  ControlLinkOptions link;
  link.target = options_.control_plane;
  link.tls = options_.control_plane_tls;
  link.tls_ca = options_.control_plane_ca;
  link.tls_cert = options_.control_plane_tls_cert;
  link.tls_key = options_.control_plane_tls_key;
  link.token = options_.node_token;
  link.channel = options_.control_plane_channel;
  link.heartbeat_interval = options_.heartbeat_interval;
  link.hello.set_node_id(options_.node_id);
  link.hello.set_address(options_.advertised_address.empty()
                             ? common::StrCat(options_.host, ":", port_)
                             : options_.advertised_address);
  link.hello.set_capacity(options_.capacity);
  link.hello.set_version(RELAY_VERSION);
  link.hello.set_shards(static_cast<uint32_t>(shards_.size()));
  link.hello.set_started_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  link_ = std::make_unique<ControlLink>(
      link, state_, [this](const relay::v1::ControlMessage& m) { OnCommand(m); },
      [this] { return Load(); },
      [this] {
        last_ack_.store(0);  // the next stream numbers its messages from 1 again
        posted_ack_.store(0);
        for (auto& s : shards_) s->PostReleaseAcks();
        AnswerUnanswered();
      },
      [this](std::function<void()> resume) { return WaitForRoom(std::move(resume)); });
  link_->Start();
  linked_.store(true);
  return absl::OkStatus();
}

void DataPlane::OnUpgrade(size_t context, transport::ClientStream stream,
                          transport::BeastRequest request, std::string leftover) {
  // The connection already lives on the pool's context `context`: shard i runs on context i.
  StartWsSession(*this, *shards_.at(context), std::move(stream), std::move(request),
                 std::move(leftover));
}

bool DataPlane::WaitForRoom(std::function<void()> resume) {
  for (auto& s : shards_) {
    // When this shard has room, the others may still be full: check them all again.
    if (s->WaitForRoom([this, resume] {
          if (!WaitForRoom(resume)) resume();
        })) {
      return true;
    }
  }
  return false;
}

void DataPlane::OnCommand(const relay::v1::ControlMessage& msg) {
  using relay::v1::ControlMessage;
  if (msg.ack() > 0) {
    last_ack_.store(msg.ack());
    state_.Acked(msg.ack());
    // Post every advance of the ack: it releases the waits registered before it, on each
    // shard ahead of any publish the control plane sends after it. A wait registered later
    // compares against last_ack_ itself (Shard::AwaitAck).
    if (posted_ack_.exchange(msg.ack()) != msg.ack()) {
      for (auto& s : shards_) s->PostAck(msg.ack());
    }
  }
  switch (msg.body_case()) {
    case ControlMessage::kWelcome: {
      std::vector<relay::v1::App> apps;
      for (const auto& a : msg.welcome().apps()) apps.push_back(Guarded(a));
      for (const auto& gone : apps_.ReplaceAll(apps)) {
        for (auto& s : shards_) s->PostCloseApp(gone, 4001, "Application does not exist");
      }
      for (const auto& a : apps) {
        AppPtr current = apps_.ById(a.id());
        for (auto& s : shards_) s->PostAppUpdate(current);
      }
      RELAY_LOG(kInfo, "dataplane", "attached to control plane ", msg.welcome().control_plane_id(),
                " (", apps.size(), " apps)");
      break;
    }
    case ControlMessage::kPublish: {
      const auto& p = msg.publish();
      auto d = std::make_shared<Delivery>();
      d->app_id = p.app_id();
      d->exclude_socket_id = p.exclude_socket_id();
      d->accepted_unix_us = p.accepted_unix_us();
      for (int i = 0; i < p.channels_size(); ++i) {
        std::string frame = i < p.frames_size()
                                ? p.frames(i)
                                : common::RenderEvent(p.event(), p.channels(i), p.data(),
                                                      p.data_is_json(), p.user_id());
        d->frames.emplace_back(p.channels(i),
                               std::make_shared<const std::string>(std::move(frame)));
      }
      DeliverToAll(std::move(d));
      break;
    }
    case ControlMessage::kSendToUser: {
      const auto& u = msg.send_to_user();
      auto frame = std::make_shared<const std::string>(common::RenderEvent(
          u.event(), common::StrCat("#server-to-user-", u.user_id()), u.data()));
      for (auto& s : shards_) s->PostToUser(u.app_id(), u.user_id(), frame, u.exclude_socket_id());
      break;
    }
    case ControlMessage::kTerminateUser:
      for (auto& s : shards_) {
        s->PostTerminateUser(msg.terminate_user().app_id(), msg.terminate_user().user_id());
      }
      break;
    case ControlMessage::kAppUpsert: {
      apps_.Upsert(Guarded(msg.app_upsert()));
      AppPtr current = apps_.ById(msg.app_upsert().id());
      for (auto& s : shards_) s->PostAppUpdate(current);
      break;
    }
    case ControlMessage::kAppRemove:
      apps_.Remove(msg.app_remove().app_id());
      for (auto& s : shards_) {
        s->PostCloseApp(msg.app_remove().app_id(), 4001, "Application does not exist");
      }
      break;
    case ControlMessage::kSubscribeReply: {
      state_.Answered(msg.subscribe_reply().request_id());
      size_t shard = Shard::ShardOfRequest(msg.subscribe_reply().request_id());
      if (shard < shards_.size()) shards_[shard]->PostReply(msg.subscribe_reply());
      break;
    }
    case ControlMessage::kDrain:
      // An operator's drain (relayctl nodes drain) keeps the port open: the HTTP API and
      // /health of the one-process relay live on it, and new clients are refused with 4200 by
      // the session (ws_session.cc) until an undrain.
      DrainClients(msg.drain().window_ms());
      break;
    case ControlMessage::kUndrain:
      Undrain();
      break;
    case ControlMessage::kWatchlist:
      for (auto& s : shards_) s->PostWatchlist(msg.watchlist());
      break;
    case ControlMessage::kRemoteConnections: {
      state_.SetRemoteConnections(msg.remote_connections());
      if (common::LogEnabled(common::LogLevel::kDebug)) {
        for (const auto& [app, n] : msg.remote_connections().others()) {
          RELAY_LOG(kDebug, "dataplane", "app ", app, ": ", n, " connection(s) on other nodes");
        }
      }
      break;
    }
    default:
      break;
  }
}

void DataPlane::AnswerUnanswered() {
  // Requests that went up on the stream that just ended will never be answered: answer them as
  // if the link had been down when they were made, so no subscription waits forever.
  for (const auto& request : state_.TakeUnanswered()) {
    relay::v1::SubscribeReply reply;
    reply.set_request_id(request.request_id());
    if (request.has_member()) {
      reply.set_ok(false);
      reply.set_error_type("Unavailable");
      reply.set_error_message(
          "Presence channels are unavailable while this node cannot reach the control plane; "
          "retry shortly");
      reply.set_error_status(503);
    } else {
      reply.set_ok(true);  // a cache channel: subscribed, the cache unknown (cache_miss)
    }
    size_t shard = Shard::ShardOfRequest(request.request_id());
    if (shard < shards_.size()) shards_[shard]->PostReply(std::move(reply));
  }
}

transport::Readiness DataPlane::Readiness() const {
  if (stopped_.load()) return {false, "stopping"};
  if (draining_.load()) return {false, "draining: clients are being moved to other nodes"};
  if (!linked_.load() || !link_->welcomed()) return {false, "not attached to the control plane"};
  if (options_.also_ready) return options_.also_ready();
  return {};
}

void DataPlane::Drain(uint32_t window_ms) {
  final_drain_.store(true);
  DrainClients(window_ms);
}

void DataPlane::DrainClients(uint32_t window_ms) {
  if (draining_.exchange(true)) return;
  if (window_ms == 0) window_ms = options_.drain_window_ms;
  RELAY_LOG(kInfo, "dataplane", "draining: closing clients with 4200 over ", window_ms, " ms");
  // The port stays open: new WebSocket handshakes are refused with HTTP 503 (accept_upgrades),
  // and /health, /ready (503 now) and relay's HTTP API keep answering, so a liveness probe does
  // not kill a node in the middle of its drain.
  for (auto& s : shards_) s->PostDrain(window_ms, &draining_);
}

void DataPlane::Undrain() {
  if (final_drain_.load() || stopped_.load() || !draining_.exchange(false)) return;
  RELAY_LOG(kInfo, "dataplane", "undrained: accepting clients again");
}

void DataPlane::Stop() {
  if (stopped_.exchange(true)) return;
  if (http_) http_->StopAccepting();
  if (link_) link_->Stop();
  pool_.Stop();
}

}  // namespace relay::dataplane
