// File: ack_wait.h
// What makes an accepted publish mean "received by the data planes": the answer to an
// event-sending request (trigger, batch, send-to-user, terminate) waits until every node stream
// the request's commands were queued to has acknowledged them (NodeMessage.ack >= the command's
// seq). One AckWait per request collects the (stream, seq) pairs as the commands are queued; one
// AckLedger per node stream holds the waits for the seqs it has not acknowledged yet, in seq
// order; AckTracker bounds how many requests wait at once, times them out (one thread for all of
// them, never one per request) and keeps the figures for /metrics.
//
// Outcome of a wait: OK once every stream acked; UNAVAILABLE (RetryLaterError, Retry-After: 1)
// when a stream ended before its ack or the acks took longer than the timeout. A refused wait's
// event may have reached some nodes (the Pusher API has no idempotency key).
// Thread-safe. The done callback runs once, on whichever thread settles the wait (a node link
// read, a stream's end, the timer, or Seal's caller), with no lock of this file held: it must not
// block.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

namespace relay::controlplane {

class AckTracker;

// Why a request was refused for want of an ack (metrics label).
enum class AckRefusal { kStreamEnded = 0, kTimeout = 1, kTooManyWaiting = 2 };
inline constexpr int kAckRefusalKinds = 3;

class AckWait {
 public:
  using Done = absl::AnyInvocable<void(absl::Status) &&>;
  // Use AckTracker::Begin.
  AckWait(AckTracker* tracker, std::chrono::steady_clock::time_point start);
  ~AckWait();
  AckWait(const AckWait&) = delete;
  AckWait& operator=(const AckWait&) = delete;

  // No more commands will be queued for this request. Returns the outcome when it is already
  // known (every ack in, or a failure); otherwise `done` is called once with it later.
  std::optional<absl::Status> Seal(Done done);
  // Whether Seal would have to wait now. Once every command is queued, false stays false (no
  // more acks become awaited), so Seal then returns the outcome at once.
  bool Waiting();

  // AckLedger's side: one more ack awaited, one arrived, or a stream ended first.
  void Expect();
  void Acked();
  void Fail(AckRefusal why);
  // AckTracker's timer.
  void Expire() { Fail(AckRefusal::kTimeout); }

 private:
  // Settles with `outcome` (the first call wins) and returns the callback to run, if sealed.
  Done SettleLocked(absl::Status outcome, std::optional<AckRefusal> why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a sealed request's outcome: its wait time, or its refusal.
  void Count() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AckTracker* const tracker_;
  const std::chrono::steady_clock::time_point start_;
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool sealed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> outcome_ ABSL_GUARDED_BY(mu_);
  std::optional<AckRefusal> refusal_ ABSL_GUARDED_BY(mu_);
  Done done_ ABSL_GUARDED_BY(mu_);
  bool released_ = false;  // the tracker's slot was given back (once, at the outcome)
};

// One node stream's unacknowledged commands that a request waits for, in seq order. Watch is
// called with increasing seqs (under the stream's outbox lock, where seqs are assigned).
class AckLedger {
 public:
  // `wait` waits for `seq` on this stream: nothing when it is acked already, a failure when the
  // stream has ended.
  void Watch(uint64_t seq, const std::shared_ptr<AckWait>& wait);
  // The peer acknowledged every seq <= `ack`.
  void Acked(uint64_t ack);
  // The stream ended: whatever is still awaited on it fails.
  void End();
  // Commands waited for and not acknowledged yet.
  size_t waiting() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::pair<uint64_t, std::shared_ptr<AckWait>>> waits_ ABSL_GUARDED_BY(mu_);
};

struct AckTrackerOptions {
  // A request whose acks have not all come after this long is refused (503).
  std::chrono::milliseconds timeout{2000};
  // Requests waiting for acks at once; beyond, new event-sending requests are refused (503)
  // before anything is sent.
  size_t max_waiting = 10000;
};

class AckTracker {
 public:
  explicit AckTracker(AckTrackerOptions options);
  ~AckTracker();  // Stop()

  // A wait for one request, or null when max_waiting requests wait already (counted; the caller
  // refuses the request before sending anything).
  std::shared_ptr<AckWait> Begin();
  // Fails every wait still pending (shutdown) and stops the timer. Idempotent.
  void Stop();

  size_t waiting() const { return waiting_.load(std::memory_order_relaxed); }
  uint64_t refused(AckRefusal why) const {
    return refused_[static_cast<int>(why)].load(std::memory_order_relaxed);
  }
  // Time from Begin to the outcome of requests that were answered OK.
  common::HistogramData WaitTimes() const;
  const AckTrackerOptions& options() const { return options_; }

 private:
  friend class AckWait;
  void Release();
  void CountRefusal(AckRefusal why);
  void Observe(std::chrono::steady_clock::duration waited);
  void Timer();

  const AckTrackerOptions options_;
  std::atomic<size_t> waiting_{0};
  std::array<std::atomic<uint64_t>, kAckRefusalKinds> refused_{};
  // The wait-time histogram: several writers (any thread settles), so atomic adds.
  std::array<std::atomic<uint64_t>, common::kLatencyBucketsSeconds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
  std::atomic<uint64_t> count_{0};

  // Deadlines in Begin order (a fixed timeout, so almost sorted; the timer handles the front).
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::weak_ptr<AckWait>>> deadlines_;
  bool stopping_ = false;
  std::thread timer_;
};

}  // namespace relay::controlplane
