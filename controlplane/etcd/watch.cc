#include "controlplane/etcd/watch.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/etcd/endpoint.h"

namespace relay::controlplane::etcd {

using common::StrCat;
using WatchStream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

namespace {
// A stream quiet for kProbeAfter is asked for progress; one that then stays quiet for
// kProbeTimeout more is given up (about 3 s to leave a member that stopped answering).
constexpr auto kProbeAfter = std::chrono::seconds(1);
constexpr auto kProbeTimeout = std::chrono::seconds(2);
}  // namespace

Watch::Watch(Client& client, WatchOptions options, EventsFn on_events, EndFn on_end)
    : client_(client),
      options_(std::move(options)),
      on_events_(std::move(on_events)),
      on_end_(std::move(on_end)),
      next_revision_(options_.start_revision) {
  thread_ = std::thread([this] { Run(); });
}

Watch::~Watch() {
  stop_.Notify();
  thread_.join();
}

int64_t Watch::next_revision() const {
  absl::MutexLock lock(&mu_);
  return next_revision_;
}

bool Watch::created() const {
  absl::MutexLock lock(&mu_);
  return created_;
}

int Watch::streams() const {
  absl::MutexLock lock(&mu_);
  return streams_;
}

bool Watch::WaitCreated(Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto cond = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return created_ || !end_.ok(); };
  return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Milliseconds(timeout.count())) &&
         created_;
}

void Watch::Run() {
  size_t endpoint = client_.preferred_endpoint();
  Duration backoff(100);
  while (!stop_.HasBeenNotified()) {
    int64_t start;
    {
      absl::MutexLock lock(&mu_);
      stream_done_ = false;
      start = next_revision_;
      ++streams_;
    }
    auto on_read = [this](const etcdserverpb::WatchResponse& r) {
      std::vector<WatchEvent> events;
      {
        absl::MutexLock lock(&mu_);
        last_heard_ = std::chrono::steady_clock::now();
        if (r.canceled()) {
          if (r.compact_revision() > 0) {
            end_ = absl::OutOfRangeError(
                StrCat("etcd watch on \"", options_.key, "\": revision ", next_revision_,
                       " has been compacted (the oldest left is ", r.compact_revision(),
                       "); re-read the current state and watch from its revision"));
          }
          // Any other cancel: this stream watches nothing any more; resume on another member.
          RELAY_LOG(kDebug, "etcd", "watch on \"", options_.key,
                    "\" cancelled by etcd: ", r.cancel_reason());
          stream_done_ = true;
          return;
        }
        if (r.created()) {
          created_ = true;
          // Watching "from now": later resumes start right after the revision it began at.
          if (next_revision_ == 0) next_revision_ = r.header().revision() + 1;
        }
        for (const auto& e : r.events()) {
          WatchEvent ev;
          ev.type = e.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                      : WatchEvent::Type::kPut;
          const auto& kv = e.kv();
          ev.kv = KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                           kv.mod_revision(), kv.version(), kv.lease()};
          next_revision_ = std::max(next_revision_, kv.mod_revision() + 1);
          events.push_back(std::move(ev));
        }
        // A progress notification of this watch (not the answer to a probe, watch id -1, which
        // may overtake events still queued): every event up to its revision has been sent.
        if (r.events_size() == 0 && !r.created() && r.watch_id() != -1 &&
            r.header().revision() > 0) {
          next_revision_ = std::max(next_revision_, r.header().revision() + 1);
        }
      }
      if (!events.empty()) on_events_(events);
    };
    auto stream = std::make_shared<WatchStream>(on_read, [this](const grpc::Status&) {
      absl::MutexLock lock(&mu_);
      stream_done_ = true;
    });
    Endpoint& ep = client_.endpoint(endpoint);
    stream->Begin(
        [&ep](grpc::ClientContext* ctx,
              grpc::ClientBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>*
                  reactor) { ep.watch->async()->Watch(ctx, reactor); },
        stream);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(options_.key);
    create->set_range_end(options_.range_end);
    create->set_start_revision(start);
    create->set_progress_notify(true);
    stream->Write(req);

    // A member that stops answering (paused, cut off without a reset) keeps the stream open
    // and silent; gRPC's keepalive would notice after 13 s. A quiet stream is asked for
    // progress instead, and one that does not answer that either is left for another member.
    using Clock = std::chrono::steady_clock;
    {
      absl::MutexLock lock(&mu_);
      last_heard_ = Clock::now();
    }
    const auto opened = Clock::now();
    auto last_probe = opened;
    bool ended = false;
    while (true) {
      bool silent = false;
      {
        absl::MutexLock lock(&mu_);
        auto cond = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stream_done_ || !end_.ok() || stop_.HasBeenNotified();
        };
        bool done = mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Milliseconds(50));
        ended = !end_.ok();
        if (done) break;
        auto quiet = Clock::now() - last_heard_;
        if (quiet > kProbeAfter + kProbeTimeout) break;
        silent = quiet > kProbeAfter && Clock::now() - last_probe > kProbeAfter;
      }
      if (silent) {
        etcdserverpb::WatchRequest probe;
        probe.mutable_progress_request();
        if (stream->Write(probe)) last_probe = Clock::now();
      }
    }
    if (Clock::now() - opened > kProbeAfter) backoff = Duration(100);  // it was healthy a while
    stream->Cancel();
    stream->done().WaitForNotification();
    stream.reset();
    if (ended) break;
    if (stop_.HasBeenNotified()) break;
    client_.EndpointFailed(endpoint);
    endpoint = (endpoint + 1) % client_.endpoint_count();
    stop_.WaitForNotificationWithTimeout(absl::Milliseconds(backoff.count()));
    backoff = std::min(backoff * 2, Duration(1000));
  }
  absl::Status end;
  {
    absl::MutexLock lock(&mu_);
    end = end_;
  }
  if (!end.ok()) {
    RELAY_LOG(kWarn, "etcd", end.message());
    if (on_end_) on_end_(end);
  }
}

}  // namespace relay::controlplane::etcd
