// Per-app limits seen by clients, encrypted channels, and the cluster-wide cache.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "common/json.h"
#include "common/pusher_auth.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;

void SetLimit(Cluster& cluster, const std::string& path, uint32_t value) {
  relay::v1::UpdateAppRequest r;
  r.set_app("app-id");
  auto* l = r.mutable_changes()->mutable_limits();
  if (path == "limits.max_connections") l->set_max_connections(value);
  if (path == "limits.max_presence_members") l->set_max_presence_members(value);
  if (path == "limits.max_presence_user_info_bytes") l->set_max_presence_user_info_bytes(value);
  if (path == "limits.max_event_payload_bytes") l->set_max_event_payload_bytes(value);
  r.add_update_mask(path);
  ASSERT_TRUE(cluster.cp().store().Update(r).ok());
  uint64_t revision = cluster.cp().store().Find("app-id")->revision();
  ASSERT_TRUE(WaitFor([&] {
    auto app = cluster.node(0).apps().ById("app-id");  // null until the welcome
    return app && app->revision() == revision;
  }));
}

TEST(Limits, AppConnectionQuotaRefusesWith4004) {
  Cluster cluster(1);
  SetLimit(cluster, "limits.max_connections", 1);
  auto first = cluster.Client();
  ASSERT_TRUE(first);
  auto second = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7");
  ASSERT_TRUE(second);
  auto err = second->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4004");
  EXPECT_EQ(second->WaitClosed(), 4004);
}

// What a third client sees when the cluster already holds `limit` connections of the app.
void ExpectRefusedWith4004(Cluster& cluster, int node) {
  auto refused = WsClient::Connect(cluster.port(node), "/app/app-key?protocol=7");
  ASSERT_TRUE(refused);
  auto err = refused->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4004") << *err;
  EXPECT_EQ(refused->WaitClosed(), 4004);
}

// Both nodes have been told (through the control plane) that the cluster holds `n` connections.
bool BothNodesSee(Cluster& cluster, uint64_t n) {
  return WaitFor([&] {
    return cluster.node(0).state().ClusterAppConnections("app-id") == n &&
           cluster.node(1).state().ClusterAppConnections("app-id") == n;
  });
}

// Two data planes, limits.max_connections 2, one client on each node: below the limit on each
// node, at it cluster-wide.
class ClusterQuota : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLimit(cluster, "limits.max_connections", 2);
    uint64_t revision = cluster.cp().store().Find("app-id")->revision();
    ASSERT_TRUE(WaitFor([&] {
      auto app = cluster.node(1).apps().ById("app-id");  // null until the welcome
      return app && app->revision() == revision;
    }));
    on0 = cluster.Client(0);
    on1 = cluster.Client(1);
    ASSERT_TRUE(on0 && on1);
    ASSERT_TRUE(BothNodesSee(cluster, 2));
    EXPECT_EQ(cluster.node(0).state().AppConnections("app-id"), 1u);
  }

  Cluster cluster{2};
  std::unique_ptr<WsClient> on0, on1;
};

TEST_F(ClusterQuota, AThirdClientOnEitherNodeIsRefusedWith4004) {
  ExpectRefusedWith4004(cluster, 0);
  ExpectRefusedWith4004(cluster, 1);
  // A connection that leaves node 1 frees the quota on node 0 too.
  on1.reset();
  ASSERT_TRUE(BothNodesSee(cluster, 1));
  auto again = cluster.Client(0);
  ASSERT_TRUE(again);
  ASSERT_TRUE(BothNodesSee(cluster, 2));
  ExpectRefusedWith4004(cluster, 1);
}

TEST_F(ClusterQuota, TotalsAreRebuiltAfterAControlPlaneRestart) {
  cluster.RestartControlPlane();
  ASSERT_TRUE(cluster.WaitAttached(2));
  // The new control plane knows the totals only from the snapshots; node 1's client leaving
  // afterwards reaches node 0 through them.
  ASSERT_TRUE(WaitFor([&] { return cluster.cp().cluster().AppConnections("app-id") == 2; }));
  // Node 0 keeps the old control plane's totals until the new one's first message replaces
  // them, and that one may predate node 1's snapshot (the bounded overshoot in docs/scaling.md):
  // the limit holds again once the new totals have arrived.
  // A probe that is let in is closed and uncounted before the next one, so a refusal is for the
  // two clients of the test.
  ASSERT_TRUE(WaitFor([&] {
    auto c = WsClient::Connect(cluster.port(0), "/app/app-key?protocol=7");
    auto f = c ? c->Receive() : std::nullopt;
    if (f && JsonField(JsonField(*f, "data"), "code") == "4004") return true;
    c.reset();
    return WaitFor([&] { return cluster.cp().cluster().AppConnections("app-id") == 2; }) && false;
  }));
  ExpectRefusedWith4004(cluster, 0);
  on1.reset();
  ASSERT_TRUE(BothNodesSee(cluster, 1));
  EXPECT_TRUE(cluster.Client(0));
}

TEST(Limits, PresenceMemberAndUserInfoLimits) {
  Cluster cluster(1);
  SetLimit(cluster, "limits.max_presence_members", 1);
  SetLimit(cluster, "limits.max_presence_user_info_bytes", 32);
  auto a = cluster.Client();
  auto a2 = cluster.Client();
  auto b = cluster.Client();
  ASSERT_TRUE(a && a2 && b);
  ASSERT_NE(cluster.Subscribe(*a, "presence-full", R"({"user_id":"a"})"), "");
  // The same user again is not a new member: allowed.
  ASSERT_NE(cluster.Subscribe(*a2, "presence-full", R"({"user_id":"a"})"), "");
  auto b2 = cluster.Client();
  ASSERT_TRUE(b2);
  cluster.SendSubscribe(*b2, "presence-full", R"({"user_id":"b"})");
  auto refused = b2->ReceiveEvent("pusher:subscription_error");
  ASSERT_TRUE(refused);
  EXPECT_EQ(JsonField(JsonField(*refused, "data"), "type"), "LimitReached");
  EXPECT_EQ(JsonField(JsonField(*refused, "data"), "status"), "4100");
  std::string big = R"({"user_id":"c","user_info":{"bio":")" + std::string(100, 'x') + "\"}}";
  cluster.SendSubscribe(*b2, "presence-other", big);
  refused = b2->ReceiveEvent("pusher:subscription_error");
  ASSERT_TRUE(refused);
  EXPECT_EQ(JsonField(JsonField(*refused, "data"), "type"), "LimitReached");
}

TEST(Limits, ClientEventPayloadLimitAnswers4301) {
  Cluster cluster(1);
  SetLimit(cluster, "limits.max_event_payload_bytes", 100);
  auto a = cluster.Client();
  ASSERT_TRUE(a);
  ASSERT_NE(cluster.Subscribe(*a, "private-small"), "");
  a->Send(R"({"event":"client-big","channel":"private-small","data":")" + std::string(200, 'x') +
          "\"}");
  auto err = a->ReceiveEvent("pusher:error");
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4301");
  a->Send(R"({"event":"pusher:ping","data":{}})");
  EXPECT_TRUE(a->ReceiveEvent("pusher:pong"));
}

TEST(Limits, EncryptedChannelsRelayOpaqueBytesAndRefuseClientEvents) {
  Cluster cluster(1);
  auto a = cluster.Client();
  auto b = cluster.Client();
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "private-encrypted-box"), "");
  ASSERT_NE(cluster.Subscribe(*b, "private-encrypted-box"), "");
  std::string sealed = R"({"nonce":"bm9uY2Vub25jZW5vbmNlbm9uY2Vub25j","ciphertext":"c2VjcmV0"})";
  ASSERT_TRUE(cluster.Trigger("private-encrypted-box", "msg", sealed).ok());
  auto got = a->ReceiveEvent("msg");
  ASSERT_TRUE(got);
  EXPECT_EQ(JsonField(*got, "data"), sealed);
  a->Send(R"({"event":"client-x","channel":"private-encrypted-box","data":{}})");
  EXPECT_TRUE(a->ReceiveEvent("pusher:error"));
  // The API refuses an encrypted channel together with others.
  relay::v1::TriggerRequest r;
  r.add_channels("private-encrypted-box");
  r.add_channels("other");
  r.set_name("e");
  r.set_data("x");
  EXPECT_EQ(cluster.cp().api().Trigger(cluster.app(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Limits, CacheIsClusterWide) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.Trigger("cache-global", "tick", "42").ok());  // nobody subscribed yet
  auto on0 = cluster.Client(0);
  auto on1 = cluster.Client(1);
  ASSERT_TRUE(on0 && on1);
  for (auto* c : {on0.get(), on1.get()}) {
    ASSERT_NE(cluster.Subscribe(*c, "cache-global"), "");
    auto cached = c->Receive();
    ASSERT_TRUE(cached);
    EXPECT_EQ(*cached, R"({"event":"tick","channel":"cache-global","data":"42"})");
  }
}

}  // namespace
}  // namespace relay::testutil

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;

// The subscription_error a connection gets for `channel`: (type, status), or ("", "").
std::pair<std::string, std::string> SubscriptionErrorFor(WsClient& c, const std::string& channel) {
  auto err = c.ReceiveEvent("pusher:subscription_error", 5s, channel);
  if (!err) return {"", ""};
  std::string data = JsonField(*err, "data");
  return {JsonField(data, "type"), JsonField(data, "status")};
}

TEST(ConnectionLimits, SubscriptionsPerConnectionAreCappedAndTheConnectionStaysOpen) {
  dataplane::DataPlaneOptions o;
  o.max_subscriptions_per_connection = 3;
  Cluster cluster(1, o);
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  for (std::string ch : {"a", "b", "presence-c"}) {
    ASSERT_NE(cluster.Subscribe(*c, ch, ch == "presence-c" ? R"({"user_id":"u"})" : ""), "") << ch;
  }
  cluster.SendSubscribe(*c, "d");
  EXPECT_EQ(SubscriptionErrorFor(*c, "d"),
            std::make_pair(std::string("LimitReached"), std::string("4100")));
  // Subscribing again to a channel it holds is not a new subscription.
  EXPECT_NE(cluster.Subscribe(*c, "a"), "");
  // The connection still works: after an unsubscribe the refused channel subscribes.
  c->Send(R"({"event":"pusher:unsubscribe","data":{"channel":"b"}})");
  ASSERT_NE(cluster.Subscribe(*c, "d"), "");
  ASSERT_TRUE(cluster.Trigger("d", "e", "{}").ok());
  EXPECT_TRUE(c->ReceiveEvent("e", 5s, "d"));
}

TEST(ConnectionLimits, SubscribeRateIsLimitedPerConnection) {
  dataplane::DataPlaneOptions o;
  o.subscribe_rate = 1;
  o.subscribe_burst = 3;
  Cluster cluster(1, o);
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  for (std::string ch : {"r1", "r2", "r3", "r4"}) cluster.SendSubscribe(*c, ch);
  EXPECT_EQ(SubscriptionErrorFor(*c, "r4"),
            std::make_pair(std::string("LimitReached"), std::string("4301")));
  // The bucket refills at one a second: r4 subscribes on a later try, and the connection still
  // receives on the channels within the burst.
  ASSERT_TRUE(WaitFor(
      [&] {
        cluster.SendSubscribe(*c, "r4");
        for (int frames = 0; frames < 10; ++frames) {
          auto f = c->Receive(5s);
          if (!f) return false;
          if (JsonField(*f, "channel") != "r4") continue;
          return JsonField(*f, "event") == "pusher_internal:subscription_succeeded";
        }
        return false;
      },
      10s));
  ASSERT_TRUE(cluster.Trigger("r3", "e", "{}").ok());
  EXPECT_TRUE(c->ReceiveEvent("e", 5s, "r3"));
}

TEST(ConnectionLimits, ConnectionsPerAddressAreCappedWhenConfigured) {
  dataplane::DataPlaneOptions o;
  o.max_connections_per_ip = 2;
  Cluster cluster(1, o);
  auto first = cluster.Client();
  auto second = cluster.Client();
  ASSERT_TRUE(first && second);
  auto third = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7");
  ASSERT_TRUE(third);
  auto err = third->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4100") << *err;
  EXPECT_EQ(third->WaitClosed(), 4100);
  // A connection that leaves frees its slot.
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return cluster.node(0).counters().connections.load() == 1; }));
  EXPECT_TRUE(cluster.Client());
}

// A presence subscribe without channel_data joins as the signed-in user: its user_info counts
// against the same limit as channel_data's.
TEST(ConnectionLimits, SignedInUserInfoIsBoundedForPresenceLikeChannelData) {
  Cluster cluster(1);
  SetLimit(cluster, "limits.max_presence_user_info_bytes", 32);
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  std::string user_data = R"({"id":"big","user_info":{"bio":")" + std::string(100, 'x') + "\"}}";
  common::JsonWriter w;
  w.BeginObject().Key("event").String("pusher:signin").Key("data").BeginObject();
  w.Key("auth").String(common::SignToken("app-key", "app-secret",
                                         common::UserStringToSign(c->socket_id(), user_data)));
  w.Key("user_data").String(user_data).EndObject().EndObject();
  c->Send(w.str());
  ASSERT_TRUE(c->ReceiveEvent("pusher:signin_success"));
  cluster.SendSubscribe(*c, "presence-signed");
  EXPECT_EQ(SubscriptionErrorFor(*c, "presence-signed"),
            std::make_pair(std::string("LimitReached"), std::string("4100")));
}

TEST(ConnectionLimits, CapacityDefaultsToTheFileLimitMinusAReserve) {
  Cluster cluster(1);
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  uint64_t capacity = cluster.node(0).options().capacity;
  EXPECT_EQ(capacity, dataplane::DefaultCapacity());
  EXPECT_GT(capacity, 0u);
  EXPECT_LE(capacity + 64, rl.rlim_cur);
}

}  // namespace
}  // namespace relay::testutil
