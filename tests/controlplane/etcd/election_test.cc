// Leader election and fencing against a real 3-member etcd cluster.
#include "controlplane/etcd/election.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/testutil/etcd_cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testutil::EtcdCluster;
using testutil::WaitFor;

constexpr int64_t kTtl = 2;

// One replica: its election and what it was told.
struct Candidate {
  Candidate(Client& client, std::string address) : address(address) {
    ElectionOptions o;
    o.name = "/test/leader";
    o.value = address;
    o.ttl_seconds = kTtl;
    election = std::make_unique<Election>(client, o,
                                          Election::Callbacks{[this](const Leadership&) {
                                                                absl::MutexLock lock(&mu);
                                                                ++elected;
                                                              },
                                                              [this](absl::Status why) {
                                                                absl::MutexLock lock(&mu);
                                                                lost.push_back(why);
                                                              }});
  }
  int elected_count() {
    absl::MutexLock lock(&mu);
    return elected;
  }
  std::vector<absl::Status> losses() {
    absl::MutexLock lock(&mu);
    return lost;
  }

  std::string address;
  std::unique_ptr<Election> election;
  absl::Mutex mu;
  int elected ABSL_GUARDED_BY(mu) = 0;
  std::vector<absl::Status> lost ABSL_GUARDED_BY(mu);
};

class EtcdElection : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto client = Client::Create(ClientOptions{cluster_->endpoints()});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  // Three candidates, each on its own client (as three replicas would be), started together.
  // `first`: the member every candidate's calls and streams start on.
  void StartCandidates(int n, int first = 0) {
    auto endpoints = cluster_->endpoints();
    std::swap(endpoints[0], endpoints[first]);
    for (int i = 0; i < n; ++i) {
      auto client = Client::Create(ClientOptions{endpoints});
      ASSERT_TRUE(client.ok());
      clients_.push_back(std::move(*client));
      candidates_.push_back(
          std::make_unique<Candidate>(*clients_.back(), "10.0.0." + std::to_string(i) + ":7000"));
    }
    for (auto& c : candidates_) ASSERT_TRUE(c->election->Start().ok());
  }

  // The candidates that believe they lead.
  std::vector<int> Leaders() {
    std::vector<int> out;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (candidates_[i]->election->leading()) out.push_back(static_cast<int>(i));
    }
    return out;
  }

  int WaitForOneLeader(milliseconds timeout = milliseconds(10000)) {
    int leader = -1;
    WaitFor(
        [&] {
          auto l = Leaders();
          if (l.size() != 1) return false;
          leader = l[0];
          return true;
        },
        timeout);
    return leader;
  }

  void TearDown() override {
    candidates_.clear();
    clients_.clear();
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<Client> client_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::unique_ptr<Candidate>> candidates_;
};

TEST(EtcdElectionOptions, BadOptionsAreRefusedClearly) {
  auto client = Client::Create(ClientOptions{{"127.0.0.1:1"}});
  ASSERT_TRUE(client.ok());
  auto start = [&](ElectionOptions o) { return Election(**client, o, {}).Start(); };
  EXPECT_EQ(start({"", "addr", 2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start({"/n", "", 2}).code(), absl::StatusCode::kInvalidArgument);
  absl::Status ttl = start({"/n", "addr", 0});
  EXPECT_EQ(ttl.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ttl.message().find("TTL"), std::string::npos) << ttl;
  Election twice(**client, {"/n", "addr", 2}, {});
  ASSERT_TRUE(twice.Start().ok());
  EXPECT_EQ(twice.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(EtcdElection, ExactlyOneLeaderWhoseAddressEveryoneSees) {
  absl::Mutex mu;
  std::vector<std::string> changes;
  LeaderObserver observer(*client_, "/test/leader", [&](const std::optional<LeaderInfo>& l) {
    absl::MutexLock lock(&mu);
    changes.push_back(l ? l->value : "none");
  });
  StartCandidates(3);
  int leader = WaitForOneLeader();
  ASSERT_GE(leader, 0);
  // It stays one: nobody else comes to believe it leads.
  EXPECT_FALSE(WaitFor([&] { return Leaders().size() != 1; }, milliseconds(1500)));
  const std::string address = candidates_[leader]->address;
  EXPECT_EQ(candidates_[leader]->elected_count(), 1);
  ASSERT_TRUE(WaitFor([&] {
    auto l = observer.leader();
    return l && l->value == address;
  }));
  auto current = Election::Leader(*client_, "/test/leader");
  ASSERT_TRUE(current.ok()) << current.status();
  ASSERT_TRUE(current->has_value());
  EXPECT_EQ((*current)->value, address);
  EXPECT_EQ((*current)->key, candidates_[leader]->election->leadership()->key);

  // Resigning hands over at once (no TTL to wait for); the observer follows.
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(candidates_[leader]->election->Resign().ok());
  EXPECT_FALSE(candidates_[leader]->election->leading());
  int next = -1;
  ASSERT_TRUE(WaitFor([&] {
    auto l = Leaders();
    if (l.size() != 1) return false;
    next = l[0];
    return true;
  }));
  auto took = std::chrono::steady_clock::now() - start;
  std::printf("[ measured ] hand-over after resign: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()));
  EXPECT_NE(next, leader);
  EXPECT_TRUE(candidates_[leader]->losses().empty()) << "a resign is not a loss";
  ASSERT_TRUE(WaitFor([&] {
    auto l = observer.leader();
    return l && l->value == candidates_[next]->address;
  }));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(changes.back(), candidates_[next]->address);
}

TEST_F(EtcdElection, AStoppedLeaderIsReplacedWithinItsLease) {
  StartCandidates(3);
  int leader = WaitForOneLeader();
  ASSERT_GE(leader, 0);
  // Its keep-alives stop, as when the process is killed or paused.
  auto start = std::chrono::steady_clock::now();
  candidates_[leader]->election->FreezeForTest(true);
  int next = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (size_t i = 0; i < candidates_.size(); ++i) {
          if (static_cast<int>(i) != leader && candidates_[i]->election->leading()) {
            next = static_cast<int>(i);
            return true;
          }
        }
        return false;
      },
      seconds(15)));
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  std::printf("[ measured ] new leader %lld ms after the old one stopped (lease TTL %lld s)\n",
              static_cast<long long>(took.count()), static_cast<long long>(kTtl));
  // etcd expires a lease at most its TTL after the last keep-alive, and checks every 500 ms;
  // the margin is for a loaded machine.
  EXPECT_LT(took, seconds(kTtl) + seconds(3));
  int others_leading = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (static_cast<int>(i) != leader && candidates_[i]->election->leading()) ++others_leading;
  }
  EXPECT_EQ(others_leading, 1);
}

TEST_F(EtcdElection, APausedLeaderThatWakesUpCannotWrite) {
  StartCandidates(2);
  int old = WaitForOneLeader();
  ASSERT_GE(old, 0);
  Election& a = *candidates_[old]->election;
  Election& b = *candidates_[1 - old]->election;
  ASSERT_TRUE(a.FencedPut("/test/state", "from the first leader").ok());
  EXPECT_EQ(b.FencedPut("/test/state", "from a follower").code(),
            absl::StatusCode::kFailedPrecondition);

  // SIGSTOP-like: the old leader sends and notices nothing, so it still believes it leads.
  a.FreezeForTest(true);
  ASSERT_TRUE(WaitFor([&] { return b.leading(); }, seconds(15)));
  ASSERT_TRUE(b.FencedPut("/test/state", "from the new leader").ok());
  ASSERT_TRUE(a.leading()) << "a paused process has not noticed anything";
  absl::Status stale = a.FencedPut("/test/state", "from the woken old leader");
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
  Txn txn;
  txn.success.push_back(TxnOp::Delete("/test/state"));
  EXPECT_EQ(a.FencedCommit(txn).status().code(), absl::StatusCode::kFailedPrecondition);
  auto state = client_->Get("/test/state");
  ASSERT_TRUE(state.ok() && state->has_value());
  EXPECT_EQ((*state)->value, "from the new leader");

  // SIGCONT: it learns at once that it lost, and campaigns again behind the new leader.
  auto woke = std::chrono::steady_clock::now();
  a.FreezeForTest(false);
  ASSERT_TRUE(WaitFor([&] { return !candidates_[old]->losses().empty(); }, seconds(5)));
  std::printf("[ measured ] woken old leader knew it lost after %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - woke)
                      .count()));
  EXPECT_EQ(candidates_[old]->losses()[0].code(), absl::StatusCode::kAborted);
  EXPECT_FALSE(a.leading());
  EXPECT_FALSE(WaitFor([&] { return a.leading(); }, milliseconds(1000)));
  EXPECT_TRUE(b.leading());
}

TEST_F(EtcdElection, ALeaderWhoseLeaseIsRevokedKnowsPromptly) {
  StartCandidates(1);
  int leader = WaitForOneLeader();
  ASSERT_EQ(leader, 0);
  auto held = candidates_[0]->election->leadership();
  ASSERT_TRUE(held);
  ASSERT_TRUE(client_->RevokeLease(held->lease).ok());
  ASSERT_TRUE(WaitFor([&] { return !candidates_[0]->losses().empty(); }, seconds(5)));
  EXPECT_NE(candidates_[0]->losses()[0].message().find("lost the leadership"), std::string::npos)
      << candidates_[0]->losses()[0];
  // Alone, it wins again with a new lease.
  ASSERT_TRUE(WaitFor([&] {
    auto now = candidates_[0]->election->leadership();
    return now && now->lease != held->lease;
  }));
  EXPECT_EQ(candidates_[0]->elected_count(), 2);
}

TEST_F(EtcdElection, LosingTheQuorumEndsLeadershipAndItComesBack) {
  StartCandidates(2);
  int leader = WaitForOneLeader();
  ASSERT_GE(leader, 0);
  cluster_->Kill(1);
  cluster_->Kill(2);
  auto start = std::chrono::steady_clock::now();
  // Keep-alives go unanswered: the leader stops believing it leads within its TTL of the last
  // answered one, before etcd could hand the lease to anyone else. (The raft leader, if it
  // survived, still renews leases until it steps down, one election timeout of 500 ms later.)
  ASSERT_TRUE(WaitFor([&] { return Leaders().empty(); }, seconds(10)));
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  std::printf("[ measured ] leadership given up %lld ms after the quorum went\n",
              static_cast<long long>(took.count()));
  EXPECT_LE(took, seconds(kTtl) + seconds(2));
  // The loss is reported to the candidate just after leadership() stops answering (the safe
  // order: it stops acting before it hears why).
  ASSERT_TRUE(WaitFor([&] { return !candidates_[leader]->losses().empty(); }, seconds(2)));
  // No one leads without quorum; the loss outlasts the candidates' attempts to revoke their
  // leases (each bounded by the client's call timeout, 2 s).
  EXPECT_FALSE(WaitFor([&] { return !Leaders().empty(); }, seconds(3)));
  ASSERT_TRUE(cluster_->Restart(1).ok());
  auto back = std::chrono::steady_clock::now();
  EXPECT_GE(WaitForOneLeader(seconds(20)), 0);
  // The leases of the rounds that ended without quorum could not be revoked then; they are
  // revoked once etcd answers, so their keys do not hold the next election back until they
  // expire (a TTL after the new raft leader took over).
  took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - back);
  std::printf("[ measured ] a leader again %lld ms after the quorum came back\n",
              static_cast<long long>(took.count()));
  EXPECT_LT(took, seconds(kTtl));
}

TEST_F(EtcdElection, OneMemberKilledKeepsTheLeader) {
  StartCandidates(2);
  int leader = WaitForOneLeader();
  ASSERT_GE(leader, 0);
  // The raft leader: the worst member to lose (a raft election, and etcd answers nothing
  // meanwhile).
  int raft_leader = cluster_->RaftLeader();
  ASSERT_GE(raft_leader, 0);
  cluster_->Kill(raft_leader);
  EXPECT_FALSE(WaitFor([&] { return Leaders() != std::vector<int>{leader}; }, seconds(4)));
  EXPECT_TRUE(candidates_[leader]->losses().empty());
  EXPECT_TRUE(candidates_[leader]->election->FencedPut("/test/state", "still here").ok());
}

TEST_F(EtcdElection, APausedMemberKeepsTheLeader) {
  // A raft follower that stops answering (SIGSTOP) with every candidate's keep-alive stream on
  // it: the streams move to another member well within the lease.
  int raft_leader = cluster_->RaftLeader();
  ASSERT_GE(raft_leader, 0);
  int paused = (raft_leader + 1) % 3;
  StartCandidates(2, paused);
  int leader = WaitForOneLeader();
  ASSERT_GE(leader, 0);
  cluster_->Stop(paused);
  EXPECT_FALSE(WaitFor([&] { return Leaders() != std::vector<int>{leader}; }, seconds(4)));
  EXPECT_TRUE(candidates_[leader]->losses().empty());
  EXPECT_TRUE(candidates_[leader]->election->FencedPut("/test/state", "still here").ok());
  cluster_->Continue(paused);
}

}  // namespace
}  // namespace relay::controlplane::etcd
