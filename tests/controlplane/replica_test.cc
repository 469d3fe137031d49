// The replica state machine (controlplane/replica.h) against a real 3-member etcd cluster:
// one leader acts, followers refuse naming it, the node registry is fenced, and a leader paused
// past its lease stops acting before it is told.
#include "controlplane/replica.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/route_gate.h"
#include "tests/testutil/etcd_cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using std::chrono::milliseconds;
using testutil::EtcdCluster;
using testutil::WaitFor;

// A TCP listener on a free loopback port: a replica's gRPC port as its peers' probes see it.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    }
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { Close(); }
  // Like the process exiting: the port refuses connections from now on.
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// One replica with what its callbacks were told.
struct Member {
  Member(etcd::Client& client, std::string address, std::function<absl::Status()> gained = nullptr)
      : address(address) {
    ReplicaOptions o;
    o.prefix = "/test-relay";
    o.advertise = address;
    o.lease_ttl_seconds = 2;
    Replica::Callbacks cb;
    cb.gained = [this, gained] {
      absl::Status st = gained ? gained() : absl::OkStatus();
      absl::MutexLock lock(&mu);
      ++gains;
      return st;
    };
    cb.lost = [this](const absl::Status&) {
      absl::MutexLock lock(&mu);
      ++losses;
    };
    replica = std::make_unique<Replica>(client, o, cb);
  }
  int lost_count() {
    absl::MutexLock lock(&mu);
    return losses;
  }
  int gain_count() {
    absl::MutexLock lock(&mu);
    return gains;
  }
  std::string address;
  std::unique_ptr<Replica> replica;
  absl::Mutex mu;
  int gains ABSL_GUARDED_BY(mu) = 0;
  int losses ABSL_GUARDED_BY(mu) = 0;
};

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  void TearDown() override {
    members_.clear();
    clients_.clear();
  }

  // A replica advertising `address` (by default, a loopback port nothing listens on).
  Member& Add(std::function<absl::Status()> gained = nullptr, std::string address = "") {
    auto client = etcd::Client::Create(etcd::ClientOptions{cluster_->endpoints()});
    EXPECT_TRUE(client.ok());
    clients_.push_back(std::move(*client));
    if (address.empty()) address = "127.0.0.1:" + std::to_string(7000 + members_.size());
    members_.push_back(std::make_unique<Member>(*clients_.back(), address, gained));
    return *members_.back();
  }

  std::vector<int> Acting() {
    std::vector<int> out;
    for (size_t i = 0; i < members_.size(); ++i) {
      if (members_[i]->replica->acting()) out.push_back(static_cast<int>(i));
    }
    return out;
  }

  int WaitForOneActing(milliseconds timeout = milliseconds(10000)) {
    int leader = -1;
    WaitFor(
        [&] {
          auto a = Acting();
          if (a.size() != 1) return false;
          leader = a[0];
          return true;
        },
        timeout);
    return leader;
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::vector<std::unique_ptr<etcd::Client>> clients_;
  std::vector<std::unique_ptr<Member>> members_;
};

TEST_F(ReplicaTest, OneLeaderActsFollowersRefuseNamingIt) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Add().replica->Start().ok());
  int leader = WaitForOneActing();
  ASSERT_GE(leader, 0);
  EXPECT_TRUE(members_[leader]->replica->CheckActing().ok());
  EXPECT_EQ(members_[leader]->replica->Role(), "leader");
  const std::string& address = members_[leader]->address;
  for (int i = 0; i < 3; ++i) {
    if (i == leader) continue;
    Replica& r = *members_[i]->replica;
    ASSERT_TRUE(WaitFor([&] { return r.LeaderAddress() == address; }, milliseconds(5000)));
    EXPECT_EQ(r.Role(), "follower (leader: " + address + ")");
    absl::Status st = r.CheckActing();
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(RetryAfterSeconds(st), 1);
    EXPECT_NE(st.message().find("follower (leader: " + address + ")"), std::string::npos) << st;
    EXPECT_FALSE(r.Fence().has_value());
  }
  EXPECT_TRUE(members_[leader]->replica->Fence().has_value());
  EXPECT_EQ(members_[leader]->gain_count(), 1);
}

TEST_F(ReplicaTest, TheNodeRegistryIsWrittenByTheLeaderOnly) {
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Add().replica->Start().ok());
  int leader = WaitForOneActing();
  ASSERT_GE(leader, 0);
  Replica& lead = *members_[leader]->replica;
  Replica& follow = *members_[1 - leader]->replica;
  ASSERT_TRUE(lead.RememberNode("n1").ok());
  ASSERT_TRUE(lead.RememberNode("n2").ok());
  EXPECT_EQ(follow.RememberNode("n3").code(), absl::StatusCode::kFailedPrecondition);
  auto known = follow.LoadKnownNodes();
  ASSERT_TRUE(known.ok()) << known.status();
  EXPECT_EQ(*known, (std::vector<std::string>{"n1", "n2"}));
  ASSERT_TRUE(lead.ForgetNode("n1").ok());
  EXPECT_EQ(*lead.LoadKnownNodes(), (std::vector<std::string>{"n2"}));
}

TEST_F(ReplicaTest, APausedLeaderStopsActingBeforeItIsToldAndCannotWrite) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Add().replica->Start().ok());
  int leader = WaitForOneActing();
  ASSERT_GE(leader, 0);
  Member& old = *members_[leader];
  old.replica->FreezeForTest(true);
  // Frozen, it notices nothing; its own clock says the lease may be over, so it stops acting.
  ASSERT_TRUE(WaitFor([&] { return !old.replica->acting(); }, milliseconds(5000)));
  int next = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto a = Acting();
        if (a.size() != 1 || a[0] == leader) return false;
        next = a[0];
        return true;
      },
      milliseconds(10000)));
  EXPECT_EQ(old.lost_count(), 0);  // not told yet
  EXPECT_FALSE(old.replica->CheckActing().ok());
  // Its writes are fenced by etcd, whatever it believes.
  EXPECT_EQ(old.replica->RememberNode("stray").code(), absl::StatusCode::kFailedPrecondition);
  old.replica->FreezeForTest(false);
  ASSERT_TRUE(WaitFor([&] { return old.lost_count() == 1; }, milliseconds(5000)));
  EXPECT_FALSE(old.replica->acting());
  ASSERT_TRUE(WaitFor([&] { return old.replica->LeaderAddress() == members_[next]->address; },
                      milliseconds(5000)));
  EXPECT_EQ(*old.replica->LoadKnownNodes(), std::vector<std::string>{});
}

TEST_F(ReplicaTest, AFailedTakeOverIsRetriedBeforeActing) {
  int calls = 0;
  Member& m = Add([&calls]() -> absl::Status {
    if (++calls < 3) return absl::UnavailableError("etcd did not answer");
    return absl::OkStatus();
  });
  ASSERT_TRUE(m.replica->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return m.replica->acting(); }, milliseconds(10000)));
  EXPECT_EQ(m.gain_count(), 3);
  members_.clear();  // before `calls` goes
}

TEST_F(ReplicaTest, ALeaderWhosePortRefusesLosesItsLeaseAtOnceNotOneThatListens) {
  std::vector<std::unique_ptr<Listener>> ports;
  for (int i = 0; i < 3; ++i) {
    ports.push_back(std::make_unique<Listener>());
    ASSERT_TRUE(Add(nullptr, ports.back()->address()).replica->Start().ok());
  }
  int leader = WaitForOneActing();
  ASSERT_GE(leader, 0);
  int follower = (leader + 1) % 3;
  Replica& f = *members_[follower]->replica;
  ASSERT_TRUE(
      WaitFor([&] { return f.LeaderAddress() == members_[leader]->address; }, milliseconds(5000)));
  // A data plane left the leader (a network blip): its port still listens, nothing happens.
  ASSERT_TRUE(WaitFor(
      [&] {
        f.SuspectLeader();
        return f.leader_checks() >= 2;
      },
      milliseconds(5000)));
  EXPECT_EQ(f.leaders_revoked(), 0u);
  EXPECT_EQ(Acting(), std::vector<int>{leader});
  // The leader's process is gone (its port refuses), though its lease is still kept alive
  // here: the follower ends the lease and a replica takes over, long before any lease would
  // have run out.
  ports[leader]->Close();
  auto closed_at = std::chrono::steady_clock::now();
  int next = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        f.SuspectLeader();
        auto a = Acting();
        if (a.size() != 1 || a[0] == leader) return false;
        next = a[0];
        return true;
      },
      milliseconds(10000)));
  EXPECT_EQ(f.leaders_revoked(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - closed_at, std::chrono::seconds(2));
  ASSERT_TRUE(WaitFor([&] { return members_[leader]->lost_count() == 1; }, milliseconds(5000)));
  EXPECT_FALSE(members_[leader]->replica->acting());
  EXPECT_NE(next, leader);
  members_.clear();  // before the listeners close under the remaining replicas
}

TEST_F(ReplicaTest, ALeaderNeverReachedFromAFollowerKeepsItsLease) {
  // The leader advertises an address nothing listens on (a wrong --advertise-grpc, as seen from
  // the follower): the follower never ends a lease on a refusal it cannot tell from that.
  Member& lead = Add();
  ASSERT_TRUE(lead.replica->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return lead.replica->acting(); }, milliseconds(10000)));
  Listener own;
  Replica& f = *Add(nullptr, own.address()).replica;
  ASSERT_TRUE(f.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return f.LeaderAddress() == lead.address; }, milliseconds(5000)));
  // Suspicions are handled, and none ends the leader's lease.
  ASSERT_TRUE(WaitFor(
      [&] {
        f.SuspectLeader();
        return f.leader_checks() >= 3;
      },
      milliseconds(5000)));
  EXPECT_EQ(f.leaders_revoked(), 0u);
  EXPECT_TRUE(lead.replica->acting());
  EXPECT_EQ(lead.lost_count(), 0);
}

TEST(ReplicaOptions, AnEmptyAddressIsRefused) {
  auto client = etcd::Client::Create(etcd::ClientOptions{{"127.0.0.1:1"}});
  ASSERT_TRUE(client.ok());
  Replica r(**client, ReplicaOptions{}, {});
  EXPECT_EQ(r.Start().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(r.acting());
  EXPECT_EQ(r.Role(), "follower (leader: unknown)");
}

}  // namespace
}  // namespace relay::controlplane
