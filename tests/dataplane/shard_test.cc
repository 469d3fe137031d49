// A shard as the control link and its sessions see it: a drain closes each session that was open
// when it began exactly once (never a newer session that took a closed one's address), and the
// posts waiting to run are bounded, with a wait for room instead of a loss.
#include "dataplane/shard.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/inbox_bound.h"

namespace relay::dataplane {
namespace {

class FakeSession : public Session {
 public:
  explicit FakeSession(std::string id) : id_(std::move(id)) {}
  const std::string& socket_id() const override { return id_; }
  const std::string& app_id() const override { return app_; }
  void Send(const FramePtr& frame) override { sent.push_back(*frame); }
  void CloseWith(int code, const std::string&) override { closes.push_back(code); }
  void OnSubscribeReply(const relay::v1::SubscribeReply&) override {}
  void OnInterestAcked(const std::string&, uint64_t) override {}
  void OnAppUpdated(const AppPtr&) override {}
  void OnWatchlist(const relay::v1::WatchlistEvents&) override {}

  std::vector<int> closes;
  std::vector<std::string> sent;

 private:
  std::string id_;
  std::string app_ = "app";
};

// Runs the shard's posts and timers until none are left.
void RunAll(boost::asio::io_context& context) {
  context.restart();
  context.run();
}

TEST(Shard, DrainClosesOnlyTheSessionsOpenWhenItBegan) {
  boost::asio::io_context context;
  Shard shard(0, context, nullptr);
  // Two slots, so that a new session can take the exact address of one that closed.
  std::optional<FakeSession> slots[2];
  slots[0].emplace("1.1");
  slots[1].emplace("1.2");
  shard.AddSession(&*slots[0]);
  shard.AddSession(&*slots[1]);

  shard.PostDrain(200);  // two sessions: one at once, the other 100 ms later
  context.poll();
  int first = slots[0]->closes.empty() ? 1 : 0;
  int second = 1 - first;
  ASSERT_EQ(slots[first]->closes, std::vector<int>{4200});
  ASSERT_TRUE(slots[second]->closes.empty());

  // Before its turn, the second session closes, and a new one opens at its address.
  shard.RemoveSession(&*slots[second]);
  slots[second].reset();
  slots[second].emplace("1.3");
  shard.AddSession(&*slots[second]);

  RunAll(context);
  EXPECT_TRUE(slots[second]->closes.empty()) << "the drain closed a session it never saw";
  EXPECT_EQ(slots[first]->closes, std::vector<int>{4200});
  EXPECT_EQ(shard.session_count(), 2u);
}

TEST(Shard, DrainSpreadsOverEverySession) {
  boost::asio::io_context context;
  Shard shard(0, context, nullptr);
  std::vector<std::unique_ptr<FakeSession>> sessions;
  for (int i = 0; i < 5; ++i) {
    sessions.push_back(std::make_unique<FakeSession>("1." + std::to_string(i)));
    shard.AddSession(sessions.back().get());
  }
  shard.PostDrain(5);
  RunAll(context);
  for (const auto& s : sessions) EXPECT_EQ(s->closes, std::vector<int>{4200});
}

TEST(InboxBound, FullAtEitherBoundAndWakesTheWaiterOnce) {
  InboxBound bound({/*max_posts=*/2, /*max_bytes=*/100});
  int woken = 0;
  EXPECT_FALSE(bound.WaitForRoom([&] { ++woken; }));  // room: nothing kept
  bound.Add(10);
  EXPECT_FALSE(bound.full());
  bound.Add(10);
  EXPECT_TRUE(bound.full());  // two posts
  EXPECT_TRUE(bound.WaitForRoom([&] { ++woken; }));
  bound.Done(10);
  EXPECT_EQ(woken, 1);
  bound.Done(10);
  EXPECT_EQ(woken, 1);  // once

  bound.Add(150);  // one post over the byte bound is admitted, and fills it
  EXPECT_TRUE(bound.full());
  EXPECT_EQ(bound.bytes(), 150u);
  EXPECT_TRUE(bound.WaitForRoom([&] { ++woken; }));
  bound.Done(150);
  EXPECT_EQ(woken, 2);
  EXPECT_EQ(bound.posts(), 0u);
  EXPECT_EQ(bound.bytes(), 0u);
}

// The shard counts what the link posts until it has run; a full shard wakes its waiter on its
// own thread once it has caught up, and every post still runs (nothing is dropped).
TEST(Shard, PostsAreBoundedAndTheWaiterResumesWhenTheShardCatchesUp) {
  boost::asio::io_context context;
  Shard shard(0, context, nullptr, InboxLimits{/*max_posts=*/3, /*max_bytes=*/1 << 20});
  FakeSession session("1.1");
  shard.AddSession(&session);
  ASSERT_TRUE(shard.Subscribe(&session, "app", "news"));

  bool resumed = false;
  EXPECT_FALSE(shard.WaitForRoom([&] { resumed = true; }));
  for (int i = 0; i < 5; ++i) {  // the link posts past the bound before it checks
    auto d = std::make_shared<Delivery>();
    d->app_id = "app";
    d->frames.emplace_back("news", std::make_shared<const std::string>(std::to_string(i)));
    shard.PostDeliver(std::move(d));
  }
  EXPECT_EQ(shard.inbox().posts(), 5u);
  EXPECT_TRUE(shard.WaitForRoom([&] {
    EXPECT_TRUE(context.get_executor().running_in_this_thread());
    resumed = true;
  }));
  context.run_one();
  context.run_one();
  EXPECT_FALSE(resumed);  // still 3 waiting
  context.run_one();
  EXPECT_TRUE(resumed);
  RunAll(context);
  EXPECT_EQ(session.sent, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
  EXPECT_EQ(shard.inbox().posts(), 0u);
  EXPECT_EQ(shard.inbox().bytes(), 0u);
}

}  // namespace
}  // namespace relay::dataplane
