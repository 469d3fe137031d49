#include "controlplane/channel_watch.h"

#include <algorithm>

#include "common/strings.h"

namespace relay::controlplane {

bool WatchFilter::Matches(std::string_view channel) const {
  if (channels.empty() && prefix.empty()) return true;
  if (!prefix.empty() && channel.substr(0, prefix.size()) == prefix) return true;
  return channels.contains(common::AbslView(channel));
}

ChannelWatcher::ChannelWatcher(std::string app_id, WatchFilter filter,
                               const ChannelWatchOptions& options, std::function<void()> wake,
                               std::atomic<uint64_t>* streamed)
    : app_id_(std::move(app_id)),
      filter_(std::move(filter)),
      max_events_(options.buffer_events),
      max_bytes_(options.buffer_bytes),
      wake_(std::move(wake)),
      streamed_(streamed) {}

ChannelWatcher::Next ChannelWatcher::Take() {
  absl::MutexLock lock(&mu_);
  Next next;
  if (!queue_.empty()) {
    next.event = std::move(queue_.front().first);
    bytes_ -= queue_.front().second;
    queue_.pop_front();
    streamed_->fetch_add(1, std::memory_order_relaxed);
  } else if (end_) {
    next.end = end_;
  } else {
    waiting_ = true;
  }
  return next;
}

ChannelWatcher::Pushed ChannelWatcher::Push(const Event& event, size_t bytes) {
  absl::MutexLock lock(&mu_);
  Pushed result;
  if (end_) return result;
  if (queue_.size() + 1 > max_events_ || bytes_ + bytes > max_bytes_) {
    // Cut at once rather than let the stream catch up: what waited is freed now, and the
    // caller learns how much it lost (the events that waited and this one).
    size_t missed = queue_.size() + 1;
    queue_.clear();
    bytes_ = 0;
    end_ = absl::ResourceExhaustedError(common::StrCat(
        "watcher too slow: it missed ", missed, " events (more than ", max_events_, " events or ",
        max_bytes_,
        " bytes were waiting to be sent to it); events are not replayed, watch again to go on"));
    result.cut = true;
  } else {
    bytes_ += bytes;
    queue_.emplace_back(event, bytes);
  }
  result.wake = waiting_;
  waiting_ = false;
  return result;
}

bool ChannelWatcher::End(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (end_) return false;
  end_ = std::move(status);
  bool wake = waiting_;
  waiting_ = false;
  return wake;
}

ChannelWatch::ChannelWatch(ChannelWatchOptions options) : options_(options) {}

absl::StatusOr<std::shared_ptr<ChannelWatcher>> ChannelWatch::Open(const std::string& app_id,
                                                                   WatchFilter filter,
                                                                   std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError("the control plane is shutting down; watch again later");
  }
  if (open_watchers_.size() >= options_.max_watchers) {
    return absl::UnavailableError(
        common::StrCat("this control plane has ", options_.max_watchers,
                       " watchers open, its limit (--max-watchers); try again later"));
  }
  AppWatchers& app = apps_[app_id];
  if (app.open >= options_.max_watchers_per_app) {
    return absl::ResourceExhaustedError(common::StrCat(
        "app '", app_id, "' has ", app.open,
        " watchers open, the limit per app (--max-watchers-per-app); close one first"));
  }
  auto watcher = std::make_shared<ChannelWatcher>(app_id, std::move(filter), options_,
                                                  std::move(wake), &streamed_);
  app.live.push_back(watcher);
  ++app.open;
  open_watchers_.insert(watcher.get());
  open_.store(open_watchers_.size(), std::memory_order_relaxed);
  return watcher;
}

bool ChannelWatch::Unlink(const ChannelWatcher* watcher) {
  auto it = apps_.find(watcher->app_id());
  if (it == apps_.end()) return false;
  auto& live = it->second.live;
  auto found =
      std::find_if(live.begin(), live.end(), [&](const auto& w) { return w.get() == watcher; });
  if (found == live.end()) return false;
  live.erase(found);
  return true;
}

void ChannelWatch::Close(const std::shared_ptr<ChannelWatcher>& watcher) {
  absl::MutexLock lock(&mu_);
  Unlink(watcher.get());
  if (open_watchers_.erase(watcher.get()) == 0) return;
  open_.store(open_watchers_.size(), std::memory_order_relaxed);
  auto it = apps_.find(watcher->app_id());
  if (it != apps_.end() && --it->second.open == 0) apps_.erase(it);
}

bool ChannelWatch::Wants(std::string_view app_id) const {
  if (open_.load(std::memory_order_relaxed) == 0) return false;
  absl::ReaderMutexLock lock(&mu_);
  auto it = apps_.find(common::AbslView(app_id));
  return it != apps_.end() && !it->second.live.empty();
}

void ChannelWatch::Publish(const std::string& app_id, relay::v1::ChannelEvent event) {
  std::vector<std::shared_ptr<ChannelWatcher>> wake, cut;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = apps_.find(app_id);
    if (it == apps_.end()) return;
    ChannelWatcher::Event shared;
    size_t bytes = 0;
    for (const auto& w : it->second.live) {
      // `event` is moved into `shared` at the first match.
      if (!w->filter().Matches(shared ? shared->channel() : event.channel())) continue;
      if (!shared) {
        // One copy, whatever the number of watchers.
        bytes = event.ByteSizeLong();
        shared = std::make_shared<const relay::v1::ChannelEvent>(std::move(event));
      }
      ChannelWatcher::Pushed pushed = w->Push(shared, bytes);
      if (pushed.wake) wake.push_back(w);
      if (pushed.cut) cut.push_back(w);
    }
  }
  if (!cut.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& w : cut) {
      if (Unlink(w.get())) cut_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  for (const auto& w : wake) w->wake_();
}

void ChannelWatch::CloseApp(const std::string& app_id, const absl::Status& why) {
  std::vector<std::shared_ptr<ChannelWatcher>> ended;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(app_id);
    if (it == apps_.end()) return;
    ended.swap(it->second.live);
  }
  for (const auto& w : ended) {
    if (w->End(why)) w->wake_();
  }
}

void ChannelWatch::CloseAll(const absl::Status& why) {
  std::vector<std::shared_ptr<ChannelWatcher>> ended;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& [app, watchers] : apps_) {
      for (auto& w : watchers.live) ended.push_back(std::move(w));
      watchers.live.clear();
    }
  }
  for (const auto& w : ended) {
    if (w->End(why)) w->wake_();
  }
}

}  // namespace relay::controlplane
