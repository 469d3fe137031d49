// NodeState: what a data plane reports up, and the subscribe requests a broken stream leaves
// unanswered (answered locally, so no subscription waits forever).
#include "dataplane/node_state.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace relay::dataplane {
namespace {

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
  state.Attach([&](relay::v1::NodeMessage) { return stream_open ? ++seq : 0; }, {});
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

}  // namespace
}  // namespace relay::dataplane
