#include "controlplane/control_plane.h"
#include "controlplane/well_known_secret.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/channel.h"
#include "common/crypto.h"
#include "common/frames.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time.h"
#include "controlplane/etcd_backend.h"
#include "controlplane/grpc_services.h"
#include "relay/v1/admin.grpc.pb.h"
#include "relay/v1/node_link.grpc.pb.h"
#include "relay/v1/public.grpc.pb.h"

namespace relay::controlplane {

ControlPlane::ControlPlane(ControlPlaneOptions options)
    : options_(std::move(options)), instance_id_(common::RandomHex(8)) {}

ControlPlane::~ControlPlane() { Stop(); }

absl::Status ControlPlane::LoadOrCreateAdminToken() {
  std::string path = options_.data_dir + "/admin.token";
  std::ifstream in(path);
  if (in && std::getline(in, admin_token_) && !admin_token_.empty()) return absl::OkStatus();
  admin_token_ = common::StrCat("rla_", common::RandomHex(24));
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    ::chmod(tmp.c_str(), 0600);
    out << admin_token_ << "\n";
    if (!out) return absl::InternalError(common::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(common::StrCat("cannot write ", path, ": ", ec.message()));
  RELAY_LOG(kInfo, "controlplane", "created the admin token in ", path, " (mode 0600)");
  return absl::OkStatus();
}

absl::Status ControlPlane::CreateDefaultNodeToken() {
  std::string path = options_.data_dir + "/node.token";
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return absl::OkStatus();
  auto created = store_->CreateNodeToken("default", "");
  if (!created.ok()) return created.status();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    ::chmod(tmp.c_str(), 0600);
    out << created->secret() << "\n";
    if (!out) return absl::InternalError(common::StrCat("cannot write ", tmp));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(common::StrCat("cannot write ", path, ": ", ec.message()));
  RELAY_LOG(kInfo, "controlplane", "created the default node credential ", created->token().id(),
            " in ", path, " (mode 0600)");
  return absl::OkStatus();
}

std::optional<relay::v1::NodeToken> ControlPlane::AuthenticateNode(std::string_view token) {
  if (common::ConstantTimeEquals(token, in_process_node_token_)) {
    relay::v1::NodeToken in_process;
    in_process.set_id(kInProcessCredential);
    in_process.set_name("the data plane of this process");
    return in_process;
  }
  return store_->VerifyNodeToken(token);
}

absl::Status ControlPlane::Start() {
  auto lock = common::DirLock::Acquire(options_.data_dir);
  if (!lock.ok()) return lock.status();
  dir_lock_ = std::move(*lock);
  if (auto st = OpenStore(); !st.ok()) return st;
  store_open_.store(true);
  if (auto st = RefuseWellKnownSecret(options_.host, *store_, options_.default_app_secret);
      !st.ok()) {
    return st;
  }
  if (auto st = LoadOrCreateAdminToken(); !st.ok()) return st;
  if (auto st = CreateDefaultNodeToken(); !st.ok()) return st;
  in_process_node_token_ = common::StrCat("rln_", common::RandomHex(24));
  if (store_->List().empty()) {
    relay::v1::CreateAppRequest req;
    req.set_name("default");
    req.set_id(options_.default_app_id);
    req.set_key(options_.default_app_key);
    req.set_secret(options_.default_app_secret);
    req.mutable_features()->set_client_events(true);
    auto app = store_->Create(req);
    if (app.status().code() == absl::StatusCode::kAlreadyExists && etcd_) {
      // Another replica on the same etcd prefix created it a moment ago.
      RELAY_LOG(kInfo, "controlplane", "the default app was created by another control plane");
    } else if (!app.ok()) {
      return absl::InvalidArgumentError(
          common::StrCat("cannot create the default app: ", app.status().message()));
    } else {
      created_default_app_ = true;
    }
  }
  // Before the webhooks: with etcd they live there.
  if (auto st = OpenEtcd(); !st.ok()) return st;
  if (options_.webhook_post) {
    if (etcd_) {
      // Endpoints and outbox in etcd: whoever leads next delivers them (TakeOver reloads).
      webhooks_ = std::make_unique<Webhooks>(
          MakeEtcdWebhookBackend(*etcd_, EtcdWebhookOptions{.prefix = options_.etcd_prefix}),
          *store_, options_.webhook_post, options_.webhooks);
    } else {
      webhooks_ = std::make_unique<Webhooks>(options_.data_dir, *store_, options_.webhook_post,
                                             options_.webhooks);
    }
    if (auto st = webhooks_->Open(); !st.ok()) return st;
    if (replica_) {
      webhooks_->SetActive(false);  // a follower until elected
      webhooks_->SetFence([this, none = options_.etcd_prefix + "/v1/leader"] {
        auto fence = replica_->Fence();
        // Not leading: a compare that never holds (no key has create revision -1).
        return std::vector<etcd::Compare>{fence ? *fence : etcd::Compare::CreateRevision(none, -1)};
      });
    }
    webhooks_->Start();
  }
  if (options_.lifecycle.retention.count() > 0) {
    LifecycleLogOptions lifecycle = options_.lifecycle;
    lifecycle.watch = options_.watch;
    lifecycle_ = std::make_unique<LifecycleLog>(options_.data_dir, store_->writer(), lifecycle);
    if (auto st = lifecycle_->Open(); !st.ok()) return st;
  }
  NodeHubOptions hub_options = options_.hub;
  hub_options.authenticate = [this](std::string_view token) { return AuthenticateNode(token); };
  hub_options.credential_valid = [this](const std::string& id) {
    return id == kInProcessCredential || store_->NodeTokenExists(id);
  };
  hub_options.attached = [this](const std::string& id) { store_->TouchNodeToken(id); };
  hub_options.require_client_certificate = !options_.node_link_client_ca.empty();
  hub_options.client_certificate_exempt = kInProcessCredential;
  hub_options.redirect = [this]() -> std::optional<std::string> {
    if (Acting()) return std::nullopt;
    std::string leader = replica_->LeaderAddress();
    // The data plane left the leader's stream: is the leader's process gone (replica.h)?
    if (!leader.empty()) replica_->SuspectLeader();
    return leader;
  };
  hub_ = std::make_unique<NodeHub>(hub_options, static_cast<NodeHub::Handler*>(this));
  watch_ = std::make_unique<ChannelWatch>(options_.watch);
  api_ = std::make_unique<Api>(*store_, cluster_, *hub_, options_.limits, common::Clock::Real(),
                               watch_.get());
  // The nodes attached when the previous process stopped: nothing routes until they are back
  // or declared gone (no 2xx for an event their subscribers would miss).
  gate_ = std::make_unique<RouteGate>(options_.hub.liveness_timeout, common::Clock::Real());
  if (replica_) {
    // A replica takes the registry from etcd when it is elected (TakeOver); until then it is a
    // follower: refuses the APIs (below) and every attach (hub_options.redirect).
    api_->SetServingCheck([this] { return replica_->CheckActing(); });
  } else {
    std::vector<std::string> known = store_->LoadKnownNodes();
    gate_->ExpectNodes(known);
    absl::MutexLock lock(&announce_mu_);
    known_nodes_.insert(known.begin(), known.end());
    if (!known.empty()) {
      RELAY_LOG(kInfo, "controlplane", "waiting for ", known.size(),
                " data plane(s) of the node registry to re-attach before routing events, for at "
                "most ",
                options_.hub.liveness_timeout.count(), " ms");
    }
  }
  api_->SetRouteGate(gate_.get());
  api_->SetLifecycleLog(lifecycle_.get());
  store_->SetListener(
      [this](const relay::v1::App& app, bool removed) { OnAppChanged(app, removed); });
  channels_service_ = MakeChannelsService(*api_);
  admin_service_ = MakeAdminService(*store_, cluster_, *hub_, *api_, webhooks_.get(), admin_token_);

  if (auto st = StartServers(); !st.ok()) return st;
  if (replica_) {
    if (auto st = replica_->Start(common::StrCat(
            internal_server_ ? options_.internal_host : options_.host, ":", internal_grpc_port_));
        !st.ok()) {
      return st;
    }
  }
  UpdateHealth();
  sweeper_ = std::thread([this] {
    constexpr int kTicksPerSweep = 5;  // 500 ms
    int tick = 0;
    while (!stopping_.WaitForNotificationWithTimeout(
        absl::FromChrono(ConnectionTotals::kFlushInterval))) {
      FlushConnectionTotals();
      UpdateHealth();
      // A replicated leader speaks at least every 500 ms (an empty message), so that its data
      // planes notice a paused leader within Welcome.silence_timeout_ms and go to the next one.
      if (replica_ && tick % 5 == 0 && Acting()) Broadcast(relay::v1::ControlMessage());
      if (++tick % kTicksPerSweep != 0) continue;
      hub_->SweepDeadNodes();
      ExpireAbsentNodes();
      FlushSubscriptionCounts(false);
      PruneCacheMisses();
      if (lifecycle_) lifecycle_->Tick();
    }
  });
  return absl::OkStatus();
}

absl::Status ControlPlane::ConnectEtcd() {
  if (options_.etcd_endpoints.empty() || etcd_) return absl::OkStatus();
  auto client = etcd::Client::Create(etcd::ClientOptions{options_.etcd_endpoints});
  if (!client.ok()) return client.status();
  etcd_ = std::move(*client);
  return absl::OkStatus();
}

absl::Status ControlPlane::OpenStore() {
  if (auto st = ConnectEtcd(); !st.ok()) return st;
  if (!etcd_) {
    auto store = AppStore::Open(options_.data_dir);
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    return absl::OkStatus();
  }
  // etcd may still be electing its raft leader, or starting next to us: keep trying a while,
  // each attempt bounded by the client's call timeout.
  const auto deadline = std::chrono::steady_clock::now() + options_.etcd_connect_timeout;
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    auto backend = EtcdBackend::Open(*etcd_, options_.etcd_prefix);
    if (backend.ok()) {
      auto store = AppStore::Open(std::move(*backend));
      if (store.ok()) {
        store_ = std::move(*store);
        RELAY_LOG(kInfo, "controlplane", "app store on ", store_->Describe(), " (",
                  absl::StrJoin(options_.etcd_endpoints, ","), ")");
        return absl::OkStatus();
      }
      last = store.status();
    } else {
      last = backend.status();
    }
    // Only an unreachable etcd is worth waiting for.
    if (last.code() != absl::StatusCode::kUnavailable &&
        last.code() != absl::StatusCode::kDeadlineExceeded) {
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (attempt == 0) {
      RELAY_LOG(kWarn, "controlplane", "etcd (", absl::StrJoin(options_.etcd_endpoints, ","),
                ") not reachable yet: ", last.message(), "; retrying for up to ",
                options_.etcd_connect_timeout.count(), " ms");
    }
    if (stopping_.WaitForNotificationWithTimeout(absl::Milliseconds(250))) break;
  }
  return absl::UnavailableError(common::StrCat(
      "cannot open the app store on etcd (", absl::StrJoin(options_.etcd_endpoints, ","),
      ", prefix ", options_.etcd_prefix, "): ", last.message()));
}

absl::Status ControlPlane::StartServers() {
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options_.grpc_tls_cert.empty() || !options_.grpc_tls_key.empty()) {
    auto read = [](const std::string& path, std::string* out) {
      std::ifstream in(path);
      out->assign(std::istreambuf_iterator<char>(in), {});
      return in.good() || !out->empty();
    };
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!read(options_.grpc_tls_key, &pair.private_key) ||
        !read(options_.grpc_tls_cert, &pair.cert_chain)) {
      return absl::InvalidArgumentError(
          "cannot read --grpc-tls-cert / --grpc-tls-key (both PEM files are needed)");
    }
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (!options_.node_link_client_ca.empty()) {
      if (!read(options_.node_link_client_ca, &ssl.pem_root_certs) ||
          ssl.pem_root_certs.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return absl::InvalidArgumentError(common::StrCat("cannot read --node-link-client-ca ",
                                                         options_.node_link_client_ca,
                                                         " (PEM certificates)"));
      }
      // Asked of every client and verified when given; the node link alone refuses an Attach
      // without one (NodeHub), so relayctl and the public API need no certificate.
      ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    creds = grpc::SslServerCredentials(ssl);
  } else if (!options_.node_link_client_ca.empty()) {
    return absl::InvalidArgumentError(
        "--node-link-client-ca needs --grpc-tls-cert and --grpc-tls-key (client certificates "
        "are part of the TLS handshake)");
  }
  bool separate = options_.internal_grpc_separate || options_.internal_grpc_port != 0;
  // grpc.health.v1.Health (grpcurl, Kubernetes gRPC probes; status from UpdateHealth) and server
  // reflection (grpcurl list/describe) on every gRPC port. Both are process-wide switches read
  // when a server is built.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Builds one server on host:port with `services`; `port` is what it bound.
  auto build = [&](const std::string& host, uint16_t want, std::vector<grpc::Service*> services,
                   int* port) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(common::StrCat(host, ":", want), creds, port);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    // A second control plane on the same port must fail to start, not share it silently.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Explicit, so that both ends of the node link agree (node_link.proto); a server without
    // the node link keeps gRPC's 4 MiB default.
    if (std::find(services.begin(), services.end(), hub_.get()) != services.end()) {
      builder.SetMaxReceiveMessageSize(common::kNodeLinkMaxMessageBytes);
      builder.SetMaxSendMessageSize(common::kNodeLinkMaxMessageBytes);
    }
    for (auto* service : services) builder.RegisterService(service);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> hooks;
    hooks.push_back(GrpcMetrics::Factory(&grpc_metrics_));
    builder.experimental().SetInterceptorCreators(std::move(hooks));
    return builder.BuildAndStart();
  };
  int port = 0;
  std::vector<grpc::Service*> public_services = {channels_service_.get()};
  if (!separate) {
    public_services.push_back(hub_.get());
    public_services.push_back(admin_service_.get());
  }
  server_ = build(options_.host, options_.grpc_port, public_services, &port);
  if (!server_ || port == 0) {
    return absl::UnavailableError(
        common::StrCat("cannot listen for gRPC on ", options_.host, ":", options_.grpc_port));
  }
  grpc_port_ = static_cast<uint16_t>(port);
  internal_grpc_port_ = grpc_port_;
  if (separate) {
    int internal_port = 0;
    internal_server_ = build(options_.internal_host, options_.internal_grpc_port,
                             {hub_.get(), admin_service_.get()}, &internal_port);
    if (!internal_server_ || internal_port == 0) {
      return absl::UnavailableError(common::StrCat("cannot listen for internal gRPC on ",
                                                   options_.internal_host, ":",
                                                   options_.internal_grpc_port));
    }
    internal_grpc_port_ = static_cast<uint16_t>(internal_port);
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> ControlPlane::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(common::kNodeLinkMaxMessageBytes);
  args.SetMaxSendMessageSize(common::kNodeLinkMaxMessageBytes);
  return (internal_server_ ? internal_server_ : server_)->InProcessChannel(args);
}

transport::Readiness ControlPlane::Readiness() const {
  if (stopped_.load()) return {false, "stopping"};
  if (!store_open_.load()) return {false, "the store is not open"};
  // Replicas: only the leader serves; a load balancer in front of every replica sends traffic
  // where /ready (and the gRPC health) says SERVING (docs/scaling.md).
  if (replica_ && !replica_->acting()) return {false, replica_->Role()};
  if (size_t n = gate_ ? gate_->awaiting() : 0; n > 0) {
    return {false, common::StrCat("waiting for ", n, " data planes to re-attach")};
  }
  return {};
}

void ControlPlane::AlsoReadyWhen(transport::ReadinessCheck check) {
  absl::MutexLock lock(&health_mu_);
  also_ready_ = std::move(check);
}

void ControlPlane::UpdateHealth() {
  absl::MutexLock lock(&health_mu_);
  transport::Readiness readiness = Readiness();
  if (readiness.ready && also_ready_) readiness = also_ready_();
  // The node link and the admin service work while the control plane waits for its data planes
  // to re-attach (they are how it stops waiting); only routing events does not.
  const bool serving_nodes = !stopped_.load() && store_open_.load();
  const std::pair<bool, bool> now{readiness.ready, serving_nodes};
  if (serving_ == now) return;
  serving_ = now;
  RELAY_LOG(kInfo, "controlplane", "gRPC health: ",
            readiness.ready ? std::string("SERVING")
                            : common::StrCat("NOT_SERVING (", readiness.reason, ")"));
  // Each server answers for "" (the whole server: what a Kubernetes gRPC probe asks without a
  // service name) and for the services it serves; any other name is NOT_FOUND.
  auto set = [&](grpc::Server* server, std::vector<std::string> names, bool serving) {
    if (server == nullptr || server->GetHealthCheckService() == nullptr) return;
    for (const auto& name : names) server->GetHealthCheckService()->SetServingStatus(name, serving);
  };
  const std::string channels = relay::v1::Channels::service_full_name();
  const std::string node_link = relay::v1::NodeLink::service_full_name();
  const std::string admin = relay::v1::Admin::service_full_name();
  if (internal_server_) {
    set(server_.get(), {"", channels}, readiness.ready);
    set(internal_server_.get(), {"", node_link, admin}, serving_nodes);
  } else {
    set(server_.get(), {"", channels}, readiness.ready);
    set(server_.get(), {node_link, admin}, serving_nodes);
  }
}

void ControlPlane::Stop() {
  if (stopped_.exchange(true)) return;
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  if (sweeper_.joinable()) sweeper_.join();
  // Resigned first: the next replica takes over at once, while this one closes its streams.
  if (replica_) {
    // What this leader decided (webhook events in the outbox, admin writes) is stored under its
    // fence first, so the next leader has it; bounded by the store's call timeouts.
    if (store_) store_->writer().Flush();
    if (webhooks_) webhooks_->StoreQueued();
    replica_->Stop();
    // Resigned: no more store writes, and none that asks the replica (gone before the store).
    store_->SetFence([fence = NeverHolds()] { return std::vector<etcd::Compare>{fence}; });
  }
  if (hub_) hub_->CloseAll();
  // Watchers get what waits for them, then UNAVAILABLE, before the server's shutdown deadline.
  if (watch_) {
    watch_->CloseAll(absl::UnavailableError(
        "the control plane is shutting down; watch again once it (or another one) is up"));
  }
  // Lifecycle watchers likewise; what was recorded is committed (replayed after the restart).
  if (lifecycle_) lifecycle_->Stop();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (internal_server_) {
    internal_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  // Admin writes still queued run now, while the hub and webhooks their listener uses exist;
  // changes from other replicas (etcd) stop first, so none reaches the listener afterwards.
  if (store_) {
    store_->StopFollowing();
    store_->writer().Flush();
  }
  if (webhooks_) webhooks_->Stop();
  dir_lock_.Release();
}

void ControlPlane::Broadcast(const relay::v1::ControlMessage& msg) {
  for (const auto& node : hub_->NodeIds()) hub_->Send(node, msg);
}

void ControlPlane::OnAppChanged(const relay::v1::App& app, bool removed) {
  if (removed) {
    watch_->CloseApp(app.id(),
                     absl::NotFoundError(common::StrCat("app '", app.id(), "' was deleted")));
  } else if (!app.enabled()) {
    watch_->CloseApp(
        app.id(), absl::PermissionDeniedError(common::StrCat("app '", app.id(), "' is disabled")));
    if (lifecycle_) {
      lifecycle_->CloseApp(app.id(), absl::PermissionDeniedError(
                                         common::StrCat("app '", app.id(), "' is disabled")));
    }
  }
  relay::v1::ControlMessage msg;
  if (removed) {
    if (webhooks_) webhooks_->RemoveApp(app.id());
    if (lifecycle_) lifecycle_->RemoveApp(app.id());
    msg.mutable_app_remove()->set_app_id(app.id());
  } else {
    *msg.mutable_app_upsert() = app;
  }
  absl::MutexLock order(&order_mu_);  // ordered with the welcome of a node attaching meanwhile
  Broadcast(msg);
}

void ControlPlane::OnAttach(const std::string& node_id, const relay::v1::NodeHello& /*hello*/,
                            const relay::v1::NodeSnapshot& snapshot) {
  // Refused at Attach unless leading; one that raced the loss of leadership is ended by
  // StepDown without a welcome.
  if (!Acting()) return;
  absl::MutexLock order(&order_mu_);
  totals_.Reset(node_id);  // its next connection totals are complete
  Effects fx = cluster_.ApplySnapshot(node_id, snapshot);
  bool first_attach = false;
  {
    absl::MutexLock lock(&announce_mu_);
    first_attach = attached_before_.insert(node_id).second;
  }
  node_attaches_.fetch_add(1, std::memory_order_relaxed);
  if (!first_attach) node_reattaches_.fetch_add(1, std::memory_order_relaxed);
  bool remember = false;
  {
    absl::MutexLock lock(&announce_mu_);
    departing_.erase(node_id);
    remember = known_nodes_.insert(node_id).second;
  }
  // Written before the node routes: a leader that dies next is succeeded by one that waits
  // for this node too.
  if (remember) RememberNode(node_id);
  // Its snapshot is applied: what it serves routes again.
  gate_->Attached(node_id);
  // A node's first attach to this control plane brings state that clients already know: a
  // fresh node has no clients yet (it refuses them until welcomed), so a non-empty first
  // snapshot means this control plane restarted and the node's members, occupied channels and
  // counts were announced by its predecessor. Re-announcing them would invent member_added,
  // channel_occupied and online events. Only later attaches (a node that was withdrawn and
  // comes back) announce what changed.
  if (!first_attach) Apply(fx);
  relay::v1::Welcome welcome;
  for (auto& a : store_->List()) *welcome.add_apps() = std::move(a);
  welcome.set_control_plane_id(instance_id_);
  // Three heartbeats fit in the liveness timeout, so one lost beat never withdraws a node.
  uint32_t interval_ms =
      std::max<uint32_t>(100, static_cast<uint32_t>(options_.hub.liveness_timeout.count() / 3));
  welcome.set_heartbeat_interval_ms(interval_ms);
  welcome.set_heartbeat_interval_seconds(std::max<uint32_t>(1, interval_ms / 1000));
  if (replica_) {
    // The lease's length: a paused leader is left by its nodes about when its successor is
    // elected (the sweeper sends at least every 500 ms).
    welcome.set_silence_timeout_ms(
        static_cast<uint32_t>(std::max<int64_t>(1500, options_.etcd_lease_ttl_seconds * 1000)));
  }
  // Sent under order_mu_, like app changes (OnAppChanged): a change made after the app list
  // above was read reaches the node after the welcome, never before it.
  relay::v1::ControlMessage msg;
  *msg.mutable_welcome() = std::move(welcome);
  hub_->Send(node_id, std::move(msg));
}

void ControlPlane::OnNodeMessage(const std::string& node_id, const relay::v1::NodeMessage& msg) {
  // A replica that no longer leads (or was paused past its lease) decides nothing more.
  if (!Acting()) return;
  switch (msg.body_case()) {
    case relay::v1::NodeMessage::kDelta: {
      absl::MutexLock order(&order_mu_);
      Effects fx = cluster_.ApplyDelta(node_id, msg.delta());
      if (fx.node_interest_added) {
        // An empty message carries the ack: the node's new interest is now routed.
        hub_->Send(node_id, relay::v1::ControlMessage());
      }
      Apply(fx);
      break;
    }
    case relay::v1::NodeMessage::kSubscribe: {
      absl::MutexLock order(&order_mu_);
      OnSubscribe(node_id, msg.subscribe());
      break;
    }
    case relay::v1::NodeMessage::kClientEvent:
      OnClientEvent(node_id, msg.client_event());
      break;
    case relay::v1::NodeMessage::kSnapshot: {
      absl::MutexLock order(&order_mu_);
      Apply(cluster_.ApplySnapshot(node_id, msg.snapshot()));
      break;
    }
    default:
      break;  // heartbeats only refresh liveness (done by the hub)
  }
}

void ControlPlane::OnDeparted(const std::string& node_id) {
  absl::MutexLock lock(&announce_mu_);
  departing_.insert(node_id);
}

void ControlPlane::OnDetach(const std::string& node_id) {
  absl::MutexLock order(&order_mu_);
  totals_.Reset(node_id);
  bool departed = false;
  bool forget = false;
  const bool acting = Acting();
  {
    absl::MutexLock lock(&announce_mu_);
    departed = departing_.erase(node_id) > 0;
    forget = acting && departed && known_nodes_.erase(node_id) > 0;
  }
  if (forget) ForgetNode(node_id);
  // A replica that stopped leading forgets the node's state and decides nothing: the leader
  // now in charge has (or will have) the node's snapshot, and announces what changed.
  if (!acting) {
    cluster_.RemoveNode(node_id);
    return;
  }
  // A node that may come back keeps its channels and users unroutable until it does or times
  // out: a publish for them is refused rather than answered 2xx while its subscribers are cut
  // off. The gate closes before the routes are withdrawn, so no publish in between finds
  // neither (the hub no longer has the stream: one routed before fails to queue and is refused).
  if (departed) {
    gate_->Left(node_id);
  } else if (!stopped_.load()) {
    gate_->Detached(node_id, cluster_.KeysOf(node_id));
  }
  Effects fx = cluster_.RemoveNode(node_id);
  // Every stream ends when this control plane stops, but the nodes keep their clients and the
  // next control plane rebuilds the same view from their snapshots: nothing left. Routing the
  // withdrawal would tell the clients of a node still attached that members left and send
  // member_removed / channel_vacated webhooks that never happened.
  if (stopped_.load()) return;
  Apply(std::move(fx));
}

absl::Status ControlPlane::OpenEtcd() {
  if (options_.etcd_endpoints.empty()) return absl::OkStatus();
  if (auto st = ConnectEtcd(); !st.ok()) return st;
  ReplicaOptions r;
  r.prefix = options_.etcd_prefix;
  r.lease_ttl_seconds = options_.etcd_lease_ttl_seconds;
  r.advertise = options_.advertise_grpc;  // else the internal address, once bound (Start)
  Replica::Callbacks cb;
  cb.gained = [this] { return TakeOver(); };
  cb.lost = [this](const absl::Status& why) { StepDown(why); };
  replica_ = std::make_unique<Replica>(*etcd_, std::move(r), std::move(cb));
  // Every write to the store on etcd is the leader's, fenced by its leadership: a replica that
  // does not lead (or was paused past its lease) writes nothing (docs/scaling.md).
  store_->SetFence([this]() -> std::vector<etcd::Compare> {
    if (auto fence = replica_->Fence()) return {*fence};
    return {NeverHolds()};
  });
  return absl::OkStatus();
}

etcd::Compare ControlPlane::NeverHolds() const {
  // No key has a negative create revision.
  return etcd::Compare::CreateRevision(options_.etcd_prefix + "/v1/leader", -1);
}

absl::Status ControlPlane::TakeOver() {
  auto known = replica_->LoadKnownNodes();
  if (!known.ok()) return known.status();
  if (webhooks_) {
    // The endpoints and outbox the previous leader left, delivered from now on.
    if (auto st = webhooks_->Reload(); !st.ok()) return st;
    webhooks_->SetActive(true);
  }
  absl::MutexLock order(&order_mu_);
  // What an earlier term left: nodes it had are announced as fresh attaches again (their
  // first attach to this leader re-announces nothing, see OnAttach).
  gate_->Reset(*known);
  {
    absl::MutexLock lock(&announce_mu_);
    attached_before_.clear();
    departing_.clear();
    known_nodes_ = std::set<std::string>(known->begin(), known->end());
  }
  {
    absl::MutexLock lock(&count_mu_);
    count_throttle_.clear();
  }
  RELAY_LOG(kInfo, "controlplane", "elected leader: waiting for ", known->size(),
            " data plane(s) of the node registry to attach before routing events, for at most ",
            options_.hub.liveness_timeout.count(), " ms");
  return absl::OkStatus();
}

void ControlPlane::StepDown(const absl::Status& why) {
  RELAY_LOG(kWarn, "controlplane", "stepping down to follower: ", why.message(),
            "; ending every node stream");
  {
    absl::MutexLock lock(&announce_mu_);
    known_nodes_.clear();  // the next leader's now; read again from etcd if re-elected
  }
  gate_->Reset({});
  if (webhooks_) webhooks_->SetActive(false);  // the next leader delivers
  hub_->DetachAll(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "this control plane is no longer the leader; attach again"));
  // Watchers would wait here for events only the next leader routes: they end, to watch again
  // through the leader.
  const absl::Status follow = absl::UnavailableError(
      "this control plane is no longer the leader; watch again through the leader");
  for (const auto& app : store_->List()) {
    watch_->CloseApp(app.id(), follow);
    if (lifecycle_) lifecycle_->CloseApp(app.id(), follow);
  }
}

void ControlPlane::RememberNode(const std::string& node_id) {
  if (!replica_) return store_->RememberNode(node_id);
  if (auto st = replica_->RememberNode(node_id); !st.ok()) {
    RELAY_LOG(kWarn, "controlplane", "cannot record data plane ", node_id,
              " in the node registry: ", st.message());
  }
}

void ControlPlane::ForgetNode(const std::string& node_id) {
  if (!replica_) return store_->ForgetNode(node_id);
  if (auto st = replica_->ForgetNode(node_id); !st.ok()) {
    RELAY_LOG(kWarn, "controlplane", "cannot remove data plane ", node_id,
              " from the node registry: ", st.message());
  }
}

void ControlPlane::ExpireAbsentNodes() {
  if (!Acting()) return;  // the registry is the leader's
  for (const auto& node : gate_->Expire()) {
    RELAY_LOG(kWarn, "controlplane", "data plane ", node, " did not come back within ",
              options_.hub.liveness_timeout.count(), " ms; routing without it");
    bool forget = false;
    {
      absl::MutexLock lock(&announce_mu_);
      forget = known_nodes_.erase(node) > 0;
    }
    if (forget) ForgetNode(node);
  }
}

void ControlPlane::FlushConnectionTotals() {
  for (auto& [node, msg] : totals_.Collect(cluster_, hub_->NodeIds())) {
    hub_->Send(node, std::move(msg));
  }
}

void ControlPlane::OnSubscribe(const std::string& node_id,
                               const relay::v1::SubscribeRequest& request) {
  relay::v1::ControlMessage msg;
  auto* reply = msg.mutable_subscribe_reply();
  reply->set_request_id(request.request_id());
  auto app = store_->Find(request.app_id());
  if (!app) {
    reply->set_ok(false);
    reply->set_error_type("AppNotFound");
    reply->set_error_message("The app no longer exists");
    reply->set_error_status(4001);
    hub_->Send(node_id, std::move(msg));
    return;
  }
  Effects fx;
  if (request.has_member()) {
    fx = cluster_.PresenceJoin(node_id, request, app->limits().max_presence_members(), reply);
  } else {
    reply->set_ok(true);
  }
  if (reply->ok() && common::ClassifyChannel(request.channel()).is_cache) {
    // Read and queued in cache order (Api::InCacheOrder): a publish racing this subscription is
    // either in the cache given here or queued to the node after this reply, never older.
    bool miss = false;
    api_->InCacheOrder([&] {
      if (auto cached = cluster_.GetCache(request.app_id(), request.channel())) {
        *reply->mutable_cache() = *cached;
      } else {
        miss = true;
      }
      hub_->Send(node_id, std::move(msg));
    });
    if (miss && (lifecycle_ || (webhooks_ && webhooks_->Wants(request.app_id(), "cache_miss")))) {
      // One cache_miss webhook per channel per 5 s while it stays empty.
      int64_t now = common::NowUnixMs();
      bool emit = false;
      {
        absl::MutexLock lock(&announce_mu_);
        int64_t& last = last_cache_miss_[{request.app_id(), request.channel()}];
        if (now - last >= kCacheMissIntervalMs) {
          last = now;
          emit = true;
        }
      }
      if (emit) {
        Emit(request.app_id(), Webhooks::ChannelEvent("cache_miss", request.channel()));
      }
    }
    Apply(fx);
    return;
  }
  // The reply goes out before the member_added it causes, so the joiner's node learns the
  // roster first; the joiner itself is excluded from member_added.
  hub_->Send(node_id, std::move(msg));
  Apply(fx);
}

void ControlPlane::PruneCacheMisses() {
  int64_t now = common::NowUnixMs();
  absl::MutexLock lock(&announce_mu_);
  for (auto it = last_cache_miss_.begin(); it != last_cache_miss_.end();) {
    it = now - it->second >= kCacheMissIntervalMs ? last_cache_miss_.erase(it) : std::next(it);
  }
}

void ControlPlane::OnClientEvent(const std::string& node_id,
                                 const relay::v1::ClientEventUp& event) {
  // The node validated the event against the app's settings; check again what it cannot have
  // got right unless it is faithful (node_validation.h checked the shape already).
  auto app = store_->Find(event.app_id());
  const char* refused = nullptr;
  if (!app || !app->enabled()) {
    refused = "unknown or disabled app";
  } else if (!app->features().client_events()) {
    refused = "client events are disabled for the app";
  } else if (event.data_json().size() > app->limits().max_event_payload_bytes()) {
    refused = "data larger than the app's limit";
  } else if (!cluster_.NodeHasChannel(node_id, event.app_id(), event.channel())) {
    refused = "the node has no subscriber of the channel";
  }
  if (refused != nullptr) {
    client_events_refused_.fetch_add(1, std::memory_order_relaxed);
    RELAY_LOG(kDebug, "controlplane", "dropped a client event from node ", node_id, ": ", refused);
    return;
  }
  relay::v1::Publish publish;
  publish.set_app_id(event.app_id());
  publish.add_channels(event.channel());
  publish.set_event(event.event());
  publish.set_data(event.data_json());
  publish.set_data_is_json(true);
  publish.set_exclude_socket_id(event.socket_id());
  publish.set_user_id(event.user_id());
  publish.add_frames(common::RenderEvent(event.event(), event.channel(), event.data_json(), true,
                                         event.user_id()));
  if (watch_->Wants(event.app_id())) {
    relay::v1::ChannelEvent watched;
    watched.set_channel(event.channel());
    watched.set_event(event.event());
    watched.set_data(event.data_json());
    watched.set_source(relay::v1::ChannelEvent::SOURCE_CLIENT);
    watched.set_socket_id(event.socket_id());
    watched.set_user_id(event.user_id());
    watched.set_accepted_unix_us(common::NowUnixMicros());
    watch_->Publish(event.app_id(), std::move(watched));
  }
  if (webhooks_ || lifecycle_) {
    Emit(event.app_id(), Webhooks::ClientEvent(event.channel(), event.event(), event.data_json(),
                                               event.socket_id(), event.user_id()));
  }
  // The sender's node already delivered it locally.
  api_->Route(std::move(publish), node_id);
}

void ControlPlane::Emit(const std::string& app_id, const WebhookEvent& event) {
  if (webhooks_) webhooks_->Emit(app_id, event);
  if (lifecycle_) lifecycle_->Record(app_id, event);
}

void ControlPlane::EmitWebhooks(const Effects& fx) {
  if (!webhooks_ && !lifecycle_) return;
  auto key = [](const auto& e) { return std::make_pair(e.app_id, e.channel); };
  for (const auto& c : fx.occupied) {
    {
      absl::MutexLock lock(&announce_mu_);
      if (announced_.erase(key(c)) > 0) continue;  // already announced with its first member
    }
    Emit(c.app_id, Webhooks::ChannelEvent("channel_occupied", c.channel));
  }
  for (const auto& m : fx.member_added) {
    bool announce = false;
    if (cluster_.GetChannel(m.app_id, m.channel).subscription_count() == 0) {
      absl::MutexLock lock(&announce_mu_);
      announce = announced_.insert(key(m)).second;
    }
    if (announce) {
      Emit(m.app_id, Webhooks::ChannelEvent("channel_occupied", m.channel));
    }
    Emit(m.app_id, Webhooks::MemberEvent("member_added", m.channel, m.user_id));
  }
  for (const auto& m : fx.member_removed) {
    Emit(m.app_id, Webhooks::MemberEvent("member_removed", m.channel, m.user_id));
    // A member that left before its node counted the subscription: close the announcement.
    bool close = false;
    {
      absl::MutexLock lock(&announce_mu_);
      close = announced_.contains(key(m)) &&
              cluster_.PresenceMembers(m.app_id, m.channel).empty() && announced_.erase(key(m)) > 0;
    }
    if (close) Emit(m.app_id, Webhooks::ChannelEvent("channel_vacated", m.channel));
  }
  for (const auto& c : fx.vacated) {
    Emit(c.app_id, Webhooks::ChannelEvent("channel_vacated", c.channel));
  }
}

void ControlPlane::Apply(const Effects& fx) {
  if (!Acting()) return;  // a deposed leader announces nothing
  totals_.Changed(fx.connections_changed);
  EmitWebhooks(fx);
  auto member_frame = [](const Effects::Member& m, bool added) {
    common::JsonWriter w;
    w.BeginObject().Key("user_id").String(m.user_id);
    if (added) {
      w.Key("user_info");
      if (m.user_info_json.empty()) {
        w.Raw("{}");
      } else {
        w.Raw(m.user_info_json);
      }
    }
    w.EndObject();
    return common::RenderEvent(
        added ? "pusher_internal:member_added" : "pusher_internal:member_removed", m.channel,
        w.str());
  };
  for (const auto& [list, added] :
       {std::pair{&fx.member_added, true}, std::pair{&fx.member_removed, false}}) {
    for (const auto& m : *list) {
      relay::v1::Publish p;
      p.set_app_id(m.app_id);
      p.add_channels(m.channel);
      p.set_exclude_socket_id(m.socket_id);
      p.add_frames(member_frame(m, added));
      api_->Route(std::move(p));
    }
  }
  for (const auto& t : fx.user_transitions) {
    for (const auto& [node, watchers] : cluster_.WatchersByNode(t.app_id, t.user_id)) {
      relay::v1::ControlMessage msg;
      auto* w = msg.mutable_watchlist();
      w->set_app_id(t.app_id);
      for (const auto& watcher : watchers) w->add_watcher_user_ids(watcher);
      (t.online ? w->add_online() : w->add_offline())->assign(t.user_id);
      hub_->Send(node, std::move(msg));
    }
  }
  for (const auto& s : fx.watch_starts) {
    relay::v1::ControlMessage msg;
    auto* w = msg.mutable_watchlist();
    w->set_app_id(s.app_id);
    w->add_watcher_user_ids(s.watcher);
    for (const auto& u : s.online) w->add_online(u);
    hub_->Send(s.node_id, std::move(msg));
  }
  for (const auto& c : fx.subscription_counts) {
    if (common::ClassifyChannel(c.channel).is_presence) continue;
    QueueSubscriptionCount(c.app_id, c.channel, c.count);
  }
}

void ControlPlane::QueueSubscriptionCount(const std::string& app_id, const std::string& channel,
                                          uint32_t count) {
  constexpr uint32_t kThrottleAbove = 100;
  constexpr int64_t kThrottleMs = 5000;
  auto app = store_->Find(app_id);
  if (!app || !app->features().subscription_count()) return;
  int64_t now = common::NowUnixMs();
  bool send = false;
  {
    absl::MutexLock lock(&count_mu_);
    auto key = std::make_pair(app_id, channel);
    CountThrottle& t = count_throttle_[key];
    if (count <= kThrottleAbove || now - t.last_sent_ms >= kThrottleMs) {
      t.last_sent_ms = now;
      t.has_pending = false;
      send = true;
      if (count == 0) count_throttle_.erase(key);
    } else {
      t.pending = count;
      t.has_pending = true;
    }
  }
  if (send && count > 0) SendSubscriptionCount(app_id, channel, count);
}

void ControlPlane::FlushSubscriptionCounts(bool force_all) {
  absl::MutexLock order(&order_mu_);
  int64_t now = common::NowUnixMs();
  std::vector<std::tuple<std::string, std::string, uint32_t>> due;
  {
    absl::MutexLock lock(&count_mu_);
    for (auto& [key, t] : count_throttle_) {
      if (t.has_pending && (force_all || now - t.last_sent_ms >= 5000)) {
        due.emplace_back(key.first, key.second, t.pending);
        t.has_pending = false;
        t.last_sent_ms = now;
      }
    }
  }
  for (const auto& [app, channel, count] : due) SendSubscriptionCount(app, channel, count);
}

void ControlPlane::SendSubscriptionCount(const std::string& app_id, const std::string& channel,
                                         uint32_t count) {
  if (webhooks_ || lifecycle_) Emit(app_id, Webhooks::SubscriptionCountEvent(channel, count));
  relay::v1::Publish p;
  p.set_app_id(app_id);
  p.add_channels(channel);
  p.add_frames(common::RenderEvent("pusher_internal:subscription_count", channel,
                                   common::StrCat("{\"subscription_count\":", count, "}")));
  api_->Route(std::move(p));
}

}  // namespace relay::controlplane
