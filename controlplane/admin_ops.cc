#include "controlplane/admin_ops.h"

#include "common/crypto.h"
#include "common/strings.h"
#include "common/time.h"
#include "controlplane/api.h"
#include "controlplane/app_store.h"
#include "controlplane/cluster_state.h"
#include "controlplane/node_hub.h"

namespace relay::controlplane {

absl::Status CheckAdminToken(std::string_view given, const std::string& admin_token) {
  if (given.empty()) {
    return absl::UnauthenticatedError("missing admin token (authorization: Bearer <token>)");
  }
  if (!common::ConstantTimeEquals(given, admin_token)) {
    return absl::UnauthenticatedError("invalid admin token");
  }
  return absl::OkStatus();
}

relay::v1::ListAppsResponse ListApps(const AppStore& store) {
  relay::v1::ListAppsResponse resp;
  for (auto& a : store.List()) *resp.add_apps() = std::move(a);
  return resp;
}

absl::StatusOr<relay::v1::Stats> GetStats(const AppStore& store, const ClusterState& cluster,
                                          const NodeHub& hub, Api& api,
                                          const relay::v1::GetStatsRequest& req) {
  relay::v1::Stats resp;
  std::string app_id;
  if (!req.app().empty()) {
    auto a = store.Find(req.app());
    if (!a) return absl::NotFoundError(common::StrCat("app '", req.app(), "' not found"));
    app_id = a->id();
  }
  auto nodes = hub.Nodes();
  resp.set_nodes(static_cast<uint32_t>(nodes.size()));
  for (const auto& n : nodes) {
    if (app_id.empty()) resp.set_connections(resp.connections() + n.load().connections());
    resp.set_messages_in(resp.messages_in() + n.load().messages_in());
    resp.set_messages_out(resp.messages_out() + n.load().messages_out());
  }
  if (!app_id.empty()) {
    resp.set_connections(cluster.AppConnections(app_id));
    resp.set_channels(cluster.ListChannels(app_id, "").size());
  } else {
    uint64_t channels = 0;
    for (const auto& a : store.List()) channels += cluster.ListChannels(a.id(), "").size();
    resp.set_channels(channels);
  }
  resp.set_publish_commands(api.counters().publish_commands.load());
  resp.set_api_events(api.counters().events.load());
  resp.set_api_errors(api.counters().errors.load());
  resp.set_unix_ms(common::NowUnixMs());
  return resp;
}

}  // namespace relay::controlplane
