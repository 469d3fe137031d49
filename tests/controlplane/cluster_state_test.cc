// ClusterState: the cluster-wide view built from what nodes report, and the events that must
// happen once for the whole cluster (occupied/vacated, member added/removed).
#include "controlplane/cluster_state.h"

#include <gtest/gtest.h>

namespace relay::controlplane {
namespace {

relay::v1::StateDelta Count(const std::string& channel, uint32_t subscriptions,
                            const std::string& app = "app") {
  relay::v1::StateDelta d;
  auto* c = d.add_channels();
  c->set_app_id(app);
  c->set_channel(channel);
  c->set_subscriptions(subscriptions);
  return d;
}

relay::v1::SubscribeRequest Join(const std::string& channel, const std::string& user,
                                 const std::string& socket, const std::string& info = "{}") {
  relay::v1::SubscribeRequest r;
  r.set_request_id(7);
  r.set_app_id("app");
  r.set_channel(channel);
  r.set_socket_id(socket);
  r.mutable_member()->set_user_id(user);
  r.mutable_member()->set_user_info_json(info);
  return r;
}

relay::v1::StateDelta Leave(const std::string& channel, const std::string& socket) {
  relay::v1::StateDelta d;
  auto* p = d.add_presence_left();
  p->set_app_id("app");
  p->set_channel(channel);
  p->set_socket_id(socket);
  return d;
}

std::vector<std::string> Users(const std::vector<Effects::Member>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.push_back(m.user_id);
  return out;
}

std::vector<std::string> Roster(const ClusterState& state, const std::string& channel) {
  std::vector<std::string> out;
  for (const auto& m : state.PresenceMembers("app", channel)) out.push_back(m.user_id());
  return out;
}

TEST(ClusterState, SubscriptionCountsAddUpAcrossNodes) {
  ClusterState state;
  Effects fx = state.ApplyDelta("n1", Count("news", 2));
  ASSERT_EQ(fx.occupied.size(), 1u);
  EXPECT_EQ(fx.occupied[0].channel, "news");
  EXPECT_EQ(fx.occupied[0].count, 2u);
  EXPECT_TRUE(fx.node_interest_added);

  fx = state.ApplyDelta("n2", Count("news", 3));
  EXPECT_TRUE(fx.occupied.empty()) << "occupied once for the cluster, not per node";
  ASSERT_EQ(fx.subscription_counts.size(), 1u);
  EXPECT_EQ(fx.subscription_counts[0].count, 5u);
  EXPECT_TRUE(fx.node_interest_added);
  EXPECT_EQ(state.GetChannel("app", "news").subscription_count(), 5u);
  EXPECT_TRUE(state.GetChannel("app", "news").occupied());

  // A count that does not change is no event.
  fx = state.ApplyDelta("n2", Count("news", 3));
  EXPECT_TRUE(fx.subscription_counts.empty());
  EXPECT_FALSE(fx.node_interest_added);

  fx = state.ApplyDelta("n1", Count("news", 0));
  EXPECT_TRUE(fx.vacated.empty()) << "n2 still has subscribers";
  EXPECT_EQ(state.GetChannel("app", "news").subscription_count(), 3u);

  fx = state.ApplyDelta("n2", Count("news", 0));
  ASSERT_EQ(fx.vacated.size(), 1u);
  EXPECT_EQ(fx.vacated[0].count, 0u);
  EXPECT_FALSE(state.GetChannel("app", "news").occupied());
  EXPECT_TRUE(state.ListChannels("app", "").empty());
}

TEST(ClusterState, InterestIsPerNodeAndPerApp) {
  ClusterState state;
  state.ApplyDelta("n1", Count("news", 1));
  state.ApplyDelta("n2", Count("sport", 1));
  state.ApplyDelta("n3", Count("news", 1, "other-app"));
  EXPECT_TRUE(state.NodeHasChannel("n1", "app", "news"));
  EXPECT_FALSE(state.NodeHasChannel("n2", "app", "news"));
  EXPECT_FALSE(state.NodeHasChannel("n3", "app", "news"));
  EXPECT_TRUE(state.NodeHasChannel("n3", "other-app", "news"));
  EXPECT_EQ(state.NodesWithInterest("app", {"news", "sport", "none"}),
            (std::vector<std::string>{"n1", "n2"}));
  state.ApplyDelta("n1", Count("news", 0));
  EXPECT_FALSE(state.NodeHasChannel("n1", "app", "news"));
  EXPECT_TRUE(state.NodesWithInterest("app", {"news"}).empty());
}

TEST(ClusterState, ListChannelsFiltersByAppAndPrefixSorted) {
  ClusterState state;
  state.ApplyDelta("n1", Count("b-two", 2));
  state.ApplyDelta("n1", Count("a-one", 1));
  state.ApplyDelta("n2", Count("b-three", 4));
  state.ApplyDelta("n1", Count("b-x", 1, "other-app"));
  auto all = state.ListChannels("app", "");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name(), "a-one");
  EXPECT_EQ(all[1].name(), "b-three");
  EXPECT_EQ(all[2].name(), "b-two");
  auto b = state.ListChannels("app", "b-");
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].subscription_count(), 4u);
  EXPECT_TRUE(b[0].occupied());
}

TEST(ClusterState, SameUserOnTwoNodesIsOneMember) {
  ClusterState state;
  relay::v1::SubscribeReply reply;
  Effects fx =
      state.PresenceJoin("n1", Join("presence-room", "ada", "1.1", R"({"n":1})"), 0, &reply);
  EXPECT_TRUE(reply.ok());
  EXPECT_EQ(reply.request_id(), 7u);
  EXPECT_EQ(Users(fx.member_added), std::vector<std::string>{"ada"});

  reply.Clear();
  fx = state.PresenceJoin("n2", Join("presence-room", "ada", "2.1", R"({"n":2})"), 0, &reply);
  EXPECT_TRUE(reply.ok());
  EXPECT_TRUE(fx.member_added.empty()) << "member_added once per user, not per connection";
  ASSERT_EQ(reply.roster_size(), 1);
  EXPECT_EQ(reply.roster(0).user_info_json(), R"({"n":1})") << "the first-seen info stays";

  // The same socket joining twice changes nothing either.
  reply.Clear();
  fx = state.PresenceJoin("n2", Join("presence-room", "ada", "2.1"), 0, &reply);
  EXPECT_TRUE(fx.member_added.empty());
  EXPECT_EQ(state.GetChannel("app", "presence-room").user_count(), 1u);

  fx = state.ApplyDelta("n1", Leave("presence-room", "1.1"));
  EXPECT_TRUE(fx.member_removed.empty()) << "ada is still connected on n2";
  EXPECT_EQ(Roster(state, "presence-room"), std::vector<std::string>{"ada"});

  fx = state.ApplyDelta("n2", Leave("presence-room", "2.1"));
  EXPECT_EQ(Users(fx.member_removed), std::vector<std::string>{"ada"});
  EXPECT_TRUE(Roster(state, "presence-room").empty());

  // A leave of a socket that never joined is ignored.
  fx = state.ApplyDelta("n2", Leave("presence-room", "2.1"));
  EXPECT_TRUE(fx.member_removed.empty());
}

TEST(ClusterState, PresenceMemberLimitCountsDistinctUsers) {
  ClusterState state;
  relay::v1::SubscribeReply reply;
  state.PresenceJoin("n1", Join("presence-room", "ada", "1.1"), 2, &reply);
  state.PresenceJoin("n1", Join("presence-room", "bob", "1.2"), 2, &reply);

  relay::v1::SubscribeReply refused;
  Effects fx = state.PresenceJoin("n2", Join("presence-room", "cy", "2.1"), 2, &refused);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.error_type(), "LimitReached");
  EXPECT_EQ(refused.error_status(), 4100u);
  EXPECT_TRUE(fx.member_added.empty());

  // A user already in the channel joins from another connection even at the limit.
  relay::v1::SubscribeReply again;
  state.PresenceJoin("n2", Join("presence-room", "bob", "2.2"), 2, &again);
  EXPECT_TRUE(again.ok());
  ASSERT_EQ(again.roster_size(), 2);
  EXPECT_EQ(again.roster(0).user_id(), "ada");
  EXPECT_EQ(again.roster(1).user_id(), "bob");
}

TEST(ClusterState, RemovingANodeWithdrawsEverythingItReported) {
  ClusterState state;
  relay::v1::SubscribeReply reply;
  state.ApplyDelta("n1", Count("presence-room", 2));
  state.ApplyDelta("n2", Count("presence-room", 1));
  state.ApplyDelta("n1", Count("only-n1", 1));
  state.PresenceJoin("n1", Join("presence-room", "ada", "1.1"), 0, &reply);
  state.PresenceJoin("n1", Join("presence-room", "bob", "1.2"), 0, &reply);
  state.PresenceJoin("n2", Join("presence-room", "bob", "2.1"), 0, &reply);
  relay::v1::StateDelta d;
  auto* s = d.add_signed_in();
  s->set_app_id("app");
  s->set_user_id("ada");
  s->set_socket_id("1.1");
  (*d.mutable_app_connections())["app"] = 2;
  state.ApplyDelta("n1", d);
  EXPECT_EQ(state.NodesWithUser("app", "ada"), std::vector<std::string>{"n1"});
  EXPECT_EQ(state.AppConnections("app"), 2u);

  Effects fx = state.RemoveNode("n1");
  EXPECT_EQ(Users(fx.member_removed), std::vector<std::string>{"ada"})
      << "bob is still connected on n2";
  ASSERT_EQ(fx.vacated.size(), 1u);
  EXPECT_EQ(fx.vacated[0].channel, "only-n1");
  EXPECT_TRUE(fx.occupied.empty());
  ASSERT_EQ(fx.user_transitions.size(), 1u);
  EXPECT_EQ(fx.user_transitions[0].user_id, "ada");
  EXPECT_FALSE(fx.user_transitions[0].online);
  EXPECT_EQ(fx.connections_changed, std::vector<std::string>{"app"});

  EXPECT_EQ(state.GetChannel("app", "presence-room").subscription_count(), 1u);
  EXPECT_EQ(Roster(state, "presence-room"), std::vector<std::string>{"bob"});
  EXPECT_FALSE(state.NodeHasChannel("n1", "app", "presence-room"));
  EXPECT_TRUE(state.NodesWithUser("app", "ada").empty());
  EXPECT_EQ(state.AppConnections("app"), 0u);

  // Removing it again (or a node never seen) is harmless.
  fx = state.RemoveNode("n1");
  EXPECT_TRUE(fx.vacated.empty());
  EXPECT_TRUE(fx.member_removed.empty());
}

TEST(ClusterState, SnapshotOfAKnownNodeOnlyReportsTheDifference) {
  ClusterState state;
  relay::v1::NodeSnapshot snap;
  auto* c = snap.add_channels();
  c->set_app_id("app");
  c->set_channel("presence-room");
  c->set_subscriptions(1);
  auto* p = snap.add_presence();
  p->set_app_id("app");
  p->set_channel("presence-room");
  p->set_user_id("ada");
  p->set_socket_id("1.1");
  Effects fx = state.ApplySnapshot("n1", snap);
  EXPECT_EQ(fx.occupied.size(), 1u);
  EXPECT_EQ(Users(fx.member_added), std::vector<std::string>{"ada"});

  // A reconnect with the same state: no events.
  fx = state.ApplySnapshot("n1", snap);
  EXPECT_TRUE(fx.occupied.empty());
  EXPECT_TRUE(fx.member_added.empty());
  EXPECT_TRUE(fx.member_removed.empty());

  // A snapshot without the member and the channel withdraws both.
  fx = state.ApplySnapshot("n1", relay::v1::NodeSnapshot());
  EXPECT_EQ(Users(fx.member_removed), std::vector<std::string>{"ada"});
  EXPECT_EQ(fx.vacated.size(), 1u);
}

TEST(ClusterState, WatchlistSeesUsersComeOnlineOnAnyNode) {
  ClusterState state;
  relay::v1::StateDelta bob;
  auto* s = bob.add_signed_in();
  s->set_app_id("app");
  s->set_user_id("bob");
  s->set_socket_id("2.1");
  Effects fx = state.ApplyDelta("n2", bob);
  ASSERT_EQ(fx.user_transitions.size(), 1u);
  EXPECT_TRUE(fx.user_transitions[0].online);

  relay::v1::StateDelta ada;
  s = ada.add_signed_in();
  s->set_app_id("app");
  s->set_user_id("ada");
  s->set_socket_id("1.1");
  s->add_watchlist("bob");
  s->add_watchlist("cy");
  fx = state.ApplyDelta("n1", ada);
  ASSERT_EQ(fx.watch_starts.size(), 1u);
  EXPECT_EQ(fx.watch_starts[0].node_id, "n1");
  EXPECT_EQ(fx.watch_starts[0].online, std::vector<std::string>{"bob"});
  auto watchers = state.WatchersByNode("app", "cy");
  ASSERT_EQ(watchers.size(), 1u);
  EXPECT_EQ(watchers["n1"], std::vector<std::string>{"ada"});

  relay::v1::StateDelta out;
  *out.add_signed_out() = ada.signed_in(0);
  state.ApplyDelta("n1", out);
  EXPECT_TRUE(state.WatchersByNode("app", "cy").empty());
}

TEST(ClusterState, ConnectionsElsewhereExcludesTheNodesOwn) {
  ClusterState state;
  relay::v1::StateDelta d1, d2;
  (*d1.mutable_app_connections())["app"] = 3;
  (*d2.mutable_app_connections())["app"] = 5;
  EXPECT_EQ(state.ApplyDelta("n1", d1).connections_changed, std::vector<std::string>{"app"});
  state.ApplyDelta("n2", d2);
  EXPECT_TRUE(state.ApplyDelta("n2", d2).connections_changed.empty()) << "unchanged";
  EXPECT_EQ(state.AppConnections("app"), 8u);
  auto elsewhere = state.ConnectionsElsewhere({"n1", "n2", "n3"}, nullptr);
  EXPECT_EQ(elsewhere["n1"]["app"], 5u);
  EXPECT_EQ(elsewhere["n2"]["app"], 3u);
  EXPECT_EQ(elsewhere["n3"]["app"], 8u);
  std::vector<std::string> apps{"none"};
  auto zeros = state.ConnectionsElsewhere({"n1"}, &apps);
  EXPECT_EQ(zeros["n1"]["none"], 0u) << "requested apps are listed even at zero";
}

TEST(ClusterState, CacheKeepsTheLastEventUntilItExpires) {
  ClusterState state;
  EXPECT_FALSE(state.GetCache("app", "cache-x").has_value());
  state.StoreCache("app", "cache-x", "first", "1", 60);
  state.StoreCache("app", "cache-x", "second", R"({"n":2})", 60);
  auto c = state.GetCache("app", "cache-x");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->event(), "second");
  EXPECT_EQ(c->data(), R"({"n":2})");
  EXPECT_GT(c->ttl_seconds(), 0u);
  EXPECT_LE(c->ttl_seconds(), 60u);
  EXPECT_GT(c->expires_unix_ms(), 0);
  EXPECT_FALSE(state.GetCache("other-app", "cache-x").has_value());

  // A ttl of 0 has expired as soon as it is stored.
  state.StoreCache("app", "cache-y", "e", "1", 0);
  EXPECT_FALSE(state.GetCache("app", "cache-y").has_value());
}

// Two publishes racing: the one accepted first (seq 1) stores its event after the later one
// (seq 2). A subscriber must not be given the older event as the channel's cache.
TEST(ClusterStateCacheTest, AStoreThatComesLateWithAnOlderEventDoesNotReplaceTheNewer) {
  ClusterState state;
  state.StoreCache("app", "cache-x", "newer", "2", 60, 2);
  state.StoreCache("app", "cache-x", "older", "1", 60, 1);
  auto c = state.GetCache("app", "cache-x");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->event(), "newer");
  state.StoreCache("app", "cache-x", "newest", "3", 60, 3);
  EXPECT_EQ(state.GetCache("app", "cache-x")->event(), "newest");
}

}  // namespace
}  // namespace relay::controlplane
