// ConnectionTotals: each node hears the connections of every app on the other nodes, in full
// after an attach and then only the changes.
#include "controlplane/connection_totals.h"

#include <gtest/gtest.h>

#include <map>

namespace relay::controlplane {
namespace {

void SetConnections(ClusterState& state, ConnectionTotals& totals, const std::string& node,
                    const std::string& app, uint64_t n) {
  relay::v1::StateDelta d;
  (*d.mutable_app_connections())[app] = n;
  totals.Changed(state.ApplyDelta(node, d).connections_changed);
}

// node -> (replace, app -> others)
struct Sent {
  bool replace = false;
  std::map<std::string, uint64_t> others;
};
std::map<std::string, Sent> Messages(ConnectionTotals& totals, const ClusterState& state,
                                     const std::vector<std::string>& nodes) {
  std::map<std::string, Sent> out;
  for (const auto& [node, msg] : totals.Collect(state, nodes)) {
    EXPECT_TRUE(msg.has_remote_connections());
    Sent& s = out[node];
    s.replace = msg.remote_connections().replace();
    for (const auto& [app, n] : msg.remote_connections().others()) s.others[app] = n;
  }
  return out;
}

TEST(ConnectionTotals, FirstMessageIsCompleteThenOnlyChanges) {
  ClusterState state;
  ConnectionTotals totals;
  SetConnections(state, totals, "n1", "a", 3);
  SetConnections(state, totals, "n2", "a", 5);
  SetConnections(state, totals, "n2", "b", 2);

  auto first = Messages(totals, state, {"n1", "n2"});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(first["n1"].replace);
  EXPECT_EQ(first["n1"].others, (std::map<std::string, uint64_t>{{"a", 5}, {"b", 2}}));
  EXPECT_TRUE(first["n2"].replace);
  EXPECT_EQ(first["n2"].others, (std::map<std::string, uint64_t>{{"a", 3}}))
      << "apps with none elsewhere are left out";

  // Nothing changed: nothing to send.
  EXPECT_TRUE(Messages(totals, state, {"n1", "n2"}).empty());

  // n1 gains a connection of a: only n2's view changes.
  SetConnections(state, totals, "n1", "a", 4);
  auto change = Messages(totals, state, {"n1", "n2"});
  ASSERT_EQ(change.size(), 1u);
  EXPECT_FALSE(change["n2"].replace);
  EXPECT_EQ(change["n2"].others, (std::map<std::string, uint64_t>{{"a", 4}}));

  // n2 loses its b connections: n1 hears b = 0 once.
  SetConnections(state, totals, "n2", "b", 0);
  change = Messages(totals, state, {"n1", "n2"});
  ASSERT_EQ(change.size(), 1u);
  EXPECT_EQ(change["n1"].others, (std::map<std::string, uint64_t>{{"b", 0}}));
  SetConnections(state, totals, "n2", "b", 0);
  EXPECT_TRUE(Messages(totals, state, {"n1", "n2"}).empty());
}

TEST(ConnectionTotals, AResetNodeGetsACompleteMessageAgain) {
  ClusterState state;
  ConnectionTotals totals;
  SetConnections(state, totals, "n2", "a", 5);
  Messages(totals, state, {"n1", "n2"});
  totals.Reset("n1");
  auto again = Messages(totals, state, {"n1", "n2"});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again["n1"].replace);
  EXPECT_EQ(again["n1"].others, (std::map<std::string, uint64_t>{{"a", 5}}));
}

TEST(ConnectionTotals, ANodeThatLeftAndCameBackStartsComplete) {
  ClusterState state;
  ConnectionTotals totals;
  SetConnections(state, totals, "n2", "a", 5);
  Messages(totals, state, {"n1", "n2"});
  // n1 is not attached at one collection: it is forgotten.
  Messages(totals, state, {"n2"});
  auto back = Messages(totals, state, {"n1", "n2"});
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(back["n1"].replace);
}

TEST(ConnectionTotals, ANodeWithNothingElsewhereStillGetsItsCompleteMessage) {
  ClusterState state;
  ConnectionTotals totals;
  auto first = Messages(totals, state, {"n1"});
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(first["n1"].replace) << "an empty complete view clears what the node held";
  EXPECT_TRUE(first["n1"].others.empty());
}

}  // namespace
}  // namespace relay::controlplane
