#include "controlplane/webhooks.h"

#include <simdjson.h>

#include <algorithm>
#include <random>
#include <set>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time.h"
#include "controlplane/app_store.h"

namespace relay::controlplane {
namespace {

// Retries of a commit the store did not take: 100 ms doubling up to 5 s.
constexpr int64_t kCommitRetryMinMs = 100;
constexpr int64_t kCommitRetryMaxMs = 5000;

const std::set<std::string>& KnownTypes() {
  static const std::set<std::string> kTypes = {
      "channel_occupied", "channel_vacated", "member_added",      "member_removed",
      "client_event",     "cache_miss",      "subscription_count"};
  return kTypes;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Pusher's webhook headers: the body signed with the app secret, plus the endpoint's own.
std::vector<std::pair<std::string, std::string>> SignedHeaders(const relay::v1::App& app,
                                                               const relay::v1::Webhook& hook,
                                                               const std::string& body) {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/json"},
      {"X-Pusher-Key", app.key()},
      {"X-Pusher-Signature", common::HmacSha256Hex(app.secret(), body)},
      {"User-Agent", "relay-webhooks/1"}};
  for (const auto& [k, v] : hook.headers()) headers.emplace_back(k, v);
  return headers;
}

relay::v1::Webhook WithDefaults(relay::v1::Webhook h) {
  if (h.batch_max_events() == 0) h.set_batch_max_events(50);
  if (h.delay_ms() == 0) h.set_delay_ms(3000);
  if (h.retry_seconds() == 0) h.set_retry_seconds(300);
  return h;
}

}  // namespace

Webhooks::Webhooks(std::string data_dir, AppStore& apps, HttpPost post, WebhookOptions options)
    : Webhooks(MakeSqliteWebhookBackend(std::move(data_dir)), apps, std::move(post),
               std::move(options)) {}

Webhooks::Webhooks(std::unique_ptr<WebhookBackend> backend, AppStore& apps, HttpPost post,
                   WebhookOptions options)
    : apps_(apps),
      writer_(apps.writer()),
      post_(std::move(post)),
      options_(std::move(options)),
      backend_(std::move(backend)) {}

Webhooks::~Webhooks() {
  Stop();
  FlushOutbox();  // also waits for endpoint changes still queued: no job outlives this object
}

void Webhooks::SetFence(std::function<std::vector<etcd::Compare>()> guard) {
  backend_->SetFence(std::move(guard));
}

absl::Status Webhooks::Open() { return Load(); }

absl::Status Webhooks::Load() {
  auto contents = backend_->Load();
  if (!contents.ok()) return contents.status();
  absl::MutexLock lock(&mu_);
  endpoints_.clear();
  outbox_writes_.clear();
  uncommitted_inserts_.clear();
  for (auto& hook : contents->endpoints) {
    std::string id = hook.id();  // not hook.id() in the assignment: the right side moves first
    endpoints_[id].hook = WithDefaults(std::move(hook));
  }
  size_t loaded = 0;
  for (auto& [endpoint, entry] : contents->outbox) {
    auto it = endpoints_.find(endpoint);
    if (it == endpoints_.end()) continue;
    it->second.queue.push_back(std::move(entry));
    ++loaded;
  }
  // Rows are numbered here (the writer inserts them later, in this order), never reusing one.
  next_row_ = std::max(next_row_, contents->max_row + 1);
  opened_.store(true);
  if (!endpoints_.empty()) {
    RELAY_LOG(kInfo, "webhooks", endpoints_.size(), " endpoints in ", backend_->Describe(),
              "; resuming delivery of ", loaded, " undelivered events");
  }
  return absl::OkStatus();
}

void Webhooks::SetActive(bool active) {
  absl::MutexLock lock(&mu_);
  active_ = active;
}

absl::Status Webhooks::Reload() {
  // On the writer: no commit of an earlier term runs meanwhile.
  return AwaitStatus([this](std::function<void(absl::Status)> done) {
    writer_.Submit([this, done = std::move(done)](absl::Status admitted) {
      done(admitted.ok() ? Load() : admitted);
    });
  });
}

void Webhooks::Start() {
  dispatcher_ = std::thread([this] { DispatchLoop(); });
}

void Webhooks::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  // Deliveries in flight finish within the request timeout; their results are kept.
  Reap(true);
  FlushOutbox();
}

bool Webhooks::Spawn(std::function<void()> fn) {
  if (stopping_) return false;
  Worker* self = &workers_.emplace_back();
  self->thread = std::thread([this, self, fn = std::move(fn)] {
    fn();
    absl::MutexLock lock(&mu_);
    self->done = true;
  });
  return true;
}

void Webhooks::Reap(bool all) {
  std::list<Worker> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (all || it->done) finished.splice(finished.end(), workers_, it);
      it = next;
    }
  }
  for (auto& w : finished) w.thread.join();
}

void Webhooks::InsertRow(const std::string& endpoint, Entry& entry) {
  entry.row = next_row_++;
  uncommitted_inserts_.insert(entry.row);
  outbox_writes_.push_back({entry.row, endpoint, entry});
}

void Webhooks::DeleteRow(const std::string& endpoint, int64_t row) {
  if (uncommitted_inserts_.erase(row) > 0) {
    // Never written: take the insert back instead of queueing a delete (keeps the FIFO within
    // the outbox bound). Dropped rows are usually recent (debounce) or the oldest (overflow).
    // The FIFO is long while the store is down (etcd): search from the nearer end.
    auto match = [row](const OutboxWrite& w) { return w.entry && w.row == row; };
    if (outbox_writes_.empty()) return;
    if (row - outbox_writes_.front().row < outbox_writes_.back().row - row) {
      auto it = std::find_if(outbox_writes_.begin(), outbox_writes_.end(), match);
      if (it != outbox_writes_.end()) outbox_writes_.erase(it);
    } else {
      auto it = std::find_if(outbox_writes_.rbegin(), outbox_writes_.rend(), match);
      if (it != outbox_writes_.rend()) outbox_writes_.erase(std::next(it).base());
    }
    return;
  }
  outbox_writes_.push_back({row, endpoint, std::nullopt});
}

void Webhooks::ScheduleCommit(bool now) {
  {
    absl::MutexLock lock(&mu_);
    if (commit_scheduled_ || outbox_writes_.empty() || !opened_.load()) return;
    if (!now && commit_retry_ms_ > common::NowUnixMs()) return;
    commit_scheduled_ = true;
  }
  writer_.Submit([this](absl::Status admitted) {
    if (admitted.ok()) {
      CommitOutbox();
      return;
    }
    // The queue is full: the writes stay in the FIFO; the dispatcher or the next event retries.
    absl::MutexLock lock(&mu_);
    commit_scheduled_ = false;
  });
}

void Webhooks::CommitOutbox() {
  std::deque<OutboxWrite> writes;
  {
    absl::MutexLock lock(&mu_);
    writes.swap(outbox_writes_);
    committing_.swap(uncommitted_inserts_);
    commit_scheduled_ = false;
  }
  if (writes.empty()) return;
  WebhookCommitResult result = backend_->Commit(writes);
  absl::MutexLock lock(&mu_);
  committing_.clear();
  if (result.status.ok()) {
    commit_failures_in_a_row_ = 0;
    commit_retry_ms_ = 0;
    return;
  }
  size_t rest = writes.size() - std::min(result.written, writes.size());
  if (result.status.code() == absl::StatusCode::kFailedPrecondition) {
    totals_.fenced_writes += rest;  // the backend logged it; whoever leads now has the outbox
    return;
  }
  if (result.status.code() != absl::StatusCode::kUnavailable) return;  // dropped (logged)
  // Written again first, in order (harmless if some were stored after all); until then their
  // events are not delivered. The FIFO stays bounded: inserts of dropped events are still
  // taken back, and each delete is of a row written once.
  ++totals_.store_failures;
  if (commit_failures_in_a_row_++ == 0) {
    RELAY_LOG(kWarn, "webhooks", rest, " outbox writes not stored in ", backend_->Describe(),
              " (retrying): ", result.status.message());
  }
  last_store_error_ = result.status;
  int64_t backoff = std::min<int64_t>(
      kCommitRetryMaxMs, kCommitRetryMinMs << std::min(commit_failures_in_a_row_ - 1, 10));
  commit_retry_ms_ = common::NowUnixMs() + backoff;
  for (size_t i = writes.size(); i-- > writes.size() - rest;) {
    if (writes[i].entry) uncommitted_inserts_.insert(writes[i].row);
    outbox_writes_.push_front(std::move(writes[i]));
  }
}

void Webhooks::StoreQueued(int rounds) { FlushOutbox(std::max(rounds, 1)); }

void Webhooks::FlushOutbox(int rounds) {
  if (!opened_.load()) return;  // never opened: nothing was queued
  uint64_t failures = 0;
  {
    absl::MutexLock lock(&mu_);
    failures = totals_.store_failures;
  }
  for (int round = 0; rounds <= 0 || round < rounds; ++round) {
    {
      absl::MutexLock lock(&mu_);
      if (outbox_writes_.empty() && !commit_scheduled_) break;
      if (totals_.store_failures != failures && !commit_scheduled_) {
        // The store is down: one more try only (a shutdown must not wait for it).
        RELAY_LOG(kWarn, "webhooks", outbox_writes_.size(), " outbox writes not stored in ",
                  backend_->Describe(), ": ", last_store_error_.message());
        break;
      }
    }
    ScheduleCommit(/*now=*/true);
    writer_.Flush();  // a commit refused for a full queue is retried once the queue drained
  }
  writer_.Flush();
}

absl::Status Webhooks::CountFenced(absl::Status st) {
  if (st.code() == absl::StatusCode::kFailedPrecondition) {
    absl::MutexLock lock(&mu_);
    ++totals_.fenced_writes;
  }
  return st;
}

void Webhooks::Add(const std::string& app_id, relay::v1::Webhook hook,
                   std::function<void(absl::StatusOr<relay::v1::Webhook>)> done) {
  const std::string& url = hook.url();
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return done(absl::InvalidArgumentError("the webhook URL must start with http:// or https://"));
  }
  if (options_.targets) {
    if (auto st = options_.targets->CheckUrl(url); !st.ok()) return done(st);
  }
  for (const auto& t : hook.event_types()) {
    if (!KnownTypes().contains(t)) {
      return done(absl::InvalidArgumentError(common::StrCat(
          "unknown event type '", t,
          "' (channel_occupied, channel_vacated, member_added, member_removed, client_event, "
          "cache_miss, subscription_count)")));
    }
  }
  for (const auto& [k, v] : hook.headers()) {
    std::string lower = k;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("x-pusher-", 0) == 0 || lower == "content-type" || lower == "content-length" ||
        lower == "host" || k.find_first_of("\r\n:") != std::string::npos ||
        v.find_first_of("\r\n") != std::string::npos) {
      return done(absl::InvalidArgumentError(common::StrCat("header '", k, "' cannot be set")));
    }
  }
  hook.set_id(common::StrCat("wh_", common::RandomHex(6)));
  hook.set_app_id(app_id);
  hook.clear_stats();
  hook = WithDefaults(std::move(hook));
  writer_.Submit([this, hook = std::move(hook), done = std::move(done)](absl::Status admitted) {
    if (!admitted.ok()) return done(admitted);
    if (auto st = CountFenced(backend_->AddEndpoint(hook)); !st.ok()) return done(st);
    {
      absl::MutexLock lock(&mu_);
      endpoints_[hook.id()].hook = hook;
    }
    done(hook);
  });
}

absl::StatusOr<relay::v1::Webhook> Webhooks::Add(const std::string& app_id,
                                                 relay::v1::Webhook hook) {
  return AwaitResult<relay::v1::Webhook>(
      [&](std::function<void(absl::StatusOr<relay::v1::Webhook>)> d) {
        Add(app_id, std::move(hook), std::move(d));
      });
}

Webhooks::Totals Webhooks::totals() const {
  absl::ReaderMutexLock lock(&mu_);
  Totals t = totals_;
  for (const auto& [id, ep] : endpoints_) t.outbox += ep.queue.size();
  return t;
}

std::vector<relay::v1::Webhook> Webhooks::List(const std::string& app_id) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::Webhook> out;
  for (const auto& [id, ep] : endpoints_) {
    if (ep.hook.app_id() != app_id) continue;
    relay::v1::Webhook h = ep.hook;
    h.mutable_stats()->set_retrying(ep.queue.size());
    out.push_back(std::move(h));
  }
  return out;
}

void Webhooks::Remove(const std::string& webhook_id, std::function<void(absl::Status)> done) {
  // On the writer: every outbox write committed before is deleted below, and the inserts of
  // this endpoint still in the FIFO are taken back, so none lands after.
  writer_.Submit([this, webhook_id, done = std::move(done)](absl::Status admitted) {
    if (!admitted.ok()) return done(admitted);
    {
      absl::ReaderMutexLock lock(&mu_);
      if (!endpoints_.contains(webhook_id)) {
        return done(absl::NotFoundError(common::StrCat("webhook '", webhook_id, "' not found")));
      }
    }
    // Stored first: an endpoint the store still has must stay here too (the writer runs no
    // outbox commit meanwhile, so nothing of it lands after).
    if (auto st = CountFenced(backend_->RemoveEndpoint(webhook_id)); !st.ok()) return done(st);
    {
      absl::MutexLock lock(&mu_);
      endpoints_.erase(webhook_id);
      for (auto w = outbox_writes_.begin(); w != outbox_writes_.end();) {
        if (w->entry && w->endpoint == webhook_id) {
          uncommitted_inserts_.erase(w->row);
          w = outbox_writes_.erase(w);
        } else {
          ++w;
        }
      }
    }
    done(absl::OkStatus());
  });
}

absl::Status Webhooks::Remove(const std::string& webhook_id) {
  return AwaitStatus(
      [&](std::function<void(absl::Status)> d) { Remove(webhook_id, std::move(d)); });
}

void Webhooks::RemoveApp(const std::string& app_id) {
  for (const auto& h : List(app_id)) (void)Remove(h.id());
}

bool Webhooks::Matches(const relay::v1::Webhook& hook, const WebhookEvent& e) const {
  if (!hook.event_types().empty() && std::find(hook.event_types().begin(), hook.event_types().end(),
                                               e.name) == hook.event_types().end()) {
    return false;
  }
  if (!hook.filter_prefix().empty() && e.channel.rfind(hook.filter_prefix(), 0) != 0) return false;
  if (!hook.filter_suffix().empty() && !EndsWith(e.channel, hook.filter_suffix())) return false;
  return true;
}

bool Webhooks::Wants(const std::string& app_id, const std::string& event_name) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, ep] : endpoints_) {
    if (ep.hook.app_id() != app_id) continue;
    if (ep.hook.event_types().empty() ||
        std::find(ep.hook.event_types().begin(), ep.hook.event_types().end(), event_name) !=
            ep.hook.event_types().end()) {
      return true;
    }
  }
  return false;
}

void Webhooks::Emit(const std::string& app_id, const WebhookEvent& e) {
  QueueEvent(app_id, e);
  ScheduleCommit();  // outside the lock: the writer may run it at once
}

void Webhooks::QueueEvent(const std::string& app_id, const WebhookEvent& e) {
  int64_t now = common::NowUnixMs();
  absl::MutexLock lock(&mu_);
  if (!opened_.load()) return;
  for (auto& [id, ep] : endpoints_) {
    if (ep.hook.app_id() != app_id || !Matches(ep.hook, e)) continue;
    // A re-occupy / re-join inside the delay window cancels the held vacate / remove, and
    // itself, so a quick reconnect sends nothing.
    const char* cancels = e.name == "channel_occupied" ? "channel_vacated"
                          : e.name == "member_added"   ? "member_removed"
                                                       : nullptr;
    if (cancels != nullptr) {
      auto held = std::find_if(ep.queue.rbegin(), ep.queue.rend(), [&](const Entry& q) {
        return q.name == cancels && q.channel == e.channel && q.user_id == e.user_id &&
               q.not_before_ms > now;
      });
      if (held != ep.queue.rend()) {
        DeleteRow(id, held->row);
        ep.queue.erase(std::next(held).base());
        continue;
      }
    }
    Entry entry{0, e.name, e.channel, e.user_id, e.json, now, now};
    if (e.name == "channel_vacated" || e.name == "member_removed") {
      entry.not_before_ms = now + ep.hook.delay_ms();
    }
    if (ep.queue.size() >= options_.max_outbox_per_endpoint) {
      // Overflow policy: drop the oldest event, keep the newest.
      DeleteRow(id, ep.queue.front().row);
      ep.queue.pop_front();
      ep.hook.mutable_stats()->set_dropped(ep.hook.stats().dropped() + 1);
      ++totals_.dropped_overflow;
      RELAY_LOG(kWarn, "webhooks", "outbox of ", id, " is full; dropped its oldest event");
    }
    InsertRow(id, entry);
    ep.queue.push_back(std::move(entry));
  }
}

std::string Webhooks::Body(const std::vector<Entry>& batch) const {
  common::JsonWriter w;
  w.BeginObject().Key("time_ms").Int(batch.front().created_ms).Key("events").BeginArray();
  for (const auto& e : batch) w.Raw(e.json);
  w.EndArray().EndObject();
  return w.Take();
}

void Webhooks::DispatchLoop() {
  while (true) {
    Reap(false);
    ScheduleCommit();  // retries a commit the full write queue refused
    int64_t now = common::NowUnixMs();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (auto& [id, ep] : endpoints_) {
        if (!active_) break;  // a follower: the leader delivers
        if (ep.in_flight || ep.queue.empty() || ep.next_attempt_ms > now) continue;
        // Take ready events in order, never passing a held event of the same channel.
        std::set<std::string> blocked;
        std::vector<Entry> batch;
        int64_t oldest_ready = INT64_MAX;
        for (const auto& e : ep.queue) {
          if (batch.size() >= ep.hook.batch_max_events()) break;
          // An event is on disk before its first attempt (commits are in order: so are the
          // ones after it).
          if (uncommitted_inserts_.contains(e.row) || committing_.contains(e.row)) break;
          if (e.not_before_ms > now || blocked.contains(e.channel)) {
            blocked.insert(e.channel);
            continue;
          }
          oldest_ready = std::min(oldest_ready, std::max(e.created_ms, e.not_before_ms));
          batch.push_back(e);
        }
        if (batch.empty()) continue;
        bool full = batch.size() >= ep.hook.batch_max_events();
        if (!full && now - oldest_ready < static_cast<int64_t>(ep.hook.batch_window_ms())) {
          continue;
        }
        ep.in_flight = true;
        // One thread per request in flight (at most one per endpoint): a slow or dead endpoint
        // ties up only its own thread, never another endpoint's or app's deliveries.
        Spawn([this, id = id, b = std::move(batch)]() mutable { Deliver(id, std::move(b)); });
      }
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(20));
    }
  }
}

void Webhooks::Deliver(const std::string& endpoint_id, std::vector<Entry> batch) {
  relay::v1::Webhook hook;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = endpoints_.find(endpoint_id);
    if (it == endpoints_.end()) return;
    hook = it->second.hook;
  }
  auto app = apps_.Find(hook.app_id());
  PostResult result;
  if (!app) {
    result.error = "the app no longer exists";
  } else {
    std::string body = Body(batch);
    result = post_(hook.url(), SignedHeaders(*app, hook, body), body, options_.request_timeout);
  }
  bool ok = result.status >= 200 && result.status < 300;
  int64_t now = common::NowUnixMs();
  Settle(endpoint_id, batch, result, ok, now);
  ScheduleCommit();
}

void Webhooks::Settle(const std::string& endpoint_id, const std::vector<Entry>& batch,
                      const PostResult& result, bool ok, int64_t now) {
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(endpoint_id);
  if (it == endpoints_.end()) return;
  Endpoint& ep = it->second;
  ep.in_flight = false;
  auto* stats = ep.hook.mutable_stats();
  std::set<int64_t> rows;
  for (const auto& e : batch) rows.insert(e.row);
  auto remove_batch = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (int64_t r : rows) DeleteRow(endpoint_id, r);
    ep.queue.erase(std::remove_if(ep.queue.begin(), ep.queue.end(),
                                  [&](const Entry& e) { return rows.contains(e.row); }),
                   ep.queue.end());
  };
  if (ok) {
    remove_batch();
    stats->set_delivered(stats->delivered() + batch.size());
    totals_.delivered += batch.size();
    stats->set_last_success_unix_ms(now);
    ep.attempts = 0;
    ep.first_failure_ms = 0;
    ep.next_attempt_ms = 0;
    return;
  }
  stats->set_failed(stats->failed() + 1);
  ++totals_.failed;
  stats->set_last_error(result.status != 0 ? common::StrCat("HTTP ", result.status) : result.error);
  if (ep.first_failure_ms == 0) ep.first_failure_ms = now;
  if (now - ep.first_failure_ms >= static_cast<int64_t>(ep.hook.retry_seconds()) * 1000) {
    RELAY_LOG(kWarn, "webhooks", "giving up ", batch.size(), " events for ", endpoint_id, " after ",
              ep.hook.retry_seconds(), " s of failures: ", stats->last_error());
    remove_batch();
    stats->set_dropped(stats->dropped() + batch.size());
    totals_.dropped_expired += batch.size();
    ep.attempts = 0;
    ep.first_failure_ms = 0;
    ep.next_attempt_ms = 0;
    return;
  }
  // Exponential backoff (0.5 s, 1 s, 2 s ... capped at 30 s) with jitter in [50%, 100%].
  ++ep.attempts;
  int64_t backoff = std::min<int64_t>(30000, 500LL << std::min(ep.attempts - 1, 10));
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> jitter(backoff / 2, backoff);
  ep.next_attempt_ms = now + jitter(rng);
}

std::vector<relay::v1::TestWebhookResult> Webhooks::Test(const std::string& app_id) {
  std::vector<relay::v1::TestWebhookResult> out;
  auto app = apps_.Find(app_id);
  if (!app) return out;
  for (const auto& hook : List(app_id)) {
    common::JsonWriter w;
    w.BeginObject().Key("time_ms").Int(common::NowUnixMs()).Key("events").BeginArray();
    w.BeginObject().Key("name").String("test").Key("channel").String("relay-webhook-test");
    w.EndObject().EndArray().EndObject();
    std::string body = w.Take();
    PostResult r =
        post_(hook.url(), SignedHeaders(*app, hook, body), body, options_.request_timeout);
    relay::v1::TestWebhookResult res;
    res.set_webhook_id(hook.id());
    res.set_url(hook.url());
    res.set_status(r.status);
    if (r.status < 200 || r.status >= 300) {
      res.set_error(r.status != 0 ? common::StrCat("HTTP ", r.status) : r.error);
    }
    out.push_back(std::move(res));
  }
  return out;
}

void Webhooks::Test(const std::string& app_id,
                    std::function<void(std::vector<relay::v1::TestWebhookResult>)> done) {
  bool started = false;
  {
    absl::MutexLock lock(&mu_);
    started = Spawn([this, app_id, done] { done(Test(app_id)); });
  }
  if (!started) done({});  // shutting down
}

WebhookEvent Webhooks::ChannelEvent(const std::string& name, const std::string& channel) {
  common::JsonWriter w;
  w.BeginObject().Key("name").String(name).Key("channel").String(channel).EndObject();
  return {name, channel, "", w.Take()};
}

WebhookEvent Webhooks::MemberEvent(const std::string& name, const std::string& channel,
                                   const std::string& user_id) {
  common::JsonWriter w;
  w.BeginObject().Key("name").String(name).Key("channel").String(channel);
  w.Key("user_id").String(user_id).EndObject();
  return {name, channel, user_id, w.Take()};
}

WebhookEvent Webhooks::ClientEvent(const std::string& channel, const std::string& event,
                                   const std::string& data_json, const std::string& socket_id,
                                   const std::string& user_id) {
  // Pusher documents `data` as a string: objects are sent as their JSON text.
  std::string data = data_json;
  if (!data.empty() && data.front() == '"') {
    simdjson::dom::element el;
    std::string_view s;
    if (!common::ThreadParser().parse(data_json).get(el) && !el.get(s)) data = std::string(s);
  }
  common::JsonWriter w;
  w.BeginObject().Key("name").String("client_event").Key("channel").String(channel);
  w.Key("event").String(event).Key("data").String(data).Key("socket_id").String(socket_id);
  if (!user_id.empty()) w.Key("user_id").String(user_id);
  w.EndObject();
  return {"client_event", channel, user_id, w.Take(), event, data, socket_id};
}

WebhookEvent Webhooks::SubscriptionCountEvent(const std::string& channel, uint32_t count) {
  common::JsonWriter w;
  w.BeginObject().Key("name").String("subscription_count").Key("channel").String(channel);
  w.Key("subscription_count").Uint(count).EndObject();
  return {"subscription_count", channel, "", w.Take(), "", "", "", count};
}

}  // namespace relay::controlplane
