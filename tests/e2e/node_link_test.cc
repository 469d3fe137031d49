// The node link against strangers and misbehaving nodes: every Attach needs a node credential,
// a node id cannot be taken over with another credential, revocation cuts a node off, and
// whatever an authenticated node sends is validated like client input. Real gRPC on loopback
// against an in-process control plane with real data planes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "relay/v1/node_link.grpc.pb.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/raw_node.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;
using relay::v1::ControlMessage;
using relay::v1::NodeMessage;

std::string IssueNodeToken(Cluster& cluster, const std::string& name, const std::string& node) {
  auto created = cluster.cp().store().CreateNodeToken(name, node);
  return created.ok() ? created->secret() : std::string();
}

TEST(NodeLink, AStrangerIsRefusedBeforeAnythingIsSent) {
  Cluster cluster(1);
  for (const std::string& token :
       std::vector<std::string>{"", "rln_made_up", "app-secret", cluster.cp().admin_token()}) {
    RawNode stranger(cluster.cp().grpc_port(), token);
    stranger.Hello("intruder");  // may already fail: the call ends at once
    int messages = -1;
    grpc::Status st = stranger.End(&messages);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << "token '" << token << "'";
    EXPECT_EQ(messages, 0) << "no welcome (it carries every app's secret)";
  }
  EXPECT_EQ(cluster.cp().hub().NodeIds(), std::vector<std::string>{"node-0"});
  EXPECT_GE(cluster.cp().hub().counters().auth_failures.load(), 4u);
}

TEST(NodeLink, ACredentialBoundToANodeAttachesOnlyThatNode) {
  Cluster cluster(1);
  std::string token = IssueNodeToken(cluster, "edge-1", "edge-1");
  ASSERT_FALSE(token.empty());
  RawNode wrong(cluster.cp().grpc_port(), token);
  wrong.Hello("edge-2");
  EXPECT_EQ(wrong.End().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  RawNode right(cluster.cp().grpc_port(), token);
  ASSERT_TRUE(right.Attach("edge-1"));
  right.Cancel();
}

TEST(NodeLink, ANodeIdCannotBeTakenOverWithAnotherCredential) {
  Cluster cluster(1);
  auto subscriber = cluster.Client(0);
  ASSERT_TRUE(subscriber);
  ASSERT_NE(cluster.Subscribe(*subscriber, "presence-room", R"({"user_id":"u1"})"), "");
  uint64_t attaches = cluster.node(0).attaches();
  std::string other = IssueNodeToken(cluster, "other", "");
  RawNode thief(cluster.cp().grpc_port(), other);
  thief.Hello("node-0");
  NodeMessage empty_snapshot;
  empty_snapshot.mutable_snapshot();
  thief.Write(std::move(empty_snapshot));
  EXPECT_EQ(thief.End().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(cluster.cp().hub().counters().takeovers_refused.load(), 1u);
  // The real node kept its stream and its member; nobody saw a member come or go.
  EXPECT_EQ(cluster.node(0).attaches(), attaches);
  EXPECT_TRUE(cluster.node(0).attached());
  EXPECT_EQ(cluster.cp().cluster().PresenceMembers("app-id", "presence-room").size(), 1u);
  EXPECT_TRUE(subscriber->QuietFor(300ms));
  // A credential bound to the id may replace the stream (a node that restarted elsewhere).
  std::string bound = IssueNodeToken(cluster, "node-0 again", "node-0");
  RawNode owner(cluster.cp().grpc_port(), bound);
  EXPECT_TRUE(owner.Attach("node-0"));
  owner.Cancel();
}

TEST(NodeLink, RevokingACredentialCutsItsNodesOff) {
  Cluster cluster(1);
  auto created = cluster.cp().store().CreateNodeToken("temp", "");
  ASSERT_TRUE(created.ok());
  RawNode node(cluster.cp().grpc_port(), created->secret());
  ASSERT_TRUE(node.Attach("temp-node"));
  ASSERT_TRUE(WaitFor([&] { return cluster.cp().hub().NodeIds().size() == 2; }));
  ASSERT_TRUE(cluster.cp().store().RevokeNodeToken(created->token().id()).ok());
  cluster.cp().hub().DisconnectCredential(created->token().id());
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  RawNode again(cluster.cp().grpc_port(), created->secret());
  again.Hello("temp-node");
  EXPECT_EQ(again.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(WaitFor([&] { return cluster.cp().hub().NodeIds().size() == 1; }));
}

// Client events an authenticated node relays are checked like a client's: a malformed one is
// dropped and counted and reaches no subscriber; the node keeps its stream (one client's bad
// event must not cut a whole node off).
TEST(NodeLink, MalformedClientEventsFromANodeReachNoSubscriber) {
  Cluster cluster(1);
  auto subscriber = cluster.Client(0);
  ASSERT_TRUE(subscriber);
  ASSERT_NE(cluster.Subscribe(*subscriber, "private-secrets"), "");
  RawNode node(cluster.cp().grpc_port(), cluster.NodeToken());
  ASSERT_TRUE(node.Attach("rogue", "private-secrets"));
  auto send = [&](const std::string& event, const std::string& data, const std::string& channel) {
    NodeMessage m;
    auto* e = m.mutable_client_event();
    e->set_app_id("app-id");
    e->set_channel(channel);
    e->set_event(event);
    e->set_data_json(data);
    e->set_socket_id("1.2");
    return node.Write(std::move(m));
  };
  ASSERT_TRUE(send("pusher_internal:member_added", "{}", "private-secrets"));  // not client-
  ASSERT_TRUE(send("client-x", "{\"a\":", "private-secrets"));                 // malformed JSON
  ASSERT_TRUE(send("client-x", "{}", "public-news"));                          // public channel
  ASSERT_TRUE(send("client-x", "{}", "private-\n"));                           // bad name
  ASSERT_TRUE(send("client-x", "{}", "private-elsewhere"));  // the node has no subscriber there
  // A well-formed event still goes through, and it is the first thing the subscriber sees.
  ASSERT_TRUE(send("client-hello", "{\"ok\":true}", "private-secrets"));
  auto got = subscriber->Receive(5s);
  ASSERT_TRUE(got);
  EXPECT_EQ(JsonField(*got, "event"), "client-hello");
  EXPECT_EQ(cluster.cp().hub().counters().client_events_dropped.load(), 4u);
  EXPECT_EQ(cluster.cp().hub().NodeIds(), (std::vector<std::string>{"node-0", "rogue"}));
  node.Cancel();
}

// A credential revoked while a stream is still attaching never registers: the half-open stream
// is cut off, and one that was not (revoked in the store only) is refused when it registers.
TEST(NodeLink, ACredentialRevokedDuringTheAttachNeverRegisters) {
  Cluster cluster(1);
  auto created = cluster.cp().store().CreateNodeToken("parked", "");
  ASSERT_TRUE(created.ok());
  RawNode parked(cluster.cp().grpc_port(), created->secret());
  ASSERT_TRUE(parked.Hello("parked"));
  RawNode late(cluster.cp().grpc_port(), created->secret());
  ASSERT_TRUE(late.Hello("late"));
  ASSERT_TRUE(cluster.cp().store().RevokeNodeToken(created->token().id()).ok());
  NodeMessage snapshot;
  snapshot.mutable_snapshot();
  late.Write(std::move(snapshot));
  EXPECT_EQ(late.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  cluster.cp().hub().DisconnectCredential(created->token().id());
  EXPECT_EQ(parked.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(cluster.cp().hub().NodeIds(), std::vector<std::string>{"node-0"});
}

TEST(NodeLink, ASnapshotArrivesInParts) {
  Cluster cluster(1);
  RawNode node(cluster.cp().grpc_port(), cluster.NodeToken());
  ASSERT_TRUE(node.Hello("parts"));
  for (int i = 0; i < 3; ++i) {
    NodeMessage part;
    auto* c = part.mutable_snapshot()->add_channels();
    c->set_app_id("app-id");
    c->set_channel("part-" + std::to_string(i));
    c->set_subscriptions(1);
    part.mutable_snapshot()->set_more(i < 2);
    ASSERT_TRUE(node.Write(std::move(part)));
  }
  // The node is registered with all three channels once the last part is in.
  ASSERT_TRUE(WaitFor([&] {
    return cluster.cp().cluster().NodesWithInterest("app-id", {"part-0", "part-1", "part-2"}) ==
               std::vector<std::string>{"parts"} &&
           cluster.cp().cluster().NodeHasChannel("parts", "app-id", "part-0") &&
           cluster.cp().cluster().NodeHasChannel("parts", "app-id", "part-2");
  }));
  node.Cancel();
  // A part followed by anything but the next part breaks the link's rules.
  RawNode broken(cluster.cp().grpc_port(), cluster.NodeToken());
  ASSERT_TRUE(broken.Hello("broken"));
  NodeMessage part;
  part.mutable_snapshot()->set_more(true);
  broken.Write(std::move(part));
  NodeMessage heartbeat;
  heartbeat.mutable_heartbeat();
  broken.Write(std::move(heartbeat));
  EXPECT_EQ(broken.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A node whose state is larger than gRPC's default 4 MiB message re-attaches after a control
// plane restart (before, such a node could never re-attach, and triggers reached no one).
TEST(NodeLink, ANodeWithMoreStateThanOneMessageReattaches) {
  Cluster cluster(1);
  constexpr int kClients = 32, kChannelsEach = 1000;
  const std::string pad(140, 'x');
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(cluster.Client(0));
    ASSERT_TRUE(clients.back());
    for (int j = 0; j < kChannelsEach; ++j) {
      cluster.SendSubscribe(*clients.back(),
                            pad + "-" + std::to_string(i) + "-" + std::to_string(j));
    }
  }
  const uint64_t total = kClients * kChannelsEach;
  ASSERT_TRUE(WaitFor(
      [&] { return cluster.cp().cluster().ListChannels("app-id", "").size() == total; }, 60s));
  cluster.RestartControlPlane();
  ASSERT_TRUE(cluster.WaitAttached(2));
  EXPECT_EQ(cluster.cp().cluster().ListChannels("app-id", "").size(), total);
  ASSERT_TRUE(cluster.Trigger(pad + "-3-999", "after-restart", "x").ok());
  EXPECT_TRUE(clients[3]->ReceiveEvent("after-restart", 10s));
}

// A data plane on a non-loopback address serves an app with the well-known default secret as
// disabled (its control plane may run on loopback, where that secret is allowed).
TEST(NodeLink, ADataPlaneOnAPublicAddressRefusesTheWellKnownSecret) {
  relay::v1::App app;
  app.set_id("app-id");
  app.set_enabled(true);
  app.set_secret("app-secret");
  dataplane::DataPlaneOptions o;
  o.host = "0.0.0.0";
  EXPECT_FALSE(dataplane::DataPlane(o).Guarded(app).enabled());
  app.set_secret("a-long-random-secret");
  auto* previous = app.add_previous_secrets();
  previous->set_secret("app-secret");
  previous->set_expires_unix_ms(4102444800000);
  relay::v1::App rotated = dataplane::DataPlane(o).Guarded(app);
  EXPECT_TRUE(rotated.enabled());
  EXPECT_EQ(rotated.previous_secrets_size(), 0) << "the default never verifies, even in overlap";
  app.set_secret("app-secret");
  o.host = "127.0.0.1";
  EXPECT_TRUE(dataplane::DataPlane(o).Guarded(app).enabled());
}

}  // namespace
}  // namespace relay::testutil
