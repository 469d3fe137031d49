// Connection lifecycle rules that need their own data plane settings: inactivity pings and
// 4201, capacity 4100, version 4006, the authorized-connections timeout, the watchlist, and
// permessage-deflate when enabled.
#include <gtest/gtest.h>

#include "common/json.h"
#include "common/pusher_auth.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using namespace std::chrono_literals;

std::string Signin(WsClient& c, const std::string& user_data) {
  std::string auth = common::SignToken("app-key", "app-secret",
                                       common::UserStringToSign(c.socket_id(), user_data));
  common::JsonWriter w;
  w.BeginObject().Key("event").String("pusher:signin").Key("data").BeginObject();
  w.Key("auth").String(auth).Key("user_data").String(user_data).EndObject().EndObject();
  return w.Take();
}

TEST(Lifecycle, ServerPingsAfterInactivityAndClosesWith4201) {
  dataplane::DataPlaneOptions o;
  o.activity_timeout_seconds = 1;
  o.pong_timeout_seconds = 1;
  Cluster cluster(1, o);
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  auto ping = c->ReceiveEvent("pusher:ping", 5s);
  ASSERT_TRUE(ping);
  // Answering keeps it open: the next ping comes, not a close.
  c->Send(R"({"event":"pusher:pong","data":{}})");
  ASSERT_TRUE(c->ReceiveEvent("pusher:ping", 5s));
  auto err = c->ReceiveEvent("pusher:error", 5s);  // no pong this time
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4201");
  EXPECT_EQ(c->WaitClosed(), 4201);
}

TEST(Lifecycle, CapacityAndVersionRefusals) {
  dataplane::DataPlaneOptions o;
  o.capacity = 1;
  Cluster cluster(1, o);
  auto first = cluster.Client();
  ASSERT_TRUE(first);
  auto second = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->WaitClosed(), 4100);
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return cluster.node(0).counters().connections.load() == 0; }));
  auto bad = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7&version=%3Cscript%3E");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->WaitClosed(), 4006);
}

TEST(Lifecycle, UnauthorizedConnectionsAreClosedWhenTheAppRequiresIt) {
  Cluster cluster(1);
  relay::v1::UpdateAppRequest r;
  r.set_app("app-id");
  r.mutable_changes()->mutable_features()->set_require_user_authentication(true);
  r.mutable_changes()->mutable_features()->set_user_authentication_timeout_seconds(1);
  r.add_update_mask("features.require_user_authentication");
  r.add_update_mask("features.user_authentication_timeout_seconds");
  ASSERT_TRUE(cluster.cp().store().Update(r).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto app = cluster.node(0).apps().ByKey("app-key");  // null until the welcome
    return app && app->features().require_user_authentication();
  }));
  auto idle = cluster.Client();
  auto signed_in = cluster.Client();
  ASSERT_TRUE(idle && signed_in);
  signed_in->Send(Signin(*signed_in, R"({"id":"u1"})"));
  ASSERT_TRUE(signed_in->ReceiveEvent("pusher:signin_success"));
  EXPECT_EQ(idle->WaitClosed(5s), 4009);
  signed_in->Send(R"({"event":"pusher:ping","data":{}})");
  EXPECT_TRUE(signed_in->ReceiveEvent("pusher:pong"));
}

TEST(Lifecycle, WatchlistOnlineAndOffline) {
  Cluster cluster(2);
  auto watcher = cluster.Client(0);
  ASSERT_TRUE(watcher);
  watcher->Send(Signin(*watcher, R"({"id":"w","watchlist":["friend"]})"));
  ASSERT_TRUE(watcher->ReceiveEvent("pusher:signin_success"));
  ASSERT_TRUE(
      WaitFor([&] { return !cluster.cp().cluster().NodesWithUser("app-id", "w").empty(); }));
  auto friend_ = cluster.Client(1);  // on the other node
  ASSERT_TRUE(friend_);
  friend_->Send(Signin(*friend_, R"({"id":"friend"})"));
  auto online = watcher->ReceiveEvent("pusher_internal:watchlist_events");
  ASSERT_TRUE(online);
  EXPECT_EQ(JsonField(*online, "data"), R"({"events":[{"name":"online","user_ids":["friend"]}]})");
  friend_.reset();
  auto offline = watcher->ReceiveEvent("pusher_internal:watchlist_events");
  ASSERT_TRUE(offline);
  EXPECT_EQ(JsonField(*offline, "data"),
            R"({"events":[{"name":"offline","user_ids":["friend"]}]})");
}

TEST(Lifecycle, WatchlistOverLimitKeepsFirstHundred) {
  Cluster cluster(1);
  auto c = cluster.Client();
  ASSERT_TRUE(c);
  std::string list;
  for (int i = 0; i < 101; ++i)
    list += (i ? "," : "") + std::string("\"u") + std::to_string(i) + "\"";
  c->Send(Signin(*c, R"({"id":"big","watchlist":[)" + list + "]}"));
  ASSERT_TRUE(c->ReceiveEvent("pusher:signin_success"));
  auto err = c->ReceiveEvent("pusher:error");
  ASSERT_TRUE(err);
  EXPECT_EQ(JsonField(JsonField(*err, "data"), "code"), "4302");
}

TEST(Lifecycle, PermessageDeflateWhenEnabled) {
  dataplane::DataPlaneOptions o;
  o.permessage_deflate = true;
  Cluster cluster(1, o);
  auto c = WsClient::Connect(cluster.port(), "/app/app-key?protocol=7", /*deflate=*/true);
  ASSERT_TRUE(c && c->Established());
  EXPECT_TRUE(c->deflate_negotiated());
  ASSERT_NE(cluster.Subscribe(*c, "zipped"), "");
  ASSERT_TRUE(cluster.Trigger("zipped", "e", std::string(2000, 'a')).ok());
  auto ev = c->ReceiveEvent("e");
  ASSERT_TRUE(ev);
  EXPECT_EQ(JsonField(*ev, "data"), std::string(2000, 'a'));
}

}  // namespace
}  // namespace relay::testutil
