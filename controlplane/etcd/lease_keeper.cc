#include "controlplane/etcd/lease_keeper.h"

#include <algorithm>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/etcd/endpoint.h"

namespace relay::controlplane::etcd {

using common::StrCat;
using Clock = std::chrono::steady_clock;
using KeepAliveStream =
    BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

LeaseKeeper::LeaseKeeper(Client& client, Lease lease, Clock::time_point granted_at,
                         std::function<void(absl::Status)> on_lost)
    : client_(client),
      lease_(lease),
      on_lost_(std::move(on_lost)),
      alive_until_(granted_at + std::chrono::seconds(lease.ttl_seconds)) {
  thread_ = std::thread([this] { Run(); });
}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

bool LeaseKeeper::lost() const {
  absl::MutexLock lock(&mu_);
  return lost_;
}

Clock::time_point LeaseKeeper::alive_until() const {
  absl::MutexLock lock(&mu_);
  return alive_until_;
}

void LeaseKeeper::FreezeForTest(bool frozen) {
  absl::MutexLock lock(&mu_);
  frozen_ = frozen;
}

void LeaseKeeper::OnResponse(int64_t ttl) {
  absl::MutexLock lock(&mu_);
  if (frozen_) return;  // a paused process reads nothing
  if (sent_.empty()) return;
  Clock::time_point sent = sent_.front();
  sent_.pop_front();
  if (ttl <= 0) {
    gone_ = true;
    return;
  }
  alive_until_ = std::max(alive_until_, sent + std::chrono::seconds(ttl));
}

void LeaseKeeper::Run() {
  const auto ttl = std::chrono::duration_cast<Duration>(std::chrono::seconds(lease_.ttl_seconds));
  // A third of the TTL: two keep-alives may be lost before the lease is at risk.
  const auto interval = std::max(Duration(100), ttl / 3);
  // A keep-alive is answered in milliseconds; one unanswered for half an interval means the
  // member stopped answering (paused, cut off), and the next one goes to another member, with
  // most of the TTL left.
  const auto stalled = interval / 2;
  std::shared_ptr<KeepAliveStream> stream;
  size_t endpoint = client_.preferred_endpoint();
  auto next_send = Clock::now();
  absl::Status why;

  auto close = [&] {
    if (!stream) return;
    stream->Cancel();
    stream->done().WaitForNotification();  // cancelled: ends promptly
    stream.reset();
  };

  while (!stop_.HasBeenNotified()) {
    auto now = Clock::now();
    bool frozen, gone, done, waiting;
    Clock::time_point alive_until, oldest;
    {
      absl::MutexLock lock(&mu_);
      frozen = frozen_;
      gone = gone_;
      done = stream_done_;
      alive_until = alive_until_;
      waiting = !sent_.empty();
      if (waiting) oldest = sent_.front();
    }
    if (frozen) {
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(20));
      continue;
    }
    if (gone) {
      why = absl::NotFoundError(
          StrCat("etcd lease ", lease_.id, " no longer exists (revoked, or it expired)"));
      break;
    }
    if (now >= alive_until) {
      why = absl::DeadlineExceededError(StrCat("etcd lease ", lease_.id,
                                               " may have expired: no keep-alive was answered for ",
                                               lease_.ttl_seconds, " s"));
      break;
    }
    // A stream that ended, or whose member stopped answering, is replaced on the next endpoint.
    if (stream && (done || (waiting && now - oldest > stalled))) {
      close();
      client_.EndpointFailed(endpoint);
      endpoint = (endpoint + 1) % client_.endpoint_count();
    }
    if (!stream) {
      {
        absl::MutexLock lock(&mu_);
        sent_.clear();
        stream_done_ = false;
      }
      stream = std::make_shared<KeepAliveStream>(
          [this](const etcdserverpb::LeaseKeepAliveResponse& r) { OnResponse(r.ttl()); },
          [this](const grpc::Status&) {
            absl::MutexLock lock(&mu_);
            stream_done_ = true;
          });
      Endpoint& ep = client_.endpoint(endpoint);
      stream->Begin(
          [&ep](grpc::ClientContext* ctx,
                grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                        etcdserverpb::LeaseKeepAliveResponse>* reactor) {
            ep.lease->async()->LeaseKeepAlive(ctx, reactor);
          },
          stream);
      next_send = now;
    }
    if (now >= next_send) {
      etcdserverpb::LeaseKeepAliveRequest req;
      req.set_id(lease_.id);
      {
        absl::MutexLock lock(&mu_);
        sent_.push_back(now);
      }
      if (!stream->Write(req)) {
        absl::MutexLock lock(&mu_);
        sent_.pop_back();  // the previous write is still in flight: try again shortly
        next_send = now + Duration(20);
      } else {
        next_send = now + interval;
      }
    }
    stop_.WaitForNotificationWithTimeout(absl::Milliseconds(20));
  }
  close();
  if (!why.ok()) {
    {
      absl::MutexLock lock(&mu_);
      lost_ = true;
    }
    RELAY_LOG(kWarn, "etcd", why.message());
    if (on_lost_) on_lost_(why);
  }
}

}  // namespace relay::controlplane::etcd
