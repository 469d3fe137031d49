#include "controlplane/ack_wait.h"

#include <utility>

#include "controlplane/route_gate.h"

namespace relay::controlplane {

namespace {

absl::Status Refusal(AckRefusal why, std::chrono::milliseconds timeout) {
  switch (why) {
    case AckRefusal::kStreamEnded:
      return RetryLaterError(
          "a data plane's link ended before it confirmed the event; it may have reached some "
          "subscribers, retry to reach the others",
          1);
    case AckRefusal::kTimeout:
      return RetryLaterError(
          "a data plane did not confirm the event within " + std::to_string(timeout.count()) +
              " ms; it may have reached some subscribers, retry to reach the others",
          1);
    case AckRefusal::kTooManyWaiting:
      break;
  }
  return RetryLaterError(
      "too many requests are waiting for the data planes to confirm their events; nothing was "
      "sent, retry shortly",
      1);
}

}  // namespace

AckWait::AckWait(AckTracker* tracker, std::chrono::steady_clock::time_point start)
    : tracker_(tracker), start_(start) {}

AckWait::~AckWait() {
  // Never settled (the request failed before it was sealed): the slot goes back here.
  if (!released_) tracker_->Release();
}

AckWait::Done AckWait::SettleLocked(absl::Status outcome, std::optional<AckRefusal> why) {
  if (outcome_) return nullptr;
  outcome_ = std::move(outcome);
  refusal_ = why;
  released_ = true;
  tracker_->Release();
  if (!sealed_) return nullptr;  // Seal() reports (and counts) the outcome
  Count();
  return std::move(done_);
}

void AckWait::Count() {
  if (refusal_) {
    tracker_->CountRefusal(*refusal_);
  } else {
    tracker_->Observe(std::chrono::steady_clock::now() - start_);
  }
}

std::optional<absl::Status> AckWait::Seal(Done done) {
  absl::MutexLock lock(&mu_);
  sealed_ = true;
  if (outcome_) {
    // Failed before the request was complete: a stream ended under it.
    Count();
    return *outcome_;
  }
  if (pending_ == 0) {
    SettleLocked(absl::OkStatus(), std::nullopt);
    return *outcome_;
  }
  done_ = std::move(done);
  return std::nullopt;
}

bool AckWait::Waiting() {
  absl::MutexLock lock(&mu_);
  return !outcome_ && pending_ > 0;
}

void AckWait::Expect() {
  absl::MutexLock lock(&mu_);
  ++pending_;
}

void AckWait::Acked() {
  Done done;
  absl::Status outcome;
  {
    absl::MutexLock lock(&mu_);
    if (--pending_ > 0 || !sealed_ || outcome_) return;
    done = SettleLocked(absl::OkStatus(), std::nullopt);
    outcome = *outcome_;
  }
  if (done) std::move(done)(std::move(outcome));
}

void AckWait::Fail(AckRefusal why) {
  Done done;
  absl::Status outcome;
  {
    absl::MutexLock lock(&mu_);
    if (outcome_) return;
    done = SettleLocked(Refusal(why, tracker_->options_.timeout), why);
    outcome = *outcome_;
  }
  if (done) std::move(done)(std::move(outcome));
}

void AckLedger::Watch(uint64_t seq, const std::shared_ptr<AckWait>& wait) {
  bool ended;
  {
    absl::MutexLock lock(&mu_);
    if (seq <= acked_) return;
    ended = ended_;
    if (!ended) {
      wait->Expect();
      waits_.emplace_back(seq, wait);
    }
  }
  if (ended) wait->Fail(AckRefusal::kStreamEnded);
}

void AckLedger::Acked(uint64_t ack) {
  std::vector<std::shared_ptr<AckWait>> done;
  {
    absl::MutexLock lock(&mu_);
    if (ack <= acked_) return;
    acked_ = ack;
    while (!waits_.empty() && waits_.front().first <= ack) {
      done.push_back(std::move(waits_.front().second));
      waits_.pop_front();
    }
  }
  for (auto& w : done) w->Acked();
}

void AckLedger::End() {
  std::deque<std::pair<uint64_t, std::shared_ptr<AckWait>>> failed;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    failed.swap(waits_);
  }
  for (auto& [seq, w] : failed) w->Fail(AckRefusal::kStreamEnded);
}

size_t AckLedger::waiting() const {
  absl::MutexLock lock(&mu_);
  return waits_.size();
}

AckTracker::AckTracker(AckTrackerOptions options) : options_(options) {
  timer_ = std::thread([this] { Timer(); });
}

AckTracker::~AckTracker() { Stop(); }

std::shared_ptr<AckWait> AckTracker::Begin() {
  // Reserve a slot first, so that concurrent Begins never overshoot the bound.
  if (waiting_.fetch_add(1, std::memory_order_relaxed) >= options_.max_waiting) {
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    CountRefusal(AckRefusal::kTooManyWaiting);
    return nullptr;
  }
  auto now = std::chrono::steady_clock::now();
  auto wait = std::make_shared<AckWait>(this, now);
  bool wake;
  bool stopped;
  {
    std::lock_guard lock(timer_mu_);
    stopped = stopping_;
    // Requests answered long ago need no deadline: the front is pruned as new ones come, so the
    // queue holds about the requests still waiting, not one entry per request of the timeout.
    while (!deadlines_.empty() && deadlines_.front().second.expired()) deadlines_.pop_front();
    wake = deadlines_.empty();
    if (!stopping_) deadlines_.emplace_back(now + options_.timeout, wait);
  }
  if (stopped) {
    wait->Fail(AckRefusal::kStreamEnded);  // shutting down: nothing will be acked
  } else if (wake) {
    timer_cv_.notify_one();
  }
  return wait;
}

void AckTracker::Release() { waiting_.fetch_sub(1, std::memory_order_relaxed); }

void AckTracker::CountRefusal(AckRefusal why) {
  refused_[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
}

void AckTracker::Observe(std::chrono::steady_clock::duration waited) {
  int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(waited).count();
  double seconds = static_cast<double>(micros) / 1e6;
  size_t i = 0;
  while (i < common::kLatencyBucketsSeconds.size() && seconds > common::kLatencyBucketsSeconds[i]) {
    ++i;
  }
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<uint64_t>(micros), std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

common::HistogramData AckTracker::WaitTimes() const {
  common::HistogramData out;
  out.bounds.assign(common::kLatencyBucketsSeconds.begin(), common::kLatencyBucketsSeconds.end());
  out.counts.resize(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) {
    out.counts[i] = buckets_[i].load(std::memory_order_relaxed);
    out.count += out.counts[i];
  }
  out.sum = static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6;
  return out;
}

void AckTracker::Timer() {
  std::unique_lock lock(timer_mu_);
  while (!stopping_) {
    if (deadlines_.empty()) {
      timer_cv_.wait(lock);
      continue;
    }
    auto [deadline, weak] = deadlines_.front();
    if (std::chrono::steady_clock::now() < deadline) {
      timer_cv_.wait_until(lock, deadline);
      continue;
    }
    deadlines_.pop_front();
    lock.unlock();
    if (auto wait = weak.lock()) wait->Expire();  // a settled wait ignores it
    lock.lock();
  }
}

void AckTracker::Stop() {
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::weak_ptr<AckWait>>> left;
  {
    std::lock_guard lock(timer_mu_);
    if (stopping_) return;
    stopping_ = true;
    left.swap(deadlines_);
  }
  timer_cv_.notify_one();
  if (timer_.joinable()) timer_.join();
  for (auto& [deadline, weak] : left) {
    if (auto wait = weak.lock()) wait->Fail(AckRefusal::kStreamEnded);
  }
}

}  // namespace relay::controlplane
