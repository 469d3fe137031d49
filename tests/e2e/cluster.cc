#include "tests/e2e/cluster.h"

#include "common/channel.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "common/json.h"
#include "common/pusher_auth.h"
#include "common/strings.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {

Cluster::Cluster(int nodes, dataplane::DataPlaneOptions dp_options) {
  dir_ = std::filesystem::temp_directory_path() / ("relay-test-" + common::RandomHex(6));
  StartControlPlane(0);
  for (int i = 0; i < nodes; ++i) {
    dataplane::DataPlaneOptions o = dp_options;
    o.host = "127.0.0.1";
    o.port = 0;
    o.shards = 2;
    o.node_id = common::StrCat("node-", i);
    o.control_plane = common::StrCat("127.0.0.1:", cp_->grpc_port());
    // The control plane's default node credential, as an operator would pass it.
    if (o.node_token.empty()) o.node_token = NodeToken();
    o.heartbeat_interval = std::chrono::milliseconds(200);
    auto dp = std::make_unique<dataplane::DataPlane>(
        o, i == 0 ? transport::HttpHandler(
                        [this](const transport::HttpRequest& r) { return http_->Handle(r); })
                  : transport::HttpHandler());
    auto st = dp->Start();
    if (!st.ok()) std::abort();
    nodes_.push_back(std::move(dp));
  }
  WaitAttached(1);
}

Cluster::~Cluster() {
  for (auto& n : nodes_) n->Stop();
  cp_->Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void Cluster::StartControlPlane(uint16_t grpc_port) {
  controlplane::ControlPlaneOptions o;
  o.host = "127.0.0.1";
  o.grpc_port = grpc_port;
  o.data_dir = dir_.string();
  o.hub.liveness_timeout = std::chrono::milliseconds(3000);
  cp_ = std::make_unique<controlplane::ControlPlane>(o);
  auto st = cp_->Start();
  if (!st.ok()) std::abort();
  http_ = std::make_unique<http_bridge::HttpApi>(cp_->api());
}

void Cluster::RestartControlPlane() {
  uint16_t port = cp_->grpc_port();
  cp_->Stop();
  cp_.reset();
  StartControlPlane(port);
}

bool Cluster::WaitAttached(uint64_t attaches) {
  return WaitFor([&] {
    for (auto& n : nodes_) {
      if (n->attaches() < attaches || !n->attached()) return false;
    }
    return cp_->hub().NodeIds().size() == nodes_.size();
  });
}

std::string Cluster::NodeToken() const {
  auto token = common::ReadSecretFile((dir_ / "node.token").string());
  return token.ok() ? *token : std::string();
}

relay::v1::App Cluster::app() { return *cp_->store().Find("app-id"); }

std::unique_ptr<WsClient> Cluster::Client(int i, const std::string& key) {
  auto c = WsClient::Connect(port(i), "/app/" + key + "?protocol=7&client=test&version=1");
  if (c && !c->Established()) return nullptr;
  return c;
}

std::string Cluster::Subscribe(WsClient& c, const std::string& channel,
                               const std::string& channel_data) {
  SendSubscribe(c, channel, channel_data);
  auto f =
      c.ReceiveEvent("pusher_internal:subscription_succeeded", std::chrono::seconds(5), channel);
  return f ? *f : "";
}

void Cluster::SendSubscribe(WsClient& c, const std::string& channel,
                            const std::string& channel_data) {
  std::string auth;
  auto kind = common::ClassifyChannel(channel);
  if (kind.NeedsAuth()) {
    auth = common::SignToken("app-key", "app-secret",
                             common::ChannelStringToSign(c.socket_id(), channel, channel_data));
  }
  common::JsonWriter w;
  w.BeginObject().Key("event").String("pusher:subscribe").Key("data").BeginObject();
  w.Key("auth").String(auth).Key("channel").String(channel);
  if (!channel_data.empty()) w.Key("channel_data").String(channel_data);
  w.EndObject().EndObject();
  c.Send(w.str());
}

absl::Status Cluster::Trigger(const std::string& channel, const std::string& event,
                              const std::string& data, const std::string& socket_id) {
  relay::v1::TriggerRequest r;
  r.add_channels(channel);
  r.set_name(event);
  r.set_data(data);
  r.set_socket_id(socket_id);
  return cp_->api().Trigger(app(), r).status();
}

}  // namespace relay::testutil
