// The node link's backpressure: with room for one command per shard, the data plane stops
// reading the node link stream after nearly every command until its shards catch up, and still
// delivers every publish, in order, on the one attach (nothing dropped, no re-attach).
#include <gtest/gtest.h>

#include <string>

#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

TEST(Backpressure, FullShardQueuesSlowTheLinkAndLoseNothing) {
  dataplane::DataPlaneOptions options;
  options.shards = 2;
  options.shard_inbox = {/*max_posts=*/1, /*max_bytes=*/1 << 20};
  Cluster cluster(1, options);
  auto a = cluster.Client(0);
  auto b = cluster.Client(0);  // on the other shard
  ASSERT_TRUE(a && b);
  ASSERT_NE(cluster.Subscribe(*a, "orders"), "");
  ASSERT_NE(cluster.Subscribe(*b, "orders"), "");
  constexpr int kEvents = 300;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(cluster.Trigger("orders", "tick", std::to_string(i)).ok());
  }
  for (auto* c : {a.get(), b.get()}) {
    for (int i = 0; i < kEvents; ++i) {
      auto f = c->ReceiveEvent("tick");
      ASSERT_TRUE(f) << "event " << i;
      EXPECT_EQ(JsonField(*f, "data"), std::to_string(i));
    }
  }
  EXPECT_EQ(cluster.node(0).attaches(), 1u);
  EXPECT_EQ(cluster.node(0).slow_consumers_cut(), 0u);
}

}  // namespace
}  // namespace relay::testutil
