// NodeState against a recording uplink: the seq a subscriber waits for, the cluster-wide
// connection count used for limits.max_connections, and the subscribe requests a broken stream
// leaves unanswered (answered locally, so no subscription waits forever).
#include "dataplane/node_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace relay::dataplane {
namespace {

struct Recorder {
  std::vector<relay::v1::NodeMessage> sent;
  NodeState::Uplink Uplink() {
    NodeState::Uplink u;
    u.push = [this](relay::v1::NodeMessage m) {
      sent.push_back(std::move(m));
      return static_cast<uint64_t>(sent.size());
    };
    u.flush = [] {};
    return u;
  }
};

TEST(NodeState, SubscribersWaitForTheAckOfTheMessageCarryingTheInterest) {
  NodeState state;
  Recorder link;
  state.Attach(link.Uplink(), {});
  ASSERT_EQ(link.sent.size(), 1u);  // the snapshot, seq 1
  // First subscriber: waits for the delta that tells the control plane (seq 2).
  EXPECT_EQ(state.ChannelChanged("app", "c", +1), 2u);
  // A second one before that ack waits for the same message; after it, goes live at once.
  EXPECT_EQ(state.ChannelChanged("app", "c", +1), 2u);
  state.Acked(2);
  EXPECT_EQ(state.ChannelChanged("app", "c", +1), 0u);
  EXPECT_EQ(state.ChannelChanged("app", "c", -1), 0u);
  // Detached: nothing to wait for, not even an interest the old stream never acknowledged.
  EXPECT_EQ(state.ChannelChanged("app", "e", +1), 6u);  // seq 6: snapshot + 5 deltas
  state.Detach();
  EXPECT_EQ(state.ChannelChanged("app", "d", +1), 0u);
  EXPECT_EQ(state.ChannelChanged("app", "e", +1), 0u);
}

TEST(NodeState, AfterAReattachSubscribersWaitForTheSnapshotsAck) {
  NodeState state;
  Recorder first;
  state.Attach(first.Uplink(), {});
  state.ChannelChanged("app", "c", +1);
  state.Acked(2);
  Recorder second;
  state.Attach(second.Uplink(), {});
  ASSERT_EQ(second.sent.size(), 1u);
  ASSERT_EQ(second.sent[0].snapshot().channels_size(), 1);
  EXPECT_EQ(state.ChannelChanged("app", "c", +1), 1u);  // the snapshot carries the interest
  state.Acked(1);
  EXPECT_EQ(state.ChannelChanged("app", "c", +1), 0u);
}

TEST(NodeState, ClusterAppConnectionsAddsTheOtherNodes) {
  NodeState state;
  state.ConnectionChanged("app", +1);
  state.ConnectionChanged("other", +1);
  EXPECT_EQ(state.ClusterAppConnections("app"), 1u);
  relay::v1::RemoteConnections remote;
  remote.set_replace(true);
  (*remote.mutable_others())["app"] = 2;
  (*remote.mutable_others())["other"] = 5;
  state.SetRemoteConnections(remote);
  EXPECT_EQ(state.ClusterAppConnections("app"), 3u);
  EXPECT_EQ(state.AppConnections("app"), 1u);
  // An update changes only the apps it lists; 0 clears.
  relay::v1::RemoteConnections update;
  (*update.mutable_others())["app"] = 0;
  state.SetRemoteConnections(update);
  EXPECT_EQ(state.ClusterAppConnections("app"), 1u);
  EXPECT_EQ(state.ClusterAppConnections("other"), 6u);
  // A replacing report forgets apps it does not list.
  relay::v1::RemoteConnections full;
  full.set_replace(true);
  state.SetRemoteConnections(full);
  EXPECT_EQ(state.ClusterAppConnections("other"), 1u);
  EXPECT_EQ(state.ClusterAppConnections("unknown"), 0u);
}

relay::v1::NodeMessage Subscribe(uint64_t id, bool presence) {
  relay::v1::NodeMessage m;
  m.mutable_subscribe()->set_request_id(id);
  m.mutable_subscribe()->set_channel(presence ? "presence-a" : "cache-a");
  if (presence) m.mutable_subscribe()->mutable_member()->set_user_id("u");
  return m;
}

TEST(NodeState, SubscribeRequestsLeftUnansweredByABrokenStreamAreHandedBackOnce) {
  NodeState state;
  uint64_t seq = 0;
  bool stream_open = true;
  NodeState::Uplink link;
  link.push = [&](relay::v1::NodeMessage) { return stream_open ? ++seq : 0; };
  link.flush = [] {};
  state.Attach(link, {});
  ASSERT_TRUE(state.SendUp(Subscribe(1, true)));
  ASSERT_TRUE(state.SendUp(Subscribe(2, false)));
  ASSERT_TRUE(state.SendUp(Subscribe(3, true)));
  state.Answered(2);
  // The stream ends: the first request that finds it closed is refused at once (the session
  // answers it itself) and is not outstanding.
  stream_open = false;
  EXPECT_FALSE(state.SendUp(Subscribe(4, true)));
  state.Detach();
  auto left = state.TakeUnanswered();
  ASSERT_EQ(left.size(), 2u);
  std::sort(left.begin(), left.end(),
            [](const auto& a, const auto& b) { return a.request_id() < b.request_id(); });
  EXPECT_EQ(left[0].request_id(), 1u);
  EXPECT_EQ(left[1].request_id(), 3u);
  EXPECT_TRUE(left[0].has_member());
  EXPECT_TRUE(state.TakeUnanswered().empty());
  // Detached: nothing goes up, nothing becomes outstanding.
  EXPECT_FALSE(state.SendUp(Subscribe(5, true)));
  EXPECT_TRUE(state.TakeUnanswered().empty());
}

// However much a node holds, its snapshot goes up in parts of bounded size that together are the
// whole state, and subscribers wait for the ack of the last part.
TEST(NodeState, TheSnapshotIsSplitIntoBoundedParts) {
  NodeState state;
  const std::string pad(150, 'c');
  constexpr int kChannels = 20000;
  for (int i = 0; i < kChannels; ++i) state.ChannelChanged("app", pad + std::to_string(i), +1);
  for (int i = 0; i < 500; ++i) {
    relay::v1::PresenceSocket p;
    p.set_app_id("app");
    p.set_channel("presence-room");
    p.set_user_id("user-" + std::to_string(i));
    p.set_user_info_json(std::string(900, 'i'));
    p.set_socket_id("1." + std::to_string(i));
    state.PresenceJoined(p);
  }
  constexpr size_t kPart = 256 * 1024;
  auto parts = state.SnapshotPartsForTest(kPart);
  ASSERT_GT(parts.size(), 10u);
  size_t channels = 0, presence = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    ASSERT_TRUE(parts[i].has_snapshot());
    EXPECT_LE(parts[i].ByteSizeLong(), kPart + 2048) << "part " << i;
    EXPECT_EQ(parts[i].snapshot().more(), i + 1 < parts.size()) << "part " << i;
    channels += parts[i].snapshot().channels_size();
    presence += parts[i].snapshot().presence_size();
  }
  EXPECT_EQ(channels, static_cast<size_t>(kChannels));
  EXPECT_EQ(presence, 500u);
  Recorder link;
  state.Attach(link.Uplink(), {});
  const size_t sent = link.sent.size();
  ASSERT_GT(sent, 1u);
  EXPECT_FALSE(link.sent.back().snapshot().more());
  // A new subscriber of a known channel waits for the last part's ack (seq = parts sent).
  EXPECT_EQ(state.ChannelChanged("app", pad + "0", +1), sent);
}

}  // namespace
}  // namespace relay::dataplane
