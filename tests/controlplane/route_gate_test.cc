// RouteGate: when the control plane may route an event-sending request, so that no request is
// answered 2xx while a data plane that may have its subscribers is away. Time is a ManualClock.
#include "controlplane/route_gate.h"

#include <gtest/gtest.h>

namespace relay::controlplane {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kStartMs = 1767225600000LL;

class RouteGateTest : public ::testing::Test {
 protected:
  common::ManualClock clock_{kStartMs};
  RouteGate gate_{15000ms, clock_};

  bool Routes(const std::string& channel, const std::string& app = "app") {
    return gate_.AdmitChannels(app, {channel}).ok();
  }
  bool RoutesUser(const std::string& user, const std::string& app = "app") {
    return gate_.AdmitUser(app, user).ok();
  }
};

TEST_F(RouteGateTest, AFreshGateRoutesEverything) {
  EXPECT_TRUE(Routes("room"));
  EXPECT_TRUE(RoutesUser("u1"));
  EXPECT_EQ(gate_.awaiting(), 0u);
  EXPECT_TRUE(gate_.Expire().empty());
}

TEST_F(RouteGateTest, AfterARestartNothingRoutesUntilEveryKnownNodeIsBack) {
  gate_.ExpectNodes({"a", "b"});
  EXPECT_EQ(gate_.awaiting(), 2u);
  absl::Status st = gate_.AdmitChannels("app", {"room"});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(st), 1);
  EXPECT_NE(st.message().find("2 data plane(s)"), std::string_view::npos) << st.message();
  EXPECT_FALSE(RoutesUser("u1"));
  EXPECT_FALSE(Routes("any-channel", "any-app"));

  gate_.Attached("a");
  EXPECT_EQ(gate_.awaiting(), 1u);
  EXPECT_FALSE(Routes("room"));  // b may have subscribers of anything

  gate_.Attached("b");
  EXPECT_EQ(gate_.awaiting(), 0u);
  EXPECT_TRUE(Routes("room"));
  EXPECT_TRUE(RoutesUser("u1"));
  EXPECT_EQ(gate_.refused(GateRefusal::kReattaching), 4u);
  EXPECT_EQ(gate_.refused(GateRefusal::kNodeDetached), 0u);
}

TEST_F(RouteGateTest, AKnownNodeThatNeverComesBackIsDeclaredGoneAtTheTimeout) {
  gate_.ExpectNodes({"a", "gone"});
  gate_.Attached("a");
  clock_.Advance(14999ms);
  EXPECT_FALSE(Routes("room"));
  EXPECT_TRUE(gate_.Expire().empty());
  EXPECT_EQ(gate_.awaiting(), 1u);

  clock_.Advance(1ms);
  // The gate opens at the timeout itself, before any sweep runs.
  EXPECT_EQ(gate_.awaiting(), 0u);
  EXPECT_TRUE(Routes("room"));
  // The sweep still learns which node to forget (the admission declared it gone first).
  EXPECT_EQ(gate_.Expire(), std::vector<std::string>{"gone"});
  gate_.ExpectNodes({"late"});
  clock_.Advance(15000ms);
  EXPECT_EQ(gate_.Expire(), std::vector<std::string>{"late"});
  EXPECT_TRUE(gate_.Expire().empty());
}

TEST_F(RouteGateTest, ANodeThatSaidGoodbyeIsNotWaitedFor) {
  gate_.ExpectNodes({"a", "leaving"});
  gate_.Left("leaving");
  gate_.Attached("a");
  EXPECT_TRUE(Routes("room"));
}

TEST_F(RouteGateTest, ADetachedNodeBlocksOnlyWhatItServed) {
  NodeKeys keys;
  keys.channels = {{"app", "room"}, {"app", "presence-lobby"}};
  keys.users = {{"app", "alice"}};
  gate_.Detached("a", keys);
  EXPECT_EQ(gate_.detached(), 1u);
  EXPECT_EQ(gate_.awaiting(), 0u);  // ready: the rest of the cluster routes

  absl::Status st = gate_.AdmitChannels("app", {"other", "room"});
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(st), 1);
  EXPECT_FALSE(RoutesUser("alice"));
  EXPECT_TRUE(Routes("other"));
  EXPECT_TRUE(Routes("room", "other-app"));
  EXPECT_TRUE(RoutesUser("bob"));
  EXPECT_TRUE(RoutesUser("alice", "other-app"));
  EXPECT_EQ(gate_.refused(GateRefusal::kNodeDetached), 2u);

  gate_.Attached("a");  // back, its new snapshot routes
  EXPECT_TRUE(Routes("room"));
  EXPECT_TRUE(RoutesUser("alice"));
  EXPECT_EQ(gate_.detached(), 0u);
}

TEST_F(RouteGateTest, AChannelStaysBlockedWhileAnyNodeServingItIsAway) {
  NodeKeys both;
  both.channels = {{"app", "room"}};
  gate_.Detached("a", both);
  gate_.Detached("b", both);
  gate_.Attached("a");
  EXPECT_FALSE(Routes("room"));
  gate_.Left("b");
  EXPECT_TRUE(Routes("room"));
}

TEST_F(RouteGateTest, ADetachedNodeIsDeclaredGoneAfterTheTimeout) {
  NodeKeys keys;
  keys.channels = {{"app", "room"}};
  gate_.Detached("a", keys);
  clock_.Advance(10000ms);
  // Detached again (a second break after a re-attach): the timeout restarts.
  gate_.Attached("a");
  gate_.Detached("a", keys);
  clock_.Advance(10000ms);
  EXPECT_FALSE(Routes("room"));
  EXPECT_TRUE(gate_.Expire().empty());
  clock_.Advance(5000ms);
  EXPECT_EQ(gate_.Expire(), std::vector<std::string>{"a"});
  EXPECT_TRUE(Routes("room"));
  EXPECT_EQ(gate_.detached(), 0u);
}

TEST_F(RouteGateTest, ARestartWaitCoversNodesThatDetachAgainBeforeTheirSnapshot) {
  gate_.ExpectNodes({"a"});
  NodeKeys keys;
  keys.channels = {{"app", "room"}};
  gate_.Attached("a");
  gate_.Detached("a", keys);
  EXPECT_EQ(gate_.awaiting(), 0u);
  EXPECT_FALSE(Routes("room"));
  EXPECT_TRUE(Routes("lobby"));
}

TEST(RetryLaterErrorTest, CarriesItsHintAndOtherStatusesHaveNone) {
  EXPECT_EQ(RetryAfterSeconds(RetryLaterError("later", 3)), 3);
  EXPECT_EQ(RetryLaterError("later", 3).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(absl::UnavailableError("down")), 0);
  EXPECT_EQ(RetryAfterSeconds(absl::OkStatus()), 0);
}

// A replica elected leader (replica.h): what an earlier term left goes, the registry read from
// etcd is awaited.
TEST_F(RouteGateTest, ResetForgetsAnEarlierTermAndAwaitsTheRegistry) {
  NodeKeys keys;
  keys.channels.insert({"app", "room"});
  gate_.Detached("old", keys);
  gate_.ExpectNodes({"gone"});
  gate_.Reset({"a", "b"});
  EXPECT_EQ(gate_.awaiting(), 2u);
  EXPECT_EQ(gate_.detached(), 0u);
  EXPECT_FALSE(Routes("other"));
  gate_.Attached("a");
  gate_.Attached("b");
  EXPECT_TRUE(Routes("room"));  // the earlier term's detached node no longer blocks it
  EXPECT_TRUE(gate_.Expire().empty());
  gate_.Reset({});
  EXPECT_EQ(gate_.awaiting(), 0u);
  EXPECT_TRUE(Routes("room"));
}

}  // namespace
}  // namespace relay::controlplane
