// The public gRPC API (relay.v1.Channels) with each authentication method and its canonical
// error codes, against a real control plane.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "relay/v1/public.grpc.pb.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

TEST(GrpcApi, AuthenticationAndErrors) {
  Cluster cluster(1);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(cluster.cp().grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = relay::v1::Channels::NewStub(channel);
  auto trigger = [&](const std::string& app,
                     const std::vector<std::pair<std::string, std::string>>& md,
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
  EXPECT_EQ(trigger("app-key", {{"authorization", "Bearer " + token->secret()}}),
            grpc::StatusCode::OK);
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

// Every credential failure and every error class over gRPC, with the same rules as HTTP (one
// controlplane::Api): canonical codes, and quota charged only for events actually published.
TEST(GrpcApi, CredentialFailuresAndCanonicalCodes) {
  Cluster cluster(1);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(cluster.cp().grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = relay::v1::Channels::NewStub(channel);
  using Md = std::vector<std::pair<std::string, std::string>>;
  const Md key_secret = {{"x-relay-key", "app-key"}, {"x-relay-secret", "app-secret"}};
  auto trigger = [&](const std::string& app, const Md& md, std::vector<std::string> channels,
                     const std::string& data = "{}", std::string* message = nullptr) {
    grpc::ClientContext ctx;
    for (const auto& [k, v] : md) ctx.AddMetadata(k, v);
    relay::v1::TriggerRequest req;
    req.set_app(app);
    for (auto& c : channels) req.add_channels(c);
    req.set_name("e");
    req.set_data(data);
    relay::v1::TriggerResponse resp;
    grpc::Status st = stub->Trigger(&ctx, req, &resp);
    if (message != nullptr) *message = st.error_message();
    return st.error_code();
  };
  auto& store = cluster.cp().store();
  // Tokens: another app's, revoked, expired.
  relay::v1::CreateAppRequest other_app;
  other_app.set_name("other");
  auto other = store.Create(other_app);
  ASSERT_TRUE(other.ok());
  auto foreign = store.CreateToken(other->id(), "f", 0);
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(trigger("app-id", {{"authorization", "Bearer " + foreign->secret()}}, {"c"}),
            grpc::StatusCode::UNAUTHENTICATED);
  auto revoked = store.CreateToken("app-id", "r", 0);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(trigger("app-id", {{"authorization", "Bearer " + revoked->secret()}}, {"c"}),
            grpc::StatusCode::OK);
  ASSERT_TRUE(store.RevokeToken(revoked->token().id()).ok());
  EXPECT_EQ(trigger("app-id", {{"authorization", "Bearer " + revoked->secret()}}, {"c"}),
            grpc::StatusCode::UNAUTHENTICATED);
  auto expiring = store.CreateToken("app-id", "x", 1);
  ASSERT_TRUE(expiring.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return trigger("app-id", {{"authorization", "Bearer " + expiring->secret()}}, {"c"}) ==
               grpc::StatusCode::UNAUTHENTICATED;
      },
      std::chrono::seconds(5)));
  // The other app's key and secret do not open this app.
  EXPECT_EQ(trigger("app-id", {{"x-relay-key", other->key()}, {"x-relay-secret", other->secret()}},
                    {"c"}),
            grpc::StatusCode::UNAUTHENTICATED);
  // Validation and size.
  EXPECT_EQ(trigger("app-id", key_secret, {"bad name"}), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(trigger("app-id", key_secret, {"c"}, std::string(10241, 'd')),
            grpc::StatusCode::OUT_OF_RANGE);
  std::vector<std::string> many;
  for (int i = 0; i < 101; ++i) many.push_back("c" + std::to_string(i));
  EXPECT_EQ(trigger("app-id", key_secret, many), grpc::StatusCode::INVALID_ARGUMENT);
  // Daily quota: RESOURCE_EXHAUSTED when used up, PERMISSION_DENIED for a request over it all;
  // refused requests use none of it (a fresh app, as the triggers above count for app-id).
  const Md other_creds = {{"x-relay-key", other->key()}, {"x-relay-secret", other->secret()}};
  relay::v1::UpdateAppRequest u;
  u.set_app(other->id());
  u.mutable_changes()->mutable_limits()->set_max_daily_messages(2);
  u.add_update_mask("limits.max_daily_messages");
  ASSERT_TRUE(store.Update(u).ok());
  EXPECT_EQ(trigger(other->id(), other_creds, {"a", "b", "c"}),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(trigger(other->id(), other_creds, {"a", "b"}, std::string(10241, 'd')),
            grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(trigger(other->id(), other_creds, {"a", "b"}), grpc::StatusCode::OK);
  std::string message;
  EXPECT_EQ(trigger(other->id(), other_creds, {"a"}, "{}", &message),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(message.find("daily quota of 2"), std::string::npos) << message;
  // A disabled app.
  relay::v1::UpdateAppRequest off;
  off.set_app("app-id");
  off.mutable_changes()->set_enabled(false);
  off.add_update_mask("enabled");
  ASSERT_TRUE(store.Update(off).ok());
  EXPECT_EQ(trigger("app-id", key_secret, {"a"}), grpc::StatusCode::PERMISSION_DENIED);
  // Queries share the same rules.
  grpc::ClientContext ctx;
  for (const auto& [k, v] : key_secret) ctx.AddMetadata(k, v);
  relay::v1::ListPresenceUsersRequest users;
  users.set_app(other->id());
  users.set_channel("public");
  relay::v1::ListPresenceUsersResponse users_resp;
  EXPECT_EQ(stub->ListPresenceUsers(&ctx, users, &users_resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace relay::testutil
