// The public gRPC API (relay.v1.Channels) with each authentication method and its canonical
// error codes, against a real control plane.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "relay/v1/public.grpc.pb.h"
#include "tests/e2e/cluster.h"

namespace relay::testutil {
namespace {

TEST(GrpcApi, AuthenticationAndErrors) {
  Cluster cluster(1);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(cluster.cp().grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = relay::v1::Channels::NewStub(channel);
  auto trigger = [&](const std::string& app, const std::vector<std::pair<std::string, std::string>>& md,
                     const std::string& name = "e") {
    grpc::ClientContext ctx;
    for (const auto& [k, v] : md) ctx.AddMetadata(k, v);
    relay::v1::TriggerRequest req;
    req.set_app(app);
    req.add_channels("c");
    req.set_name(name);
    req.set_data("{}");
    relay::v1::TriggerResponse resp;
    return stub->Trigger(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(trigger("app-id", {{"x-relay-key", "app-key"}, {"x-relay-secret", "app-secret"}}),
            grpc::StatusCode::OK);
  auto token = cluster.cp().store().CreateToken("app-id", "t", 0);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(trigger("app-key", {{"authorization", "Bearer " + token->secret()}}), grpc::StatusCode::OK);
  EXPECT_EQ(trigger("app-id", {}), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(trigger("app-id", {{"x-relay-key", "app-key"}, {"x-relay-secret", "wrong"}}),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(trigger("nope", {{"x-relay-key", "app-key"}, {"x-relay-secret", "app-secret"}}),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(trigger("app-id", {{"x-relay-key", "app-key"}, {"x-relay-secret", "app-secret"}},
                    "pusher:nope"),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The same server-side signing the HTTP /auth endpoint exposes.
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-relay-key", "app-key");
  ctx.AddMetadata("x-relay-secret", "app-secret");
  relay::v1::AuthorizeChannelRequest a;
  a.set_app("app-id");
  a.set_socket_id("123.456");
  a.set_channel_name("private-orders");
  relay::v1::AuthorizeChannelResponse ar;
  ASSERT_TRUE(stub->AuthorizeChannel(&ctx, a, &ar).ok());
  EXPECT_EQ(ar.auth().substr(0, 8), "app-key:");
}

}  // namespace
}  // namespace relay::testutil
