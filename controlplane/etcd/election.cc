#include "controlplane/etcd/election.h"

#include <chrono>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/etcd/lease_keeper.h"
#include "controlplane/etcd/watch.h"

namespace relay::controlplane::etcd {

using common::StrCat;

namespace {

constexpr auto kSlice = absl::Milliseconds(20);

// Whether `events` delete `key`.
bool Deletes(const std::vector<WatchEvent>& events, const std::string& key) {
  for (const auto& e : events) {
    if (e.type == WatchEvent::Type::kDelete && e.kv.key == key) return true;
  }
  return false;
}

std::optional<LeaderInfo> LowestCreate(const std::vector<KeyValue>& kvs) {
  const KeyValue* best = nullptr;
  for (const auto& kv : kvs) {
    if (best == nullptr || kv.create_revision < best->create_revision) best = &kv;
  }
  if (best == nullptr) return std::nullopt;
  return LeaderInfo{best->key, best->value, best->create_revision, best->lease};
}

bool SameLeader(const std::optional<LeaderInfo>& a, const std::optional<LeaderInfo>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->key == b->key && a->value == b->value && a->revision == b->revision);
}

}  // namespace

Election::Election(Client& client, ElectionOptions options, Callbacks callbacks)
    : client_(client),
      options_(std::move(options)),
      prefix_(options_.name + "/"),
      callbacks_(std::move(callbacks)) {}

Election::~Election() { (void)Resign(); }

absl::Status Election::Start() {
  if (options_.name.empty() || options_.value.empty()) {
    return absl::InvalidArgumentError("election: the name and the value must not be empty");
  }
  if (options_.ttl_seconds < 1) {
    return absl::InvalidArgumentError(
        StrCat("election: the lease TTL must be at least 1 s (got ", options_.ttl_seconds, ")"));
  }
  if (thread_.joinable() || stop_.HasBeenNotified()) {
    return absl::FailedPreconditionError("election: already started");
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

absl::Status Election::Resign() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  return resign_status_;
}

std::optional<Leadership> Election::leadership() const {
  absl::MutexLock lock(&mu_);
  return leadership_;
}

std::optional<Leadership> Election::surely_leading() const {
  absl::MutexLock lock(&mu_);
  if (!leadership_ || keeper_ == nullptr ||
      std::chrono::steady_clock::now() >= keeper_->alive_until()) {
    return std::nullopt;
  }
  return leadership_;
}

void Election::FreezeForTest(bool frozen) {
  absl::MutexLock lock(&mu_);
  frozen_ = frozen;
  if (keeper_ != nullptr) keeper_->FreezeForTest(frozen);
}

bool Election::Interrupted() const {
  if (stop_.HasBeenNotified()) return true;
  absl::MutexLock lock(&mu_);
  return !frozen_ && !lease_lost_.ok();
}

absl::StatusOr<TxnResult> Election::FencedCommit(const Txn& txn, Duration timeout) {
  std::optional<Leadership> held = leadership();
  if (!held) {
    return absl::FailedPreconditionError(
        StrCat("not the leader of ", options_.name, ": write refused"));
  }
  auto r = client_.CommitIf({Compare::CreateRevision(held->key, held->revision)}, txn, timeout);
  if (!r.ok()) return r.status();
  if (!r->has_value()) {
    return absl::FailedPreconditionError(StrCat("no longer the leader of ", options_.name,
                                                " (its key ", held->key,
                                                " is gone from etcd): write refused"));
  }
  return std::move(**r);
}

absl::Status Election::FencedPut(std::string_view key, std::string_view value, Duration timeout) {
  Txn txn;
  txn.success.push_back(TxnOp::Put(std::string(key), std::string(value)));
  return FencedCommit(txn, timeout).status();
}

absl::StatusOr<std::optional<LeaderInfo>> Election::Leader(Client& client, std::string_view name,
                                                           Duration timeout) {
  std::string prefix = StrCat(name, "/");
  RangeOptions o;
  o.range_end = PrefixEnd(prefix);
  o.sort = RangeOptions::Sort::kCreateAscend;
  o.limit = 1;
  auto r = client.Range(prefix, o, timeout);
  if (!r.ok()) return r.status();
  return LowestCreate(r->kvs);
}

void Election::Run() {
  const auto retry = absl::Milliseconds(200);
  // Leases of earlier rounds that could not be revoked (etcd unreachable, lost quorum). Their
  // keys stand in front of every candidate until they expire, one TTL after etcd is back: they
  // are revoked as soon as etcd answers again, so the next election does not wait for them.
  std::vector<int64_t> unrevoked;
  while (!stop_.HasBeenNotified()) {
    auto granted_at = std::chrono::steady_clock::now();
    auto lease = client_.GrantLease(options_.ttl_seconds);
    if (!lease.ok()) {
      RELAY_LOG(kDebug, "etcd", "campaign for ", options_.name, ": ", lease.status().message());
      stop_.WaitForNotificationWithTimeout(retry);
      continue;
    }
    // etcd answers again: the earlier rounds' keys go before this one queues behind them.
    std::erase_if(unrevoked, [this](int64_t id) {
      absl::Status st = client_.RevokeLease(id);
      if (absl::IsNotFound(st)) return true;  // it had expired already
      if (st.ok()) RELAY_LOG(kInfo, "etcd", "revoked lease ", id, " of an earlier campaign");
      return st.ok();
    });
    auto keeper =
        std::make_unique<LeaseKeeper>(client_, *lease, granted_at, [this](absl::Status s) {
          absl::MutexLock lock(&mu_);
          lease_lost_ = std::move(s);
        });
    {
      absl::MutexLock lock(&mu_);
      lease_lost_ = absl::OkStatus();
      keeper_ = keeper.get();
      if (frozen_) keeper->FreezeForTest(true);
    }
    std::string key = StrCat(prefix_, absl::Hex(lease->id));
    Txn put;
    put.compares.push_back(Compare::Absent(key));
    put.success.push_back(TxnOp::Put(key, options_.value, lease->id));
    put.failure.push_back(TxnOp::Get(key));
    auto r = client_.Commit(put);
    if (r.ok()) {
      int64_t rev = r->succeeded ? r->revision
                    : !r->gets.empty() && !r->gets[0].kvs.empty()
                        ? r->gets[0].kvs[0].create_revision
                        : 0;
      if (rev > 0 && WaitForTurn(key, rev)) {
        Leadership held{key, rev, lease->id};
        {
          absl::MutexLock lock(&mu_);
          leadership_ = held;
        }
        RELAY_LOG(kInfo, "etcd", "elected leader of ", options_.name, " (", key, ")");
        if (callbacks_.elected) callbacks_.elected(held);
        absl::Status why = Lead(held);
        {
          absl::MutexLock lock(&mu_);
          leadership_.reset();
        }
        if (!why.ok()) {
          RELAY_LOG(kWarn, "etcd", why.message());
          if (callbacks_.lost) callbacks_.lost(why);
        }
      }
    }
    {
      absl::MutexLock lock(&mu_);
      keeper_ = nullptr;
    }
    keeper->Stop();
    // This round's lease (and with it the key) goes now, so it does not stand in front of the
    // other candidates for a TTL: on resign, the next one takes over at once.
    absl::Status revoked = client_.RevokeLease(lease->id);
    if (absl::IsNotFound(revoked)) revoked = absl::OkStatus();  // it had expired already
    if (stop_.HasBeenNotified()) {
      absl::MutexLock lock(&mu_);
      resign_status_ = revoked;
    }
    if (!revoked.ok()) {
      RELAY_LOG(kWarn, "etcd", "could not revoke lease ", lease->id, " (it expires in ",
                lease->ttl_seconds, " s; revoked when etcd answers again): ", revoked.message());
      unrevoked.push_back(lease->id);
    }
    if (!stop_.HasBeenNotified()) stop_.WaitForNotificationWithTimeout(retry);
  }
}

bool Election::WaitForTurn(const std::string& key, int64_t revision) {
  while (!Interrupted()) {
    RangeOptions o;
    o.range_end = PrefixEnd(prefix_);
    o.max_create_revision = revision - 1;
    o.sort = RangeOptions::Sort::kCreateDescend;
    o.limit = 1;
    auto before = client_.Range(prefix_, o);
    if (!before.ok()) {
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(100));
      continue;
    }
    if (before->kvs.empty()) {
      // No one ahead; make sure this candidate's own key is still there (its lease may have
      // gone while we waited). Fencing would refuse its writes anyway.
      auto own = client_.Get(key);
      if (!own.ok()) continue;
      return own->has_value() && (*own)->create_revision == revision;
    }
    // Wait for the candidate just ahead to go; re-check now and then in case it went in a way
    // the watch could not show (a compaction).
    const std::string ahead = before->kvs.front().key;
    {
      absl::MutexLock lock(&mu_);
      key_deleted_ = false;
    }
    Watch watch(client_, WatchOptions{ahead, "", before->revision + 1},
                [this, ahead](const std::vector<WatchEvent>& events) {
                  if (!Deletes(events, ahead)) return;
                  absl::MutexLock lock(&mu_);
                  key_deleted_ = true;
                });
    auto recheck = absl::Now() + absl::Seconds(1);
    while (!Interrupted() && absl::Now() < recheck) {
      absl::MutexLock lock(&mu_);
      if (key_deleted_) break;
      mu_.AwaitWithTimeout(absl::Condition(&key_deleted_), kSlice);
      if (key_deleted_) break;
    }
  }
  return false;
}

absl::Status Election::Lead(const Leadership& held) {
  {
    absl::MutexLock lock(&mu_);
    key_deleted_ = false;
  }
  Watch watch(client_, WatchOptions{held.key, "", held.revision + 1},
              [this, key = held.key](const std::vector<WatchEvent>& events) {
                if (!Deletes(events, key)) return;
                absl::MutexLock lock(&mu_);
                key_deleted_ = true;
              });
  while (!stop_.HasBeenNotified()) {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !frozen_ && (!lease_lost_.ok() || key_deleted_);
    };
    mu_.AwaitWithTimeout(absl::Condition(&ended), kSlice);
    if (!ended()) continue;
    if (!lease_lost_.ok()) {
      return absl::AbortedError(
          StrCat("lost the leadership of ", options_.name, ": ", lease_lost_.message()));
    }
    return absl::AbortedError(
        StrCat("lost the leadership of ", options_.name, ": its key ", held.key, " was deleted"));
  }
  return absl::OkStatus();
}

LeaderObserver::LeaderObserver(Client& client, std::string name,
                               std::function<void(const std::optional<LeaderInfo>&)> on_change)
    : client_(client), prefix_(std::move(name) + "/"), on_change_(std::move(on_change)) {
  thread_ = std::thread([this] { Run(); });
}

LeaderObserver::~LeaderObserver() {
  stop_.Notify();
  thread_.join();
}

std::optional<LeaderInfo> LeaderObserver::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

void LeaderObserver::Run() {
  // Recomputes the leader from candidates_; returns whether it changed (and the new one).
  auto recompute = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto now = LowestCreate(candidates_);
    bool changed = !SameLeader(now, leader_);
    leader_ = now;
    return changed;
  };
  while (!stop_.HasBeenNotified()) {
    RangeOptions o;
    o.range_end = PrefixEnd(prefix_);
    auto all = client_.Range(prefix_, o);
    if (!all.ok()) {
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(200));
      continue;
    }
    std::optional<LeaderInfo> now;
    bool changed;
    {
      absl::MutexLock lock(&mu_);
      candidates_ = std::move(all->kvs);
      restart_ = false;
      changed = recompute();
      now = leader_;
    }
    if (changed && on_change_) on_change_(now);
    Watch watch(
        client_, WatchOptions{prefix_, PrefixEnd(prefix_), all->revision + 1},
        [this, &recompute](const std::vector<WatchEvent>& events) {
          std::optional<LeaderInfo> after;
          bool changed;
          {
            absl::MutexLock lock(&mu_);
            for (const auto& e : events) {
              std::erase_if(candidates_, [&](const KeyValue& kv) { return kv.key == e.kv.key; });
              if (e.type == WatchEvent::Type::kPut) candidates_.push_back(e.kv);
            }
            changed = recompute();
            after = leader_;
          }
          if (changed && on_change_) on_change_(after);
        },
        [this](absl::Status) {
          absl::MutexLock lock(&mu_);
          restart_ = true;
        });
    while (!stop_.HasBeenNotified()) {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&restart_), kSlice)) break;
    }
  }
}

}  // namespace relay::controlplane::etcd
