// What the control plane accepts from a data plane (node_validation.h): every rule broken gives
// INVALID_ARGUMENT, whatever the message kind; well-formed messages pass.
#include "controlplane/node_validation.h"

#include <gtest/gtest.h>

#include <string>

namespace relay::controlplane {
namespace {

using relay::v1::NodeMessage;

const NodeLimits kLimits;

void ExpectInvalid(const NodeMessage& msg, const char* why) {
  absl::Status st = ValidateNodeMessage(msg, kLimits);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << why << ": " << st;
}

NodeMessage Hello(const std::string& node_id) {
  NodeMessage m;
  m.mutable_hello()->set_node_id(node_id);
  m.mutable_hello()->set_address("10.0.0.1:8080");
  return m;
}

NodeMessage ClientEvent() {
  NodeMessage m;
  auto* e = m.mutable_client_event();
  e->set_app_id("app-1");
  e->set_channel("private-room");
  e->set_event("client-typing");
  e->set_data_json(R"({"who":"ada"})");
  e->set_socket_id("123.456");
  return m;
}

NodeMessage PresenceJoin() {
  NodeMessage m;
  auto* s = m.mutable_subscribe();
  s->set_request_id(1);
  s->set_app_id("app-1");
  s->set_channel("presence-room");
  s->set_socket_id("123.456");
  s->mutable_member()->set_user_id("ada");
  s->mutable_member()->set_user_info_json(R"({"name":"Ada"})");
  return m;
}

NodeMessage Snapshot() {
  NodeMessage m;
  auto* s = m.mutable_snapshot();
  auto* c = s->add_channels();
  c->set_app_id("app-1");
  c->set_channel("news");
  c->set_subscriptions(3);
  auto* p = s->add_presence();
  p->set_app_id("app-1");
  p->set_channel("presence-room");
  p->set_user_id("ada");
  p->set_user_info_json("{}");
  p->set_socket_id("1.2");
  auto* u = s->add_users();
  u->set_app_id("app-1");
  u->set_user_id("ada");
  u->set_socket_id("1.2");
  u->add_watchlist("bob");
  (*s->mutable_app_connections())["app-1"] = 1;
  return m;
}

TEST(NodeValidation, WellFormedMessagesPass) {
  EXPECT_TRUE(ValidateNodeMessage(Hello("edge-1.eu:a_b"), kLimits).ok());
  EXPECT_TRUE(ValidateNodeMessage(ClientEvent(), kLimits).ok());
  EXPECT_TRUE(ValidateNodeMessage(PresenceJoin(), kLimits).ok());
  EXPECT_TRUE(ValidateNodeMessage(Snapshot(), kLimits).ok());
  NodeMessage empty;  // seq/ack only
  EXPECT_TRUE(ValidateNodeMessage(empty, kLimits).ok());
  NodeMessage heartbeat;
  heartbeat.mutable_heartbeat();
  EXPECT_TRUE(ValidateNodeMessage(heartbeat, kLimits).ok());
  NodeMessage cache;
  cache.mutable_subscribe()->set_app_id("app-1");
  cache.mutable_subscribe()->set_channel("cache-prices");
  cache.mutable_subscribe()->set_socket_id("1.2");
  EXPECT_TRUE(ValidateNodeMessage(cache, kLimits).ok());
}

TEST(NodeValidation, NodeIds) {
  EXPECT_TRUE(IsValidNodeId("a", 128));
  EXPECT_TRUE(IsValidNodeId(std::string(128, 'a'), 128));
  EXPECT_FALSE(IsValidNodeId(std::string(129, 'a'), 128));
  EXPECT_FALSE(IsValidNodeId("", 128));
  EXPECT_FALSE(IsValidNodeId("a b", 128));
  EXPECT_FALSE(IsValidNodeId("a/b", 128));
  ExpectInvalid(Hello(""), "empty node id");
  ExpectInvalid(Hello(std::string(129, 'n')), "node id too long");
  ExpectInvalid(Hello("node\n1"), "node id with a newline");
  NodeMessage m = Hello("n1");
  m.mutable_hello()->set_address(std::string(257, 'a'));
  ExpectInvalid(m, "address too long");
  m = Hello("n1");
  m.mutable_hello()->set_version(std::string(257, 'v'));
  ExpectInvalid(m, "version too long");
}

TEST(NodeValidation, ClientEventsBreakingTheRulesAreRefused) {
  auto with = [](auto change) {
    NodeMessage m = ClientEvent();
    change(m.mutable_client_event());
    return m;
  };
  using E = relay::v1::ClientEventUp;
  ExpectInvalid(with([](E* e) { e->set_app_id("bad app"); }), "app id");
  ExpectInvalid(with([](E* e) { e->set_app_id("a:b"); }), "':' is for node ids only");
  ExpectInvalid(with([](E* e) { e->set_channel("public-room"); }), "public channel");
  ExpectInvalid(with([](E* e) { e->set_channel("private-a b"); }), "channel name");
  ExpectInvalid(with([](E* e) { e->set_event("typing"); }), "name without client-");
  ExpectInvalid(with([](E* e) { e->set_event("client-" + std::string(194, 'x')); }),
                "name over 200 characters");
  ExpectInvalid(with([](E* e) { e->set_data_json("{not json"); }), "data not JSON");
  ExpectInvalid(with([](E* e) { e->set_socket_id("nope"); }), "socket id");
  ExpectInvalid(with([](E* e) { e->set_user_id("ada"); }), "user id on a private channel");
  ExpectInvalid(with([](E* e) { e->set_channel("presence-room"); }),
                "no user id on a presence channel");
  EXPECT_TRUE(ValidateNodeMessage(with([](E* e) {
                                    e->set_channel("presence-room");
                                    e->set_user_id("ada");
                                  }),
                                  kLimits)
                  .ok());
  // 200 characters exactly is fine.
  EXPECT_TRUE(ValidateNodeMessage(
                  with([](E* e) { e->set_event("client-" + std::string(193, 'x')); }), kLimits)
                  .ok());

  NodeLimits small;
  small.max_event_data_bytes = 8;
  EXPECT_EQ(ValidateNodeMessage(ClientEvent(), small).code(), absl::StatusCode::kInvalidArgument)
      << "data over the backstop";
}

TEST(NodeValidation, SubscribeRequests) {
  auto with = [](auto change) {
    NodeMessage m = PresenceJoin();
    change(m.mutable_subscribe());
    return m;
  };
  using S = relay::v1::SubscribeRequest;
  ExpectInvalid(with([](S* s) { s->clear_member(); }), "presence without a member");
  ExpectInvalid(with([](S* s) { s->set_channel("cache-x"); }), "member on a non-presence channel");
  ExpectInvalid(with([](S* s) {
                  s->set_channel("private-x");
                  s->clear_member();
                }),
                "private subscriptions are the node's to decide");
  ExpectInvalid(with([](S* s) { s->mutable_member()->set_user_id(""); }), "empty user id");
  ExpectInvalid(with([](S* s) { s->mutable_member()->set_user_id(std::string(129, 'u')); }),
                "user id too long");
  ExpectInvalid(with([](S* s) { s->mutable_member()->set_user_info_json("[1,"); }),
                "user_info not JSON");
  ExpectInvalid(with([](S* s) { s->set_socket_id(""); }), "socket id");
  NodeLimits small;
  small.max_user_info_bytes = 4;
  EXPECT_EQ(ValidateNodeMessage(PresenceJoin(), small).code(), absl::StatusCode::kInvalidArgument)
      << "user_info over the backstop";
}

TEST(NodeValidation, SnapshotsAndDeltas) {
  auto snap = [](auto change) {
    NodeMessage m = Snapshot();
    change(m.mutable_snapshot());
    return m;
  };
  using N = relay::v1::NodeSnapshot;
  ExpectInvalid(snap([](N* s) { s->mutable_channels(0)->set_channel(""); }), "channel name");
  ExpectInvalid(snap([](N* s) { s->mutable_presence(0)->set_channel("private-x"); }),
                "presence entry on a private channel");
  ExpectInvalid(snap([](N* s) { s->mutable_presence(0)->set_user_info_json("{"); }),
                "presence user_info not JSON");
  ExpectInvalid(snap([](N* s) { s->mutable_users(0)->set_user_id(""); }), "signed-in user id");
  ExpectInvalid(snap([](N* s) {
                  for (int i = 0; i < 101; ++i) s->mutable_users(0)->add_watchlist("u");
                }),
                "watchlist over 100");
  ExpectInvalid(snap([](N* s) { s->mutable_users(0)->add_watchlist(""); }), "watchlist entry");
  ExpectInvalid(snap([](N* s) { (*s->mutable_app_connections())["bad app"] = 1; }),
                "app id in app_connections");
  NodeLimits small;
  small.max_snapshot_entries = 3;
  EXPECT_EQ(ValidateSnapshot(Snapshot().snapshot(), small).code(),
            absl::StatusCode::kInvalidArgument)
      << "4 entries over a limit of 3";

  NodeMessage delta;
  auto* left = delta.mutable_delta()->add_presence_left();
  left->set_app_id("app-1");
  left->set_channel("presence-room");
  left->set_user_id("ada");
  left->set_socket_id("1.2");
  left->set_user_info_json("not checked on leave");
  EXPECT_TRUE(ValidateNodeMessage(delta, kLimits).ok());
  NodeMessage bad_out = delta;
  bad_out.mutable_delta()->add_signed_out()->set_app_id("app-1");  // no user, no socket
  ExpectInvalid(bad_out, "signed_out entry");
  NodeMessage bad_count = delta;
  bad_count.mutable_delta()->add_channels()->set_app_id("");
  ExpectInvalid(bad_count, "channel count without an app");
  NodeMessage bad_apps = delta;
  (*bad_apps.mutable_delta()->mutable_app_connections())[""] = 0;
  ExpectInvalid(bad_apps, "empty app id in app_connections");
}

}  // namespace
}  // namespace relay::controlplane
