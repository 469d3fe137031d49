// Cluster behaviour with several data planes: presence across nodes, client events across nodes,
// node death, and a control plane restart that drops no client.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace relay::testutil
