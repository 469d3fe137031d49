// Cluster behaviour with several data planes: presence across nodes, client events across nodes,
// node death, and a control plane restart that drops no client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "relay/v1/node_link.grpc.pb.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;

TEST(Cluster, PresenceAndClientEventsAcrossNodes) {
  Cluster cluster(2);
  auto a = cluster.Client(0);
  auto b = cluster.Client(1);
  auto b2 = cluster.Client(0);
  ASSERT_TRUE(a && b && b2);
  ASSERT_NE(cluster.Subscribe(*a, "presence-x", R"({"user_id":"ua"})"), "");
  std::string ok = cluster.Subscribe(*b, "presence-x", R"({"user_id":"ub"})");
  EXPECT_EQ(JsonField(JsonField(JsonField(ok, "data"), "presence"), "count"), "2");
  ASSERT_TRUE(a->ReceiveEvent("pusher_internal:member_added"));
  // ub again on the other node: no second member_added anywhere.
  ASSERT_NE(cluster.Subscribe(*b2, "presence-x", R"({"user_id":"ub"})"), "");
  b->Send(R"({"event":"client-ping","channel":"presence-x","data":{"n":1}})");
  auto got = a->ReceiveEvent("client-ping");  // crossed nodes through the control plane
  ASSERT_TRUE(got);
  EXPECT_EQ(JsonField(*got, "user_id"), "ub");
  auto next = a->Receive(1s);  // the next frame for a is not a duplicate member_added
  EXPECT_TRUE(!next || JsonField(*next, "event") != "pusher_internal:member_added");
  relay::v1::ListPresenceUsersRequest r;
  r.set_channel("presence-x");
  auto users = cluster.cp().api().ListPresenceUsers(cluster.app(), r);
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(users->users_size(), 2);
  EXPECT_EQ(cluster.cp().cluster().GetChannel("app-id", "presence-x").subscription_count(), 3u);
}

TEST(Cluster, ControlPlaneRestartDropsNoClient) {
  Cluster cluster(2);
  auto a = cluster.Client(0);
  auto b = cluster.Client(1);
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "presence-r", R"({"user_id":"ua"})"), "");
  ASSERT_NE(cluster.Subscribe(*b, "presence-r", R"({"user_id":"ub"})"), "");
  ASSERT_TRUE(a->ReceiveEvent("pusher_internal:member_added"));
  ASSERT_NE(cluster.Subscribe(*b, "orders"), "");
  cluster.RestartControlPlane();
  ASSERT_TRUE(cluster.WaitAttached(2));
  // The rebuilt view comes from the nodes' snapshots.
  ASSERT_TRUE(WaitFor([&] {
    return cluster.cp().cluster().PresenceMembers("app-id", "presence-r").size() == 2 &&
           cluster.cp().cluster().GetChannel("app-id", "orders").subscription_count() == 1;
  }));
  // No member event was invented by the re-attach (ua and ub knew each other already): the next
  // frame of each is this event, and whatever the re-attach caused was routed before it.
  ASSERT_TRUE(cluster.Trigger("presence-r", "marker", "x").ok());
  for (auto* c : {a.get(), b.get()}) {
    auto f = c->Receive();
    ASSERT_TRUE(f);
    EXPECT_EQ(JsonField(*f, "event"), "marker") << *f;
  }
  ASSERT_TRUE(cluster.Trigger("orders", "after-restart", "x").ok());
  EXPECT_TRUE(b->ReceiveEvent("after-restart"));
  // Nobody was disconnected.
  a->Send(R"({"event":"pusher:ping","data":{}})");
  auto f = a->Receive();
  ASSERT_TRUE(f);
  EXPECT_EQ(JsonField(*f, "event"), "pusher:pong");
}

TEST(Cluster, StoppedNodeLeavesTheRoster) {
  Cluster cluster(2);
  auto a = cluster.Client(0);
  auto b = cluster.Client(1);
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "presence-y", R"({"user_id":"ua"})"), "");
  ASSERT_NE(cluster.Subscribe(*b, "presence-y", R"({"user_id":"ub"})"), "");
  ASSERT_TRUE(a->ReceiveEvent("pusher_internal:member_added"));
  cluster.node(1).Stop();  // its stream ends: everything it reported is withdrawn
  auto removed = a->ReceiveEvent("pusher_internal:member_removed", 10s);
  ASSERT_TRUE(removed);
  EXPECT_EQ(JsonField(*removed, "data"), R"({"user_id":"ub"})");
  EXPECT_TRUE(WaitFor([&] { return cluster.cp().hub().NodeIds().size() == 1; }));
}

// Deltas from different nodes are handled on different gRPC threads; the counts they cause must
// still leave in the order the control plane decided them. A subscriber sees every total once,
// rising, and ends on the cluster's total.
TEST(Cluster, SubscriptionCountsLeaveInTheOrderTheyWereDecided) {
  constexpr int kNodes = 4;
  constexpr int kPerNode = 20;  // 81 subscribers: under the 100 above which counts are throttled
  Cluster cluster(kNodes);
  relay::v1::UpdateAppRequest r;
  r.set_app("app-id");
  r.mutable_changes()->mutable_features()->set_subscription_count(true);
  r.add_update_mask("features.subscription_count");
  ASSERT_TRUE(cluster.cp().store().Update(r).ok());
  auto watcher = cluster.Client(0);
  ASSERT_TRUE(watcher);
  ASSERT_NE(cluster.Subscribe(*watcher, "tally"), "");
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kNodes * kPerNode; ++i) {
    clients.push_back(cluster.Client(i % kNodes));
    ASSERT_TRUE(clients.back());
  }
  for (auto& c : clients) cluster.SendSubscribe(*c, "tally");  // every node at once
  const int total = kNodes * kPerNode + 1;
  // Counts until the total (each Receive is bounded): nothing can follow it, as no subscriber
  // leaves and every count is for more subscribers than the one before.
  std::vector<int> seen;
  while (seen.empty() || seen.back() != total) {
    auto f = watcher->ReceiveEvent("pusher_internal:subscription_count", 10s);
    ASSERT_TRUE(f) << "the count stopped at " << (seen.empty() ? 0 : seen.back());
    std::string data = JsonField(*f, "data");
    seen.push_back(std::stoi(data.substr(data.find(':') + 1)));
    ASSERT_LE(seen.back(), total);
  }
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_LT(seen[i - 1], seen[i]) << "count " << seen[i] << " after " << seen[i - 1];
  }
}

using RawStream = grpc::ClientReaderWriter<relay::v1::NodeMessage, relay::v1::ControlMessage>;

// A node link stream of node "raw" with one subscriber of "orders", welcomed; null on failure.
std::unique_ptr<RawStream> AttachRaw(Cluster& cluster, relay::v1::NodeLink::Stub& stub,
                                     grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  ctx.AddMetadata("authorization", "Bearer " + cluster.NodeToken());
  auto s = stub.Attach(&ctx);
  relay::v1::NodeMessage hello, snapshot;
  hello.set_seq(1);
  hello.mutable_hello()->set_node_id("raw");
  snapshot.set_seq(2);
  auto* c = snapshot.mutable_snapshot()->add_channels();
  c->set_app_id("app-id");
  c->set_channel("orders");
  c->set_subscriptions(1);
  relay::v1::ControlMessage welcome;
  if (!s->Write(hello) || !s->Write(snapshot) || !s->Read(&welcome) || !welcome.has_welcome()) {
    return nullptr;
  }
  return s;
}

// A node that re-attaches while the control plane still holds its previous stream (the node saw
// the link die first: a partition, a hung control plane) keeps what its new attach reported when
// the control plane finishes the old stream.
TEST(Cluster, ReplacedStreamWithdrawsNothing) {
  Cluster cluster(1);
  auto stub = relay::v1::NodeLink::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(cluster.cp().grpc_port()), grpc::InsecureChannelCredentials()));
  auto attach = [&](grpc::ClientContext& ctx) { return AttachRaw(cluster, *stub, ctx); };
  grpc::ClientContext old_ctx, new_ctx;
  auto old_stream = attach(old_ctx);
  ASSERT_TRUE(old_stream);
  auto new_stream = attach(new_ctx);
  ASSERT_TRUE(new_stream);
  relay::v1::ControlMessage m;
  while (old_stream->Read(&m)) {
  }
  EXPECT_EQ(old_stream->Finish().error_code(), grpc::StatusCode::ABORTED);
  // The old stream's end (on the control plane, just after this) must not withdraw the node.
  auto routed = [&] {
    return cluster.cp().cluster().NodesWithInterest("app-id", {"orders"}) ==
           std::vector<std::string>{"raw"};
  };
  EXPECT_FALSE(WaitFor([&] { return !routed(); }, 1s));
  ASSERT_TRUE(cluster.Trigger("orders", "still-routed", "x").ok());
  bool published = false;
  while (!published && new_stream->Read(&m)) published = m.has_publish();
  EXPECT_TRUE(published);
  new_ctx.TryCancel();
}

// A node whose stream breaks without a goodbye may still have its subscribers: until it
// re-attaches, an event for its channels is refused (UNAVAILABLE), not answered OK; other channels
// route. A node that says goodbye is not waited for.
TEST(Cluster, ABrokenNodeBlocksItsChannelsUntilItReattaches) {
  Cluster cluster(1);
  auto stub = relay::v1::NodeLink::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(cluster.cp().grpc_port()), grpc::InsecureChannelCredentials()));
  auto attach = [&](grpc::ClientContext& ctx) { return AttachRaw(cluster, *stub, ctx); };
  auto routed = [&] {
    return cluster.cp().cluster().NodesWithInterest("app-id", {"orders"}).size() == 1;
  };
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(attach(ctx));
    ASSERT_TRUE(routed());
    ctx.TryCancel();  // the stream breaks: no goodbye
  }
  ASSERT_TRUE(WaitFor([&] { return cluster.cp().gate()->detached() == 1; }));
  absl::Status refused = cluster.Trigger("orders", "e", "x");
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(controlplane::RetryAfterSeconds(refused), 1);
  EXPECT_TRUE(cluster.Trigger("elsewhere", "e", "x").ok());
  EXPECT_TRUE(cluster.cp().Readiness().ready);  // only its channels wait, not the cluster

  grpc::ClientContext back_ctx;
  auto back = attach(back_ctx);
  ASSERT_TRUE(back);
  EXPECT_TRUE(cluster.Trigger("orders", "e", "x").ok());
  // Goodbye: the control plane ends the stream, the node is withdrawn and not waited for.
  relay::v1::NodeMessage bye;
  bye.set_seq(3);
  bye.mutable_goodbye();
  ASSERT_TRUE(back->Write(bye));
  relay::v1::ControlMessage m;
  while (back->Read(&m)) {
  }
  EXPECT_TRUE(back->Finish().ok());
  ASSERT_TRUE(WaitFor([&] { return !routed(); }));
  EXPECT_EQ(cluster.cp().gate()->detached(), 0u);
  EXPECT_TRUE(cluster.Trigger("orders", "e", "x").ok());
}

}  // namespace
}  // namespace relay::testutil
