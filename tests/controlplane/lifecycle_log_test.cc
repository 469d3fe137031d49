// LifecycleLog: what a WatchLifecycleEvents consumer sees -- events in cursor order from a cursor,
// live events, filters, paged catch-up, pruning by age and by count with OUT_OF_RANGE instead of a
// gap, unknown cursors, the log surviving a reopen, and slow consumers cut with a bound.
#include "controlplane/lifecycle_log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "common/crypto.h"
#include "controlplane/app_store.h"

namespace relay::controlplane {
namespace {

class LifecycleLogTest : public ::testing::Test {
 protected:
  LifecycleLogTest()
      : dir_(std::filesystem::temp_directory_path() / ("relay-lc-" + common::RandomHex(6))),
        clock_(1'800'000'000'000) {
    std::filesystem::create_directories(dir_);
    Reopen();
  }
  ~LifecycleLogTest() override {
    log_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Reopen(LifecycleLogOptions options = {}) {
    log_.reset();
    store_.reset();
    auto store = AppStore::Open(dir_.string());
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    log_ = std::make_unique<LifecycleLog>(dir_.string(), store_->writer(), options, clock_);
    ASSERT_TRUE(log_->Open().ok());
  }

  void Occupied(const std::string& app, const std::string& channel) {
    log_->Record(app, Webhooks::ChannelEvent("channel_occupied", channel));
  }

  absl::StatusOr<std::shared_ptr<LifecycleWatcher>> Watch(const std::string& app,
                                                          std::optional<uint64_t> since,
                                                          LifecycleFilter filter = {}) {
    return log_->Watch(app, std::move(filter), since, [this] { ++wakes_; });
  }

  // Every event the watcher gets until nothing more comes (the writer idle), and how it ended.
  std::vector<uint64_t> Drain(LifecycleWatcher& w, std::optional<absl::Status>* end = nullptr) {
    std::vector<uint64_t> cursors;
    for (int idle = 0; idle < 3;) {
      log_->Flush();
      LifecycleWatcher::Next next = w.Take();
      if (next.event) {
        cursors.push_back(next.event->cursor());
        idle = 0;
      } else if (next.end) {
        if (end != nullptr) *end = next.end;
        break;
      } else {
        ++idle;
      }
    }
    return cursors;
  }

  std::filesystem::path dir_;
  common::ManualClock clock_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<LifecycleLog> log_;
  std::atomic<int> wakes_{0};
};

std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t c = from; c <= to; ++c) out.push_back(c);
  return out;
}

TEST_F(LifecycleLogTest, ReplaysFromACursorThenGoesLive) {
  for (int i = 0; i < 5; ++i) Occupied("a1", "c" + std::to_string(i));
  Occupied("a2", "other");  // another app's log: its own cursors
  auto all = Watch("a1", 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(Drain(**all), Range(1, 5));
  auto after3 = Watch("a1", 3);
  ASSERT_TRUE(after3.ok());
  auto live = Watch("a1", std::nullopt);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(Drain(**after3), Range(4, 5));
  EXPECT_TRUE(Drain(**live).empty());
  Occupied("a1", "c5");
  log_->Record("a1", Webhooks::MemberEvent("member_added", "presence-x", "u1"));
  EXPECT_EQ(Drain(**all), Range(6, 7));
  EXPECT_EQ(Drain(**after3), Range(6, 7));
  EXPECT_EQ(Drain(**live), Range(6, 7));
  EXPECT_GT(wakes_.load(), 0);  // live watchers were woken by the commits
  auto a2 = Watch("a2", 0);
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(Drain(**a2), Range(1, 1));
}

TEST_F(LifecycleLogTest, EventsCarryTheirFields) {
  log_->Record("a1", Webhooks::ClientEvent("private-c", "client-x", "{\"k\":1}", "1.2", ""));
  log_->Record("a1", Webhooks::SubscriptionCountEvent("c", 7));
  auto w = Watch("a1", 0);
  ASSERT_TRUE(w.ok());
  log_->Flush();
  (*w)->Take();  // starts the catch-up read
  log_->Flush();
  auto first = (*w)->Take();
  ASSERT_TRUE(first.event);
  EXPECT_EQ(first.event->name(), "client_event");
  EXPECT_EQ(first.event->channel(), "private-c");
  EXPECT_EQ(first.event->event(), "client-x");
  EXPECT_EQ(first.event->data(), "{\"k\":1}");
  EXPECT_EQ(first.event->socket_id(), "1.2");
  EXPECT_EQ(first.event->time_ms(), clock_.NowUnixMs());
  auto second = (*w)->Take();
  ASSERT_TRUE(second.event);
  EXPECT_EQ(second.event->name(), "subscription_count");
  EXPECT_EQ(second.event->subscription_count(), 7u);
}

TEST_F(LifecycleLogTest, FiltersByTypeAndPrefixButCursorsStayTheLogs) {
  Occupied("a1", "orders-1");
  log_->Record("a1", Webhooks::MemberEvent("member_added", "presence-orders", "u"));
  Occupied("a1", "chat-1");
  Occupied("a1", "orders-2");
  LifecycleFilter filter;
  filter.names = {"channel_occupied"};
  filter.prefix = "orders-";
  auto w = Watch("a1", 0, filter);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(Drain(**w), (std::vector<uint64_t>{1, 4}));
  Occupied("a1", "chat-2");
  Occupied("a1", "orders-3");
  EXPECT_EQ(Drain(**w), (std::vector<uint64_t>{6}));
}

TEST_F(LifecycleLogTest, CatchUpIsPagedAndBoundedByTheBuffer) {
  LifecycleLogOptions options;
  options.page_events = 4;
  options.watch.buffer_events = 3;
  Reopen(options);
  for (int i = 0; i < 50; ++i) Occupied("a1", "c" + std::to_string(i));
  auto w = Watch("a1", 0);
  ASSERT_TRUE(w.ok());
  // Never more than a page (capped by the buffer) waits for the consumer: it is not cut, and
  // it gets everything in order.
  std::optional<absl::Status> end;
  EXPECT_EQ(Drain(**w, &end), Range(1, 50));
  EXPECT_FALSE(end.has_value());
}

TEST_F(LifecycleLogTest, SlowLiveConsumerIsCutAndResumesFromItsCursor) {
  LifecycleLogOptions options;
  options.watch.buffer_events = 3;
  Reopen(options);
  Occupied("a1", "c0");
  auto w = Watch("a1", std::nullopt);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(Drain(**w).empty());  // now at the end of the log
  for (int i = 1; i <= 5; ++i) Occupied("a1", "c" + std::to_string(i));
  log_->Flush();  // committed and pushed while the consumer does not take
  auto next = (*w)->Take();
  ASSERT_TRUE(next.end.has_value());
  EXPECT_EQ(next.end->code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(next.end->message().find("since_cursor"), std::string::npos);
  EXPECT_EQ(log_->stats().cut, 1u);
  log_->Close(*w);
  auto resumed = Watch("a1", 1);
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(Drain(**resumed), Range(2, 6));
}

TEST_F(LifecycleLogTest, CursorNeverGivenOutIsInvalid) {
  Occupied("a1", "c");
  auto w = Watch("a1", 2);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Watch("a1", 1).ok());
}

TEST_F(LifecycleLogTest, PrunedByAgeGivesOutOfRangeNeverAGap) {
  LifecycleLogOptions options;
  options.retention = std::chrono::seconds(10);
  Reopen(options);
  for (int i = 0; i < 3; ++i) Occupied("a1", "old");
  clock_.Advance(std::chrono::seconds(11));
  for (int i = 0; i < 2; ++i) Occupied("a1", "new");
  log_->Flush();
  log_->PruneNow();
  EXPECT_EQ(log_->stats().pruned, 3u);
  EXPECT_EQ(log_->stats().events, 2u);
  for (uint64_t since : {1, 2}) {
    auto w = Watch("a1", since);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_NE(w.status().message().find("pruned"), std::string::npos);
  }
  auto at3 = Watch("a1", 3);  // its successor is still there
  ASSERT_TRUE(at3.ok());
  EXPECT_EQ(Drain(**at3), Range(4, 5));
  auto oldest = Watch("a1", 0);
  ASSERT_TRUE(oldest.ok());
  EXPECT_EQ(Drain(**oldest), Range(4, 5));
}

TEST_F(LifecycleLogTest, PrunedByCountAndPruningDuringCatchUpEndsTheStream) {
  LifecycleLogOptions options;
  options.max_events_per_app = 4;
  options.page_events = 2;
  options.watch.buffer_events = 2;
  Reopen(options);
  for (int i = 0; i < 6; ++i) Occupied("a1", "c");
  log_->Flush();
  auto slow = Watch("a1", 0);  // starts at 1, before the prune
  ASSERT_TRUE(slow.ok());
  log_->PruneNow();
  EXPECT_EQ(log_->stats().events, 4u);
  std::optional<absl::Status> end;
  Drain(**slow, &end);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), absl::StatusCode::kOutOfRange);
  auto w = Watch("a1", 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kOutOfRange);
  auto ok = Watch("a1", 2);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Drain(**ok), Range(3, 6));
}

TEST_F(LifecycleLogTest, SurvivesAReopenWithItsCursorsAndPrunedMark) {
  LifecycleLogOptions options;
  options.max_events_per_app = 3;
  Reopen(options);
  for (int i = 0; i < 5; ++i) Occupied("a1", "c");
  log_->Flush();
  log_->PruneNow();
  Reopen(options);
  auto w = Watch("a1", 2);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(Drain(**w), Range(3, 5));
  Occupied("a1", "c");  // numbering goes on after the reopen
  EXPECT_EQ(Drain(**w), Range(6, 6));
  auto pruned = Watch("a1", 1);
  ASSERT_FALSE(pruned.ok());
  EXPECT_EQ(pruned.status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(LifecycleLogTest, RemovedAppEndsItsWatchersAndDeletesItsLog) {
  Occupied("a1", "c");
  auto w = Watch("a1", std::nullopt);
  ASSERT_TRUE(w.ok());
  log_->Flush();
  log_->RemoveApp("a1");
  log_->Flush();
  std::optional<absl::Status> end;
  Drain(**w, &end);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(log_->stats().events, 0u);
  auto again = Watch("a1", 0);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(Drain(**again).empty());
}

TEST_F(LifecycleLogTest, WatcherLimits) {
  LifecycleLogOptions options;
  options.watch.max_watchers = 3;
  options.watch.max_watchers_per_app = 2;
  Reopen(options);
  auto a = Watch("a1", std::nullopt);
  auto b = Watch("a1", std::nullopt);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Watch("a1", std::nullopt).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(Watch("a2", std::nullopt).ok());
  EXPECT_EQ(Watch("a3", std::nullopt).status().code(), absl::StatusCode::kUnavailable);
  log_->Close(*a);
  log_->Close(*a);  // idempotent
  EXPECT_TRUE(Watch("a1", std::nullopt).ok());
  EXPECT_EQ(log_->stats().watchers, 3u);
  log_->Stop();
  std::optional<absl::Status> end;
  Drain(**b, &end);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace relay::controlplane
