// File: grpc_services.h
// The public (relay.v1.Channels) and admin (relay.v1.Admin) gRPC services: authentication from
// call metadata, then a direct translation onto Api / AppStore / NodeHub.
#pragma once

#include <memory>
#include <string>

namespace grpc {
class Service;
}

namespace relay::controlplane {

class Api;
class AppStore;
class ClusterState;
class NodeHub;
class Webhooks;

std::unique_ptr<grpc::Service> MakeChannelsService(Api& api);
// `webhooks` may be null (webhooks off): the webhook calls then fail with FAILED_PRECONDITION.
std::unique_ptr<grpc::Service> MakeAdminService(AppStore& store, ClusterState& cluster,
                                                NodeHub& hub, Api& api, Webhooks* webhooks,
                                                const std::string& admin_token);

}  // namespace relay::controlplane
