// The walking skeleton: a client on a data plane receives what a backend publishes through the
// control plane, over the real NodeLink contract; with one and with two data planes.
#include <gtest/gtest.h>

#include <regex>

#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

TEST(Skeleton, PublicChannelEventReachesSubscriber) {
  Cluster cluster(1);
  auto c = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7&client=js&version=8.4.0");
  ASSERT_TRUE(c);
  auto first = c->Receive();
  ASSERT_TRUE(first);
  EXPECT_EQ(JsonField(*first, "event"), "pusher:connection_established");
  std::string data = JsonField(*first, "data");
  EXPECT_TRUE(std::regex_match(JsonField(data, "socket_id"), std::regex(R"(\d+\.\d+)")));
  EXPECT_EQ(JsonField(data, "activity_timeout"), "120");
  c->Send(R"({"event":"pusher:subscribe","data":{"auth":"","channel":"orders"}})");
  auto ok = c->ReceiveEvent("pusher_internal:subscription_succeeded");
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok,
            R"({"event":"pusher_internal:subscription_succeeded","channel":"orders","data":"{}"})");
  // subscription_succeeded means the control plane routes the channel here: no retry needed.
  ASSERT_TRUE(cluster.Trigger("orders", "order-shipped", R"({"id":7})").ok());
  auto ev = c->ReceiveEvent("order-shipped");
  ASSERT_TRUE(ev);
  EXPECT_EQ(*ev, R"({"event":"order-shipped","channel":"orders","data":"{\"id\":7}"})");
}

TEST(Skeleton, TwoDataPlanesBothReceiveAndExclusionWorks) {
  Cluster cluster(2);
  auto a = cluster.Client(0);
  auto b = cluster.Client(1);
  auto b2 = cluster.Client(1);
  ASSERT_TRUE(a && b && b2);
  ASSERT_NE(cluster.Subscribe(*a, "orders"), "");
  ASSERT_NE(cluster.Subscribe(*b, "orders"), "");
  ASSERT_NE(cluster.Subscribe(*b2, "orders"), "");
  ASSERT_TRUE(cluster.Trigger("orders", "e1", "one", b->socket_id()).ok());
  EXPECT_TRUE(a->ReceiveEvent("e1"));
  EXPECT_TRUE(b2->ReceiveEvent("e1"));
  ASSERT_TRUE(cluster.Trigger("orders", "e2", "two").ok());
  auto got = b->Receive();  // e1 was excluded for b, so its next frame is e2
  ASSERT_TRUE(got);
  EXPECT_EQ(JsonField(*got, "event"), "e2");
  // Routing by interest: a channel nobody subscribes to sends no command.
  uint64_t before = cluster.cp().api().counters().publish_commands.load();
  ASSERT_TRUE(cluster.Trigger("nobody-here", "e3", "x").ok());
  EXPECT_EQ(cluster.cp().api().counters().publish_commands.load(), before);
}

TEST(Skeleton, UnknownAppIsRefusedWith4001) {
  Cluster cluster(1);
  auto c = WsClient::Connect(cluster.port(), "/app/nope?protocol=7");
  ASSERT_TRUE(c);
  auto f = c->Receive();
  ASSERT_TRUE(f);
  EXPECT_EQ(
      *f,
      R"({"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}})");
  EXPECT_EQ(c->WaitClosed(), 4001);
}

}  // namespace
}  // namespace relay::testutil
