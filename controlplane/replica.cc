#include "controlplane/replica.h"

#include <thread>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/route_gate.h"
#include "controlplane/tcp_probe.h"

namespace relay::controlplane {

using common::StrCat;

Replica::Replica(etcd::Client& client, ReplicaOptions options, Callbacks callbacks)
    : client_(client), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

Replica::~Replica() { Stop(); }

absl::Status Replica::Start(std::string default_advertise) {
  if (election_) return absl::FailedPreconditionError("replica: already started");
  if (options_.advertise.empty()) options_.advertise = std::move(default_advertise);
  if (options_.advertise.empty()) {
    return absl::InvalidArgumentError(
        "the replica's advertised address (--advertise-grpc) is empty");
  }
  etcd::ElectionOptions election;
  election.name = StrCat(options_.prefix, "/v1/leader");
  election.value = options_.advertise;
  election.ttl_seconds = options_.lease_ttl_seconds;
  etcd::Election::Callbacks cb;
  cb.elected = [this](const etcd::Leadership&) {
    // Opens only once the ControlPlane is ready to lead (registry loaded, gate closed on it).
    while (election_->surely_leading()) {
      absl::Status st = callbacks_.gained ? callbacks_.gained() : absl::OkStatus();
      if (st.ok()) {
        won_.fetch_add(1, std::memory_order_relaxed);
        open_.store(true);
        RELAY_LOG(kInfo, "replica", "leading the control plane replicas as ", options_.advertise);
        return;
      }
      RELAY_LOG(kWarn, "replica", "elected, but cannot take over yet: ", st.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };
  cb.lost = [this](absl::Status why) {
    bool was_open = open_.exchange(false);
    RELAY_LOG(kWarn, "replica", "no longer the leader (", why.message(), "); now a follower");
    if (was_open && callbacks_.lost) callbacks_.lost(why);
  };
  observer_ =
      std::make_unique<etcd::LeaderObserver>(client_, StrCat(options_.prefix, "/v1/leader"));
  election_ = std::make_unique<etcd::Election>(client_, std::move(election), std::move(cb));
  started_.store(true);  // observer_ and election_ are set: other threads may read them now
  prober_ = std::thread([this] { WatchLeader(); });
  return election_->Start();
}

void Replica::Stop() {
  if (!started_.load()) return;
  open_.store(false);
  if (auto st = election_->Resign(); !st.ok()) {
    RELAY_LOG(kWarn, "replica", "resigning: ", st.message());
  }
  {
    absl::MutexLock lock(&probe_mu_);
    probe_stop_ = true;
  }
  if (prober_.joinable()) prober_.join();
  // observer_ stays until destruction: other threads may still ask who leads.
}

void Replica::SuspectLeader() {
  absl::MutexLock lock(&probe_mu_);
  suspected_ = true;
}

void Replica::WatchLeader() {
  using Clock = std::chrono::steady_clock;
  constexpr auto kProbeTimeout = std::chrono::milliseconds(300);
  int64_t reached = 0;    // the lease of the last leader this replica connected to
  int64_t revoked = 0;    // the lease last revoked here (not again)
  int64_t unreached = 0;  // the lease of a leader not reached yet (logged once)
  auto next_reach = Clock::now();
  while (true) {
    bool suspected;
    {
      absl::MutexLock lock(&probe_mu_);
      auto wake = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(probe_mu_) { return probe_stop_ || suspected_; };
      probe_mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(250));
      if (probe_stop_) return;
      suspected = suspected_;
      suspected_ = false;
    }
    auto leader = observer_->leader();
    if (!leader || acting() || leader->value == options_.advertise) continue;
    if (leader->lease != reached && Clock::now() >= next_reach) {
      // Once per leader: the address it proclaims reaches a listening process from here.
      ProbeResult r = ProbeTcp(leader->value, kProbeTimeout);
      if (r == ProbeResult::kListening) {
        reached = leader->lease;
      } else {
        next_reach = Clock::now() + std::chrono::seconds(1);
        if (unreached != leader->lease) {
          unreached = leader->lease;
          RELAY_LOG(kWarn, "replica", "cannot reach the leader at ", leader->value, " (",
                    ProbeResultName(r),
                    "); check its --advertise-grpc. Until it is reached, this replica waits for "
                    "its lease to end if it dies");
        }
        continue;
      }
    }
    if (!suspected) continue;
    checked_.fetch_add(1, std::memory_order_relaxed);
    if (leader->lease != reached || leader->lease == revoked) continue;
    if (ProbeTcp(leader->value, kProbeTimeout) != ProbeResult::kRefused) continue;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (ProbeTcp(leader->value, kProbeTimeout) != ProbeResult::kRefused) continue;
    // Still the same leader (its key may have gone meanwhile)?
    auto now = observer_->leader();
    if (!now || now->lease != leader->lease) continue;
    revoked = leader->lease;
    absl::Status st = client_.RevokeLease(leader->lease, etcd::Duration(1000));
    if (absl::IsNotFound(st)) continue;  // another follower (or etcd) ended it first
    if (st.ok()) {
      revoked_.fetch_add(1, std::memory_order_relaxed);
      RELAY_LOG(kWarn, "replica", "the leader at ", leader->value,
                " refuses connections (its process is gone): ended its etcd lease ", leader->lease,
                " so that a replica takes over now");
    } else {
      revoked = 0;  // try again on the next suspicion
      RELAY_LOG(kWarn, "replica", "the leader at ", leader->value,
                " is gone, but its lease could not be ended: ", st.message());
    }
  }
}

bool Replica::acting() const {
  // open_ is set by the election's thread, started after election_ was.
  return open_.load() && election_->surely_leading().has_value();
}

std::string Replica::LeaderAddress() const {
  if (!started_.load() || acting()) return {};
  auto leader = observer_->leader();
  if (!leader || leader->value == options_.advertise) return {};
  return leader->value;
}

std::string Replica::Role() const {
  if (acting()) return "leader";
  std::string leader = LeaderAddress();
  return StrCat("follower (leader: ", leader.empty() ? std::string("unknown") : leader, ")");
}

absl::Status Replica::CheckActing() const {
  if (acting()) return absl::OkStatus();
  return RetryLaterError(
      StrCat("this control plane is a ", Role(), "; send API requests to the leader (see /ready)"),
      1);
}

std::optional<etcd::Compare> Replica::Fence() const {
  if (!started_.load()) return std::nullopt;
  auto held = election_->leadership();
  if (!held) return std::nullopt;
  return etcd::Compare::CreateRevision(held->key, held->revision);
}

std::string Replica::NodeKey(const std::string& node_id) const {
  return StrCat(options_.prefix, "/v1/nodes/", node_id);
}

absl::StatusOr<std::vector<std::string>> Replica::LoadKnownNodes() {
  std::string prefix = NodeKey("");
  etcd::RangeOptions o;
  o.range_end = etcd::PrefixEnd(prefix);
  auto r = client_.Range(prefix, o);
  if (!r.ok()) return r.status();
  std::vector<std::string> ids;
  for (const auto& kv : r->kvs) ids.push_back(kv.key.substr(prefix.size()));
  return ids;
}

absl::Status Replica::RememberNode(const std::string& node_id) {
  if (!started_.load()) return absl::FailedPreconditionError("replica: not started");
  return election_->FencedPut(NodeKey(node_id), "");
}

absl::Status Replica::ForgetNode(const std::string& node_id) {
  etcd::Txn txn;
  txn.success.push_back(etcd::TxnOp::Delete(NodeKey(node_id)));
  if (!started_.load()) return absl::FailedPreconditionError("replica: not started");
  return election_->FencedCommit(txn).status();
}

}  // namespace relay::controlplane
