// File: admin_ops.h
// The admin operations relay.v1.Admin (grpc_services.cc) shares with the web console
// (console/), so the admin token check and the answers of the read-only calls the console uses
// live once: the console's endpoints are translations of these.
// Thread-safe (as the classes they read).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "relay/v1/admin.pb.h"

namespace relay::controlplane {

class Api;
class AppStore;
class ClusterState;
class NodeHub;

// OK when `given` (the bearer token a caller presented, "" when none) is the admin token;
// UNAUTHENTICATED otherwise. Constant-time: the comparison takes as long whatever matches.
absl::Status CheckAdminToken(std::string_view given, const std::string& admin_token);

// Admin.ListApps.
relay::v1::ListAppsResponse ListApps(const AppStore& store);

// Admin.GetStats: the whole cluster, or one app (by id or key; NOT_FOUND when unknown).
absl::StatusOr<relay::v1::Stats> GetStats(const AppStore& store, const ClusterState& cluster,
                                          const NodeHub& hub, Api& api,
                                          const relay::v1::GetStatsRequest& request);

}  // namespace relay::controlplane
