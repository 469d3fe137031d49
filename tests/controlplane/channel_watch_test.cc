// ChannelWatch, the watchers behind Channels.WatchChannelEvents, as its consumer (the gRPC stream)
// sees it: which events each watcher gets and in which order, when it is woken, how a watcher that
// falls behind is cut (and what it is told), the limits on watchers, and how watchers end.
#include "controlplane/channel_watch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

relay::v1::ChannelEvent Event(const std::string& channel, const std::string& name,
                              const std::string& data = "{}") {
  relay::v1::ChannelEvent e;
  e.set_channel(channel);
  e.set_event(name);
  e.set_data(data);
  e.set_source(relay::v1::ChannelEvent::SOURCE_API);
  return e;
}

WatchFilter Filter(std::vector<std::string> channels, std::string prefix = "") {
  WatchFilter f;
  for (auto& c : channels) f.channels.insert(std::move(c));
  f.prefix = std::move(prefix);
  return f;
}

// Takes everything that waits: "channel:event" each, then "end:<code>" when the watcher ended.
std::vector<std::string> Drain(ChannelWatcher& w) {
  std::vector<std::string> out;
  while (true) {
    ChannelWatcher::Next next = w.Take();
    if (next.event) {
      out.push_back(next.event->channel() + ":" + next.event->event());
    } else {
      if (next.end) out.push_back("end:" + absl::StatusCodeToString(next.end->code()));
      return out;
    }
  }
}

std::shared_ptr<ChannelWatcher> Open(ChannelWatch& watch, const std::string& app,
                                     WatchFilter filter, std::atomic<int>* wakes = nullptr) {
  auto w = watch.Open(app, std::move(filter), [wakes] {
    if (wakes != nullptr) wakes->fetch_add(1);
  });
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : nullptr;
}

TEST(ChannelWatchTest, EachWatcherGetsTheEventsOfItsChannelsInOrder) {
  ChannelWatch watch;
  auto exact = Open(watch, "a", Filter({"private-x", "y"}));
  auto prefixed = Open(watch, "a", Filter({}, "private-"));
  auto both = Open(watch, "a", Filter({"y"}, "presence-"));
  auto all = Open(watch, "a", Filter({}));
  auto other_app = Open(watch, "b", Filter({}));
  EXPECT_TRUE(watch.Wants("a"));
  EXPECT_FALSE(watch.Wants("c"));

  for (const auto& [channel, name] :
       std::vector<std::pair<std::string, std::string>>{{"private-x", "1"},
                                                        {"y", "2"},
                                                        {"private-z", "3"},
                                                        {"presence-p", "4"},
                                                        {"yy", "5"},
                                                        {"private-x", "6"}}) {
    watch.Publish("a", Event(channel, name));
  }
  EXPECT_EQ(Drain(*exact), (std::vector<std::string>{"private-x:1", "y:2", "private-x:6"}));
  EXPECT_EQ(Drain(*prefixed),
            (std::vector<std::string>{"private-x:1", "private-z:3", "private-x:6"}));
  EXPECT_EQ(Drain(*both), (std::vector<std::string>{"y:2", "presence-p:4"}));
  EXPECT_EQ(Drain(*all), (std::vector<std::string>{"private-x:1", "y:2", "private-z:3",
                                                   "presence-p:4", "yy:5", "private-x:6"}));
  EXPECT_TRUE(Drain(*other_app).empty());
  EXPECT_EQ(watch.streamed(), 14u);
}

TEST(ChannelWatchTest, AWaitingConsumerIsWokenOnceAndABusyOneNotAtAll) {
  ChannelWatch watch;
  std::atomic<int> wakes{0};
  auto w = Open(watch, "a", Filter({}), &wakes);
  watch.Publish("a", Event("c", "before-the-first-take"));
  EXPECT_EQ(wakes.load(), 0);  // the consumer has not looked yet: it takes this one first
  EXPECT_EQ(Drain(*w), std::vector<std::string>{"c:before-the-first-take"});
  // Drain ended with a Take that found nothing: the consumer waits now.
  watch.Publish("a", Event("c", "1"));
  watch.Publish("a", Event("c", "2"));
  EXPECT_EQ(wakes.load(), 1);
  ChannelWatcher::Next busy = w->Take();  // writing "1"
  ASSERT_TRUE(busy.event);
  watch.Publish("a", Event("c", "3"));
  EXPECT_EQ(wakes.load(), 1);
  EXPECT_EQ(Drain(*w), (std::vector<std::string>{"c:2", "c:3"}));
}

TEST(ChannelWatchTest, AWatcherOverItsEventBoundIsCutToldHowManyItMissedAndFreed) {
  ChannelWatchOptions options;
  options.buffer_events = 3;
  ChannelWatch watch(options);
  std::atomic<int> slow_wakes{0};
  auto slow = Open(watch, "a", Filter({}), &slow_wakes);
  auto fast = Open(watch, "a", Filter({}));
  ASSERT_TRUE(Drain(*slow).empty());  // waiting
  ASSERT_TRUE(slow->Take().event == nullptr);
  for (int i = 1; i <= 5; ++i) {
    watch.Publish("a", Event("c", std::to_string(i)));
    if (i <= 2) {
      EXPECT_EQ(Drain(*fast).size(), 1u);
    }
  }
  // The fast one kept up; the slow one was woken by the first event and never took it.
  EXPECT_EQ(Drain(*fast), (std::vector<std::string>{"c:3", "c:4", "c:5"}));
  EXPECT_EQ(slow_wakes.load(), 1);
  EXPECT_EQ(watch.cut(), 1u);
  ChannelWatcher::Next next = slow->Take();
  EXPECT_EQ(next.event, nullptr);  // what waited was dropped at once, not sent late
  ASSERT_TRUE(next.end);
  EXPECT_EQ(next.end->code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(next.end->message().find("missed 4 events"), std::string_view::npos)
      << next.end->message();
  // Later events go to the fast one only.
  watch.Publish("a", Event("c", "6"));
  EXPECT_EQ(Drain(*fast), std::vector<std::string>{"c:6"});
  EXPECT_EQ(Drain(*slow), std::vector<std::string>{"end:RESOURCE_EXHAUSTED"});
  // It counts as open until its stream is done (what is on its way is still held).
  EXPECT_EQ(watch.open(), 2u);
  watch.Close(slow);
  EXPECT_EQ(watch.open(), 1u);
}

TEST(ChannelWatchTest, AWatcherOverItsByteBoundIsCut) {
  ChannelWatchOptions options;
  options.buffer_bytes = 1000;
  ChannelWatch watch(options);
  auto w = Open(watch, "a", Filter({}));
  watch.Publish("a", Event("c", "small", std::string(400, 'x')));
  watch.Publish("a", Event("c", "small", std::string(400, 'x')));
  EXPECT_EQ(watch.cut(), 0u);
  watch.Publish("a", Event("c", "too-much", std::string(400, 'x')));
  EXPECT_EQ(watch.cut(), 1u);
  ChannelWatcher::Next next = w->Take();
  ASSERT_TRUE(next.end);
  EXPECT_NE(next.end->message().find("missed 3 events"), std::string_view::npos);
}

TEST(ChannelWatchTest, WatchersAreBoundedPerAppAndInAll) {
  ChannelWatchOptions options;
  options.max_watchers = 3;
  options.max_watchers_per_app = 2;
  ChannelWatch watch(options);
  auto a1 = Open(watch, "a", Filter({}));
  auto a2 = Open(watch, "a", Filter({}));
  auto a3 = watch.Open("a", Filter({}), [] {});
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(a3.status().message().find("--max-watchers-per-app"), std::string_view::npos);
  auto b1 = Open(watch, "b", Filter({}));
  auto b2 = watch.Open("b", Filter({}), [] {});
  EXPECT_EQ(b2.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b2.status().message().find("--max-watchers"), std::string_view::npos);
  // A closed watcher frees its place, and is closed once whatever the number of calls.
  watch.Close(a1);
  watch.Close(a1);
  EXPECT_EQ(watch.open(), 2u);
  EXPECT_TRUE(watch.Open("a", Filter({}), [] {}).ok());
  EXPECT_FALSE(watch.Open("b", Filter({}), [] {}).ok());
}

TEST(ChannelWatchTest, ACutWatcherHoldsItsPlaceUntilItsStreamIsDone) {
  ChannelWatchOptions options;
  options.max_watchers_per_app = 1;
  options.buffer_events = 1;
  ChannelWatch watch(options);
  auto w = Open(watch, "a", Filter({}));
  watch.Publish("a", Event("c", "1"));
  watch.Publish("a", Event("c", "2"));
  ASSERT_EQ(watch.cut(), 1u);
  EXPECT_EQ(watch.Open("a", Filter({}), [] {}).status().code(),
            absl::StatusCode::kResourceExhausted);
  watch.Close(w);
  EXPECT_TRUE(watch.Open("a", Filter({}), [] {}).ok());
}

TEST(ChannelWatchTest, AnAppsWatchersEndAfterWhatWaitsWhenTheAppGoes) {
  ChannelWatch watch;
  std::atomic<int> wakes{0};
  auto busy = Open(watch, "a", Filter({}));
  auto waiting = Open(watch, "a", Filter({}), &wakes);
  auto other = Open(watch, "b", Filter({}));
  ASSERT_TRUE(Drain(*waiting).empty());
  watch.Publish("a", Event("c", "1"));
  EXPECT_EQ(wakes.load(), 1);
  ASSERT_TRUE(waiting->Take().event);  // writing it
  watch.CloseApp("a", absl::NotFoundError("app 'a' was deleted"));
  EXPECT_EQ(wakes.load(), 1);  // busy writing: it finds the end when its write is done
  EXPECT_EQ(Drain(*waiting), std::vector<std::string>{"end:NOT_FOUND"});
  EXPECT_EQ(Drain(*busy), (std::vector<std::string>{"c:1", "end:NOT_FOUND"}));
  EXPECT_FALSE(watch.Wants("a"));
  EXPECT_EQ(watch.open(), 3u);  // until their streams are done
  watch.Close(busy);
  watch.Close(waiting);
  EXPECT_EQ(watch.open(), 1u);
  watch.Publish("a", Event("c", "2"));  // nobody watches it any more
  EXPECT_TRUE(Drain(*other).empty());
}

TEST(ChannelWatchTest, ShutdownEndsEveryWatcherAndRefusesNewOnes) {
  ChannelWatch watch;
  std::atomic<int> wakes{0};
  auto w = Open(watch, "a", Filter({}), &wakes);
  ASSERT_TRUE(Drain(*w).empty());
  watch.CloseAll(absl::UnavailableError("the control plane is shutting down"));
  EXPECT_EQ(wakes.load(), 1);
  EXPECT_EQ(Drain(*w), std::vector<std::string>{"end:UNAVAILABLE"});
  watch.Close(w);
  EXPECT_EQ(watch.open(), 0u);
  EXPECT_EQ(watch.Open("a", Filter({}), [] {}).status().code(), absl::StatusCode::kUnavailable);
}

// Publishers on several threads and a consumer that takes only when woken (as the gRPC stream
// does): every event arrives once, each publisher's in its order, and nothing is lost between
// a Take that found nothing and the wake.
TEST(ChannelWatchTest, AConsumerWokenByConcurrentPublishersMissesNothing) {
  ChannelWatchOptions options;
  options.buffer_events = 1'000'000;
  options.buffer_bytes = 1u << 30;
  ChannelWatch watch(options);
  absl::Mutex mu;
  std::vector<std::string> got;
  std::shared_ptr<ChannelWatcher> w;
  absl::Mutex take_mu;  // the stream takes one at a time, like one write in flight
  std::function<void()> pump = [&] {
    absl::MutexLock take(&take_mu);
    while (true) {
      ChannelWatcher::Next next = w->Take();
      if (!next.event) return;
      absl::MutexLock lock(&mu);
      got.push_back(next.event->event());
    }
  };
  auto opened = watch.Open("a", Filter({}), [&] { pump(); });
  ASSERT_TRUE(opened.ok());
  w = *opened;
  pump();
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        watch.Publish("a", Event("c", std::to_string(t) + "." + std::to_string(i)));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(testutil::WaitFor([&] {
    absl::MutexLock lock(&mu);
    return got.size() == kThreads * kEach;
  }));
  absl::MutexLock lock(&mu);
  std::vector<int> next(kThreads, 0);
  for (const auto& e : got) {
    int t = std::stoi(e.substr(0, e.find('.')));
    EXPECT_EQ(std::stoi(e.substr(e.find('.') + 1)), next[t]++) << e;
  }
  EXPECT_EQ(watch.cut(), 0u);
}

}  // namespace
}  // namespace relay::controlplane
