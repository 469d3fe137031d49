// Pusher protocol 7 behaviour of the data plane, driven by raw WebSocket frames.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/pusher_auth.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;

void c_unsubscribe(WsClient& c) {
  c.Send(R"({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}})");
}

class Protocol : public ::testing::Test {
 protected:
  Protocol() : cluster(1, Options()) {}
  static dataplane::DataPlaneOptions Options() {
    dataplane::DataPlaneOptions o;
    o.max_frame_bytes = 4096;
    return o;
  }
  void SetApp(const std::string& path, bool on) {
    relay::v1::UpdateAppRequest r;
    r.set_app("app-id");
    auto* f = r.mutable_changes()->mutable_features();
    if (path == "features.subscription_count") f->set_subscription_count(on);
    if (path == "features.client_events") f->set_client_events(on);
    if (path == "enabled") r.mutable_changes()->set_enabled(on);
    r.add_update_mask(path);
    ASSERT_TRUE(cluster.cp().store().Update(r).ok());
  }
  Cluster cluster;
};

TEST_F(Protocol, RefusalsCloseWithTheirCode) {
  for (auto [target, code] :
       std::vector<std::pair<std::string, int>>{{"/foo", 4005},
                                                {"/app/app-key?protocol=3", 4007},
                                                {"/app/app-key?protocol=abc", 4007}}) {
    auto c = WsClient::Connect(cluster.port(), target);
    ASSERT_TRUE(c) << target;
    auto f = c->Receive();
    ASSERT_TRUE(f) << target;
    EXPECT_EQ(JsonField(JsonField(*f, "data"), "code"), std::to_string(code)) << target;
    EXPECT_EQ(c->WaitClosed(), code) << target;
  }
}

TEST_F(Protocol, PingInvalidJsonBinaryAndUnknownEvents) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  c->Send(R"({"event":"pusher:ping","data":{}})");
  auto pong = c->Receive();
  ASSERT_TRUE(pong);
  EXPECT_EQ(*pong, R"({"event":"pusher:pong","data":"{}"})");
  c->Send("{not json");
  auto err = c->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(*err, "event"), "pusher:error");
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "null");
  c->SendBinary(std::string("\x00\x01", 2));
  err = c->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(*err, "event"), "pusher:error");
  c->Send(R"({"event":"pusher:unknown_thing","data":{}})");  // ignored
  c->Send(R"({"data":{}})");                                 // no event: error
  err = c->Receive();
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(*err, "event"), "pusher:error");
  c->Send(R"({"event":"pusher:ping","data":{}})");  // still open and serving
  EXPECT_TRUE(c->ReceiveEvent("pusher:pong"));
}

TEST_F(Protocol, OversizedFrameClosesWith1009) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  c->Send(R"({"event":"client-x","channel":"private-a","data":")" + std::string(8000, 'x') + "\"}");
  EXPECT_EQ(c->WaitClosed(), 1009);
  auto other = cluster.Client();  // the process is unharmed
  ASSERT_TRUE(other);
}

TEST_F(Protocol, ChannelNamesAndPrivateAuth) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  c->Send(R"({"event":"pusher:subscribe","data":{"channel":"bad name"}})");
  auto e = c->ReceiveEvent("pusher:subscription_error");
  ASSERT_TRUE(e);
  EXPECT_EQ(JsonField(JsonField(*e, "data"), "type"), "InvalidChannel");
  c->Send(R"({"event":"pusher:subscribe","data":{"channel":")" + std::string(165, 'a') + "\"}}");
  EXPECT_TRUE(c->ReceiveEvent("pusher:subscription_error"));
  c->Send(R"({"event":"pusher:subscribe","data":{"channel":"private-a","auth":"app-key:00"}})");
  e = c->ReceiveEvent("pusher:subscription_error");
  ASSERT_TRUE(e);
  EXPECT_EQ(JsonField(JsonField(*e, "data"), "status"), "401");
  EXPECT_NE(cluster.Subscribe(*c, "private-a"), "");
  // Idempotent re-subscribe answers again.
  EXPECT_NE(cluster.Subscribe(*c, "private-a"), "");
  // Older clients send data as a JSON string.
  c->Send(R"({"event":"pusher:subscribe","data":"{\"channel\":\"str-data\"}"})");
  EXPECT_TRUE(c->ReceiveEvent("pusher_internal:subscription_succeeded", 5s, "str-data"));
}

TEST_F(Protocol, PresenceMembersAndRoster) {
  auto a = cluster.Client();
  auto b = cluster.Client();
  auto b2 = cluster.Client();
  ASSERT_TRUE(a && b && b2);
  ASSERT_NE(cluster.Subscribe(*a, "presence-room", R"({"user_id":"u1","user_info":{"n":"A"}})"),
            "");
  std::string ok = cluster.Subscribe(*b, "presence-room", R"({"user_id":2})");
  ASSERT_NE(ok, "");
  std::string presence = JsonField(JsonField(ok, "data"), "presence");
  EXPECT_EQ(JsonField(presence, "count"), "2");
  EXPECT_EQ(JsonField(presence, "hash"), R"({"2":{},"u1":{"n":"A"}})");
  auto added = a->ReceiveEvent("pusher_internal:member_added");
  ASSERT_TRUE(added);
  EXPECT_EQ(JsonField(*added, "data"), R"({"user_id":"2","user_info":{}})");
  // The same user on a second socket: no member_added.
  ASSERT_NE(cluster.Subscribe(*b2, "presence-room", R"({"user_id":2})"), "");
  c_unsubscribe(*b);   // one of user 2's sockets leaves: nothing
  c_unsubscribe(*b2);  // the last one: member_removed once
  auto removed = a->Receive();
  ASSERT_TRUE(removed);
  EXPECT_EQ(JsonField(*removed, "event"), "pusher_internal:member_removed");
  EXPECT_EQ(JsonField(*removed, "data"), R"({"user_id":"2"})");
  // Bad channel_data is refused without closing.
  b->Send(R"({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":")" +
          common::SignToken("app-key", "app-secret",
                            common::ChannelStringToSign(b->socket_id(), "presence-x", "[]")) +
          R"(","channel_data":"[]"}})");
  EXPECT_TRUE(b->ReceiveEvent("pusher:subscription_error"));
}

TEST_F(Protocol, ClientEventsRules) {
  auto a = cluster.Client();
  auto b = cluster.Client();
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "private-chat"), "");
  ASSERT_NE(cluster.Subscribe(*b, "private-chat"), "");
  a->Send(R"({"event":"client-typing","channel":"private-chat","data":{"x":1}})");
  auto got = b->ReceiveEvent("client-typing");
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, R"({"event":"client-typing","channel":"private-chat","data":{"x":1}})");
  // Public channels and unsubscribed channels refuse them.
  ASSERT_NE(cluster.Subscribe(*a, "public"), "");
  a->Send(R"({"event":"client-x","channel":"public","data":{}})");
  EXPECT_TRUE(a->ReceiveEvent("pusher:error"));
  a->Send(R"({"event":"client-x","channel":"private-other","data":{}})");
  EXPECT_TRUE(a->ReceiveEvent("pusher:error"));
  // Never echoed to the sender; the rate limit answers 4301 and keeps the connection.
  for (int i = 0; i < 12; ++i) {
    a->Send(R"({"event":"client-burst","channel":"private-chat","data":{}})");
  }
  auto limited = a->ReceiveEvent("pusher:error");
  ASSERT_TRUE(limited);
  EXPECT_EQ(JsonField(JsonField(*limited, "data"), "code"), "4301");
  a->Send(R"({"event":"pusher:ping","data":{}})");
  EXPECT_TRUE(a->ReceiveEvent("pusher:pong"));
  // Disabled by the app: refused.
  SetApp("features.client_events", false);
  ASSERT_TRUE(WaitFor([&] {
    auto app = cluster.node(0).apps().ByKey("app-key");  // null until the welcome
    return app && !app->features().client_events();
  }));
  b->Send(R"({"event":"client-typing","channel":"private-chat","data":{}})");
  EXPECT_TRUE(b->ReceiveEvent("pusher:error"));
}

TEST_F(Protocol, PresenceClientEventsCarryUserId) {
  auto a = cluster.Client();
  auto b = cluster.Client();
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "presence-c", R"({"user_id":"ua"})"), "");
  ASSERT_NE(cluster.Subscribe(*b, "presence-c", R"({"user_id":"ub"})"), "");
  a->Send(R"({"event":"client-hi","channel":"presence-c","data":"x"})");
  auto got = b->ReceiveEvent("client-hi");
  ASSERT_TRUE(got);
  EXPECT_EQ(JsonField(*got, "user_id"), "ua");
}

TEST_F(Protocol, SigninSendToUserAndTerminate) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  std::string user_data = R"({"id":"u-1","user_info":{"name":"Ada"}})";
  std::string auth = common::SignToken("app-key", "app-secret",
                                       common::UserStringToSign(c->socket_id(), user_data));
  common::JsonWriter w;
  w.BeginObject().Key("event").String("pusher:signin").Key("data").BeginObject();
  w.Key("auth").String(auth).Key("user_data").String(user_data).EndObject().EndObject();
  c->Send(w.str());
  auto ok = c->ReceiveEvent("pusher:signin_success");
  ASSERT_TRUE(ok);
  EXPECT_EQ(JsonField(JsonField(*ok, "data"), "user_data"), user_data);
  // Only the signed-in user may subscribe to its own channel.
  c->Send(R"({"event":"pusher:subscribe","data":{"channel":"#server-to-user-other"}})");
  EXPECT_TRUE(c->ReceiveEvent("pusher:subscription_error"));
  ASSERT_TRUE(
      WaitFor([&] { return !cluster.cp().cluster().NodesWithUser("app-id", "u-1").empty(); }));
  ASSERT_TRUE(cluster.Trigger("#server-to-user-u-1", "note", "hi").ok());
  auto note = c->ReceiveEvent("note");
  ASSERT_TRUE(note);
  EXPECT_EQ(JsonField(*note, "channel"), "#server-to-user-u-1");
  relay::v1::TerminateUserConnectionsRequest t;
  t.set_user_id("u-1");
  ASSERT_TRUE(cluster.cp().api().TerminateUserConnections(cluster.app(), t).ok());
  EXPECT_EQ(c->WaitClosed(), 4009);
}

TEST_F(Protocol, BadSigninClosesWith4009) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  c->Send(
      R"({"event":"pusher:signin","data":{"auth":"app-key:bad","user_data":"{\"id\":\"x\"}"}})");
  EXPECT_EQ(c->WaitClosed(), 4009);
}

// Older clients send `data` as a JSON string. The user_data echoed back, and the presence
// member's info, are the ones that were signed (the nested JSON is parsed a second time while
// the first parse's strings are still in use).
TEST_F(Protocol, SigninAndPresenceWithDataAsAStringKeepTheirJson) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  std::string user_data = R"({"id":"u-2","user_info":{"name":"Grace"},"watchlist":["u-3"]})";
  common::JsonWriter inner;
  inner.BeginObject().Key("auth").String(common::SignToken(
      "app-key", "app-secret", common::UserStringToSign(c->socket_id(), user_data)));
  inner.Key("user_data").String(user_data).EndObject();
  common::JsonWriter w;
  w.BeginObject().Key("event").String("pusher:signin").Key("data").String(inner.str()).EndObject();
  c->Send(w.str());
  auto ok = c->ReceiveEvent("pusher:signin_success");
  ASSERT_TRUE(ok);
  EXPECT_EQ(JsonField(JsonField(*ok, "data"), "user_data"), user_data);

  std::string channel_data = R"({"user_id":"m-1","user_info":{"name":"Ada Lovelace"}})";
  common::JsonWriter sub;
  sub.BeginObject().Key("channel").String("presence-s").Key("channel_data").String(channel_data);
  sub.Key("auth").String(
      common::SignToken("app-key", "app-secret",
                        common::ChannelStringToSign(c->socket_id(), "presence-s", channel_data)));
  sub.EndObject();
  common::JsonWriter frame;
  frame.BeginObject().Key("event").String("pusher:subscribe").Key("data").String(sub.str());
  frame.EndObject();
  c->Send(frame.str());
  auto joined = c->ReceiveEvent("pusher_internal:subscription_succeeded", 5s, "presence-s");
  ASSERT_TRUE(joined);
  EXPECT_NE(joined->find(R"(\"m-1\":{\"name\":\"Ada Lovelace\"})"), std::string::npos) << *joined;
}

TEST_F(Protocol, CacheChannelMissThenHit) {
  auto a = cluster.Client();
  ASSERT_TRUE(a);
  ASSERT_NE(cluster.Subscribe(*a, "cache-prices"), "");
  auto miss = a->Receive();
  ASSERT_TRUE(miss);
  EXPECT_EQ(*miss, R"({"event":"pusher:cache_miss","channel":"cache-prices"})");
  ASSERT_TRUE(cluster.Trigger("cache-prices", "tick", R"({"p":1})").ok());
  ASSERT_TRUE(a->ReceiveEvent("tick"));
  auto b = cluster.Client();
  ASSERT_TRUE(b);
  ASSERT_NE(cluster.Subscribe(*b, "cache-prices"), "");
  auto cached = b->Receive();
  ASSERT_TRUE(cached);
  EXPECT_EQ(*cached, R"({"event":"tick","channel":"cache-prices","data":"{\"p\":1}"})");
}

TEST_F(Protocol, SubscriptionCountWhenEnabled) {
  SetApp("features.subscription_count", true);
  ASSERT_TRUE(WaitFor([&] {
    auto app = cluster.node(0).apps().ByKey("app-key");  // null until the welcome
    return app && app->features().subscription_count();
  }));
  auto a = cluster.Client();
  auto b = cluster.Client();
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "counted"), "");
  ASSERT_NE(cluster.Subscribe(*b, "counted"), "");
  bool saw_two = false;
  for (int i = 0; i < 3 && !saw_two; ++i) {
    auto f = a->ReceiveEvent("pusher_internal:subscription_count");
    ASSERT_TRUE(f);
    saw_two = JsonField(*f, "data") == R"({"subscription_count":2})";
  }
  EXPECT_TRUE(saw_two);
}

TEST_F(Protocol, DisablingTheAppClosesWith4003AndRefusesNewOnes) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  SetApp("enabled", false);
  EXPECT_EQ(c->WaitClosed(), 4003);
  auto d = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->WaitClosed(), 4003);
}

TEST_F(Protocol, DrainClosesWith4200) {
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  cluster.node(0).Drain(200);
  EXPECT_EQ(c->WaitClosed(), 4200);
}

// A client that upgrades, subscribes and then never reads (raw socket, tiny receive buffer).
int SlowClient(uint16_t port, const std::string& channel) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  std::string req =
      "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  ::send(fd, req.data(), req.size(), 0);
  std::string payload =
      R"({"event":"pusher:subscribe","data":{"auth":"","channel":")" + channel + "\"}}";
  std::string frame;
  frame.push_back(static_cast<char>(0x81));
  frame.push_back(static_cast<char>(0x80 | payload.size()));
  const char mask[4] = {1, 2, 3, 4};
  frame.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i) frame.push_back(payload[i] ^ mask[i % 4]);
  ::send(fd, frame.data(), frame.size(), 0);
  return fd;
}

TEST_F(Protocol, SlowConsumerIsCutOthersKeepReceiving) {
  auto fast = cluster.Client();
  ASSERT_TRUE(fast);
  ASSERT_NE(cluster.Subscribe(*fast, "firehose"), "");
  int slow = SlowClient(cluster.port(), "firehose");
  ASSERT_GE(slow, 0);
  ASSERT_TRUE(WaitFor([&] {
    return cluster.cp().cluster().GetChannel("app-id", "firehose").subscription_count() == 2;
  }));
  // 9 KB events until the slow socket's queue passes its 4 MiB bound (bounded loop).
  std::string big(9000, 'x');
  auto dropped = [&] { return cluster.node(0).slow_consumers_cut(); };
  uint64_t before = dropped();
  for (int i = 0; i < 3000 && dropped() == before; ++i) {
    ASSERT_TRUE(cluster.Trigger("firehose", "big", big).ok());
    if (i % 100 == 99) WaitFor([&] { return dropped() > before; }, 50ms);
  }
  EXPECT_TRUE(WaitFor([&] { return dropped() > before; }));
  // /metrics tells why it closed, and its write queue no longer counts.
  EXPECT_TRUE(WaitFor([&] {
    common::MetricsWriter w;
    cluster.node(0).WriteMetrics(w);
    return w.text().find(
               "relay_connections_closed_total{reason=\"slow_consumer\",code=\"none\"} 1\n") !=
           std::string::npos;
  }));
  ASSERT_TRUE(cluster.Trigger("firehose", "last", "x").ok());
  EXPECT_TRUE(fast->ReceiveEvent("last", 30s));
  ::close(slow);
}

}  // namespace
}  // namespace relay::testutil
