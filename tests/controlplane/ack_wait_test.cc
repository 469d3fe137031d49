// AckWait / AckLedger / AckTracker: an event-sending request is answered OK only once every node
// stream it was queued to has acknowledged it, and refused (UNAVAILABLE, Retry-After 1) when a
// stream ends first, the acks take longer than the timeout, or too many requests wait.
#include "controlplane/ack_wait.h"

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "controlplane/route_gate.h"

namespace relay::controlplane {
namespace {

using namespace std::chrono_literals;

// Records the outcome a sealed wait reports later.
struct Outcome {
  absl::Notification done;
  absl::Status status;
  AckWait::Done Callback() {
    return [this](absl::Status s) {
      status = std::move(s);
      done.Notify();
    };
  }
};

TEST(AckWaitTest, NothingQueuedIsOkAtOnce) {
  AckTracker tracker({});
  auto wait = tracker.Begin();
  ASSERT_NE(wait, nullptr);
  EXPECT_FALSE(wait->Waiting());
  auto outcome = wait->Seal(nullptr);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_TRUE(outcome->ok());
  EXPECT_EQ(tracker.waiting(), 0u);
}

TEST(AckWaitTest, AnsweredOnceEveryNodeAcked) {
  AckTracker tracker({});
  AckLedger a, b;
  auto wait = tracker.Begin();
  a.Watch(3, wait);
  b.Watch(7, wait);
  Outcome out;
  EXPECT_TRUE(wait->Waiting());
  EXPECT_FALSE(wait->Seal(out.Callback()).has_value());
  a.Acked(2);  // not yet the command's seq
  b.Acked(7);
  EXPECT_FALSE(out.done.HasBeenNotified());
  EXPECT_EQ(tracker.waiting(), 1u);
  a.Acked(5);  // an ack covers every earlier seq
  ASSERT_TRUE(out.done.HasBeenNotified());
  EXPECT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(tracker.waiting(), 0u);
  EXPECT_EQ(tracker.WaitTimes().count, 1u);
  EXPECT_EQ(a.waiting(), 0u);
}

TEST(AckWaitTest, AnAckBeforeTheSealStillCounts) {
  AckTracker tracker({});
  AckLedger a;
  auto wait = tracker.Begin();
  a.Watch(1, wait);
  a.Acked(1);
  EXPECT_FALSE(wait->Waiting());
  auto outcome = wait->Seal(nullptr);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_TRUE(outcome->ok());
  // A seq already acknowledged is not waited for at all.
  auto later = tracker.Begin();
  a.Watch(1, later);
  EXPECT_FALSE(later->Waiting());
}

TEST(AckWaitTest, ManyRequestsShareOneAck) {
  AckTracker tracker({});
  AckLedger a;
  std::vector<std::unique_ptr<Outcome>> outs;
  for (uint64_t seq = 1; seq <= 50; ++seq) {
    auto wait = tracker.Begin();
    a.Watch(seq, wait);
    outs.push_back(std::make_unique<Outcome>());
    EXPECT_FALSE(wait->Seal(outs.back()->Callback()).has_value());
  }
  EXPECT_EQ(tracker.waiting(), 50u);
  a.Acked(50);
  for (auto& o : outs) {
    ASSERT_TRUE(o->done.HasBeenNotified());
    EXPECT_TRUE(o->status.ok());
  }
  EXPECT_EQ(tracker.waiting(), 0u);
}

TEST(AckWaitTest, AStreamEndingBeforeItsAckRefusesTheRequest) {
  AckTracker tracker({});
  AckLedger a, b;
  auto wait = tracker.Begin();
  a.Watch(1, wait);
  b.Watch(1, wait);
  Outcome out;
  EXPECT_FALSE(wait->Seal(out.Callback()).has_value());
  a.Acked(1);
  b.End();
  ASSERT_TRUE(out.done.HasBeenNotified());
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(out.status), 1);
  EXPECT_NE(out.status.message().find("may have reached some"), std::string_view::npos);
  EXPECT_EQ(tracker.refused(AckRefusal::kStreamEnded), 1u);
  EXPECT_EQ(tracker.waiting(), 0u);
  // A command queued to a stream that has ended fails too; the refusal is told by Seal.
  auto late = tracker.Begin();
  b.Watch(2, late);
  auto outcome = late->Seal(nullptr);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(tracker.refused(AckRefusal::kStreamEnded), 2u);
}

TEST(AckWaitTest, NoAckWithinTheTimeoutRefusesTheRequest) {
  AckTracker tracker({.timeout = 50ms, .max_waiting = 10});
  AckLedger a;
  auto wait = tracker.Begin();
  a.Watch(1, wait);
  Outcome out;
  EXPECT_FALSE(wait->Seal(out.Callback()).has_value());
  ASSERT_TRUE(out.done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(out.status.message().find("within 50 ms"), std::string_view::npos) << out.status;
  EXPECT_EQ(tracker.refused(AckRefusal::kTimeout), 1u);
  EXPECT_EQ(tracker.waiting(), 0u);
  a.Acked(1);  // the late ack changes nothing
  EXPECT_EQ(tracker.WaitTimes().count, 0u);
}

TEST(AckWaitTest, TheNumberOfWaitingRequestsIsBounded) {
  AckTracker tracker({.timeout = 10s, .max_waiting = 2});
  auto w1 = tracker.Begin();
  auto w2 = tracker.Begin();
  ASSERT_NE(w1, nullptr);
  ASSERT_NE(w2, nullptr);
  EXPECT_EQ(tracker.Begin(), nullptr);
  EXPECT_EQ(tracker.refused(AckRefusal::kTooManyWaiting), 1u);
  // A request that failed before it was sealed gives its slot back when dropped.
  w1.reset();
  EXPECT_NE(tracker.Begin(), nullptr);
}

TEST(AckWaitTest, StopRefusesWhatWaits) {
  AckTracker tracker({.timeout = 10s, .max_waiting = 10});
  AckLedger a;
  auto wait = tracker.Begin();
  a.Watch(1, wait);
  Outcome out;
  EXPECT_FALSE(wait->Seal(out.Callback()).has_value());
  wait.reset();  // the ledger and the tracker's deadline keep it
  tracker.Stop();
  ASSERT_TRUE(out.done.HasBeenNotified());
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable);
  // After the stop, a new request is refused before anything is sent.
  auto late = tracker.Begin();
  ASSERT_NE(late, nullptr);
  auto outcome = late->Seal(nullptr);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->ok());
}

}  // namespace
}  // namespace relay::controlplane
