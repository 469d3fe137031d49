// The etcd client against real etcd members (tests/testutil/etcd_cluster.h): KV, transactions,
// leases, watches, and what callers see when members die or the quorum is lost.
#include "controlplane/etcd/etcd_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/etcd/lease_keeper.h"
#include "controlplane/etcd/watch.h"
#include "tests/testutil/etcd_cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testutil::EtcdCluster;
using testutil::WaitFor;

std::unique_ptr<EtcdCluster> StartCluster(int members) {
  auto c = EtcdCluster::Start(members);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

std::unique_ptr<Client> Connect(const std::vector<std::string>& endpoints,
                                milliseconds timeout = milliseconds(2000)) {
  auto c = Client::Create(ClientOptions{endpoints, timeout});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

// Collects watch events from gRPC's threads.
class Recorder {
 public:
  void Add(const std::vector<WatchEvent>& events) {
    absl::MutexLock lock(&mu_);
    for (const auto& e : events) {
      seen_.push_back((e.type == WatchEvent::Type::kPut ? "put " : "del ") + e.kv.key + "=" +
                      e.kv.value);
    }
  }
  std::vector<std::string> seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  size_t size() const { return seen().size(); }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

TEST(EtcdClient, RefusesBadEndpointsClearly) {
  auto none = Client::Create(ClientOptions{});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("no endpoint"), std::string::npos);
  for (const char* bad : {"localhost", "host:", ":2379", "host:port", "http://h:1/x"}) {
    auto c = Client::Create(ClientOptions{{bad}});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(c.status().message().find("host:port"), std::string::npos) << c.status();
  }
  auto tls = Client::Create(ClientOptions{{"https://127.0.0.1:2379"}});
  EXPECT_EQ(tls.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tls.status().message().find("TLS"), std::string::npos);
  EXPECT_TRUE(Client::Create(ClientOptions{{"http://127.0.0.1:2379/"}}).ok());
}

TEST(EtcdClient, UnreachableEndpointsFailWithinTheDeadline) {
  auto client = Connect({"127.0.0.1:" + std::to_string(testutil::FreeTcpPort()),
                         "127.0.0.1:" + std::to_string(testutil::FreeTcpPort())});
  ASSERT_TRUE(client);
  auto start = std::chrono::steady_clock::now();
  auto got = client->Get("k", milliseconds(500));
  auto put = client->Put("k", "v", 0, milliseconds(500));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
  EXPECT_NE(got.status().message().find("no etcd endpoint answered"), std::string::npos)
      << got.status();
  EXPECT_LT(took, seconds(3));  // two calls of 500 ms each, with slack for a loaded machine
}

TEST(EtcdClient, PutGetRangeDelete) {
  auto cluster = StartCluster(1);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  auto missing = client->Get("/t/none");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  auto r1 = client->Put("/t/a", "1");
  auto r2 = client->Put("/t/b", "2");
  auto r3 = client->Put("/u/c", "3");
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok()) << r1.status() << r2.status() << r3.status();
  EXPECT_LT(*r1, *r2);
  auto a = client->Get("/t/a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->value, "1");
  EXPECT_EQ((*a)->create_revision, *r1);
  EXPECT_EQ((*a)->version, 1);

  RangeOptions prefix;
  prefix.range_end = PrefixEnd("/t/");
  prefix.sort = RangeOptions::Sort::kKeyAscend;
  auto range = client->Range("/t/", prefix);
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, "/t/a");
  EXPECT_EQ(range->kvs[1].key, "/t/b");
  EXPECT_EQ(range->revision, *r3);

  auto deleted = client->Delete("/t/", PrefixEnd("/t/"));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  auto after = client->Range("/t/", prefix);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->kvs.empty());
  EXPECT_EQ(PrefixEnd("a\xff"), "b");
}

TEST(EtcdClient, TxnComparesChooseTheBranch) {
  auto cluster = StartCluster(1);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  // Create-if-absent: the first wins, the second sees the winner's value.
  Txn create;
  create.compares.push_back(Compare::Absent("/t/k"));
  create.success.push_back(TxnOp::Put("/t/k", "first"));
  create.failure.push_back(TxnOp::Get("/t/k"));
  auto first = client->Commit(create);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded);
  create.success[0].value = "second";
  auto second = client->Commit(create);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->gets.size(), 1u);
  ASSERT_EQ(second->gets[0].kvs.size(), 1u);
  EXPECT_EQ(second->gets[0].kvs[0].value, "first");

  // Compare-and-swap on the mod revision: a stale revision changes nothing.
  Txn cas;
  cas.compares.push_back(Compare::ModRevision("/t/k", first->revision));
  cas.success.push_back(TxnOp::Put("/t/k", "swapped"));
  auto swapped = client->Commit(cas);
  ASSERT_TRUE(swapped.ok());
  EXPECT_TRUE(swapped->succeeded);
  auto stale = client->Commit(cas);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ((*client->Get("/t/k"))->value, "swapped");

  // A guarded transaction runs only while its guard holds, and says which way it went.
  Txn write;
  write.success.push_back(TxnOp::Put("/t/guarded", "yes"));
  auto refused = client->CommitIf({Compare::Value("/t/k", "other")}, write);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->has_value());
  EXPECT_FALSE((*client->Get("/t/guarded")).has_value());
  auto done = client->CommitIf({Compare::Value("/t/k", "swapped")}, write);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(done->has_value());
  EXPECT_TRUE((*done)->succeeded);
  EXPECT_EQ((*client->Get("/t/guarded"))->value, "yes");
}

TEST(EtcdLease, KeysGoWhenTheLeaseExpiresAndStayWhileKeptAlive) {
  auto cluster = StartCluster(1);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  auto bad = client->GrantLease(0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);

  auto unkept = client->GrantLease(2);
  auto kept_at = std::chrono::steady_clock::now();
  auto kept = client->GrantLease(2);
  ASSERT_TRUE(unkept.ok() && kept.ok()) << unkept.status() << kept.status();
  EXPECT_GE(kept->ttl_seconds, 2);
  ASSERT_TRUE(client->Put("/t/unkept", "x", unkept->id).ok());
  ASSERT_TRUE(client->Put("/t/kept", "x", kept->id).ok());
  std::atomic<bool> lost{false};
  LeaseKeeper keeper(*client, *kept, kept_at, [&](absl::Status) { lost = true; });

  ASSERT_TRUE(WaitFor([&] {
    auto g = client->Get("/t/unkept");
    return g.ok() && !g->has_value();
  }));
  EXPECT_EQ(client->LeaseTimeToLive(unkept->id).status().code(), absl::StatusCode::kNotFound);
  // The kept lease outlived the other by now (both were granted together, with one TTL).
  auto still = client->Get("/t/kept");
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->has_value());
  EXPECT_FALSE(lost);
  EXPECT_GT(keeper.alive_until(), std::chrono::steady_clock::now());

  // Revoked from elsewhere: the keeper says so promptly, and the key is gone.
  ASSERT_TRUE(client->RevokeLease(kept->id).ok());
  EXPECT_TRUE(WaitFor([&] { return lost.load(); }, seconds(5)));
  EXPECT_TRUE(keeper.lost());
  EXPECT_FALSE((*client->Get("/t/kept")).has_value());
  EXPECT_EQ(client->RevokeLease(kept->id).code(), absl::StatusCode::kNotFound);
}

TEST(EtcdWatch, DeliversEventsInOrderAndReplaysFromARevision) {
  auto cluster = StartCluster(1);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  Recorder live;
  Watch watch(*client, WatchOptions{"/w/", PrefixEnd("/w/"), 0},
              [&](const std::vector<WatchEvent>& e) { live.Add(e); });
  ASSERT_TRUE(watch.WaitCreated(seconds(5)));
  auto first = client->Put("/w/a", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client->Put("/other", "x").ok());
  ASSERT_TRUE(client->Put("/w/b", "2").ok());
  ASSERT_TRUE(client->Delete("/w/a").ok());
  std::vector<std::string> want = {"put /w/a=1", "put /w/b=2", "del /w/a="};
  ASSERT_TRUE(WaitFor([&] { return live.size() >= want.size(); }));
  EXPECT_EQ(live.seen(), want);
  // A quiet stream is probed for progress (about every second), and a healthy member answers:
  // the watch stays on its stream.
  EXPECT_FALSE(WaitFor([&] { return watch.streams() != 1; }, milliseconds(3500)));

  // A watch from an earlier revision gets exactly the history since then.
  Recorder replay;
  Watch from(*client, WatchOptions{"/w/", PrefixEnd("/w/"), *first + 1},
             [&](const std::vector<WatchEvent>& e) { replay.Add(e); });
  ASSERT_TRUE(WaitFor([&] { return replay.size() >= 2; }));
  EXPECT_EQ(replay.seen(), std::vector<std::string>(want.begin() + 1, want.end()));
}

TEST(EtcdWatch, ResumesOnAnotherMemberWithoutLosingOrRepeatingEvents) {
  auto cluster = StartCluster(3);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/w/0", "0").ok());  // every stream starts on member 0
  Recorder seen;
  Watch watch(*client, WatchOptions{"/w/", PrefixEnd("/w/"), 0},
              [&](const std::vector<WatchEvent>& e) { seen.Add(e); });
  ASSERT_TRUE(watch.WaitCreated(seconds(5)));
  std::vector<std::string> want;
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(client->Put("/w/" + std::to_string(i), "v").ok());
    want.push_back("put /w/" + std::to_string(i) + "=v");
  }
  ASSERT_TRUE(WaitFor([&] { return seen.size() >= 5; }));
  cluster->Kill(0);
  for (int i = 6; i <= 10; ++i) {
    auto put = client->Put("/w/" + std::to_string(i), "v");
    ASSERT_TRUE(put.ok()) << put.status();
    want.push_back("put /w/" + std::to_string(i) + "=v");
  }
  ASSERT_TRUE(WaitFor([&] { return seen.size() >= want.size(); }));
  EXPECT_EQ(seen.seen(), want);
}

TEST(EtcdWatch, LeavesAMemberThatStoppedAnswering) {
  auto cluster = StartCluster(3);
  ASSERT_TRUE(cluster);
  // The paused member is a raft follower, first in the watch's list (where its stream starts);
  // the writer does not know it.
  int leader = cluster->RaftLeader();
  ASSERT_GE(leader, 0);
  int paused = (leader + 1) % 3;
  auto endpoints = cluster->endpoints();
  std::swap(endpoints[0], endpoints[paused]);
  auto watcher = Connect(endpoints);
  auto writer = Connect({cluster->endpoint(leader)});
  ASSERT_TRUE(watcher && writer);
  Recorder seen;
  Watch watch(*watcher, WatchOptions{"/w/", PrefixEnd("/w/"), 0},
              [&](const std::vector<WatchEvent>& e) { seen.Add(e); });
  ASSERT_TRUE(watch.WaitCreated(seconds(5)));
  ASSERT_TRUE(writer->Put("/w/1", "before").ok());
  ASSERT_TRUE(WaitFor([&] { return seen.size() == 1; }));
  cluster->Stop(paused);
  ASSERT_TRUE(writer->Put("/w/2", "during").ok());
  // gRPC's own keepalive would take 13 s; the watch's progress probe about 3 s.
  EXPECT_TRUE(WaitFor([&] { return seen.size() == 2; }, seconds(8)));
  cluster->Continue(paused);
  EXPECT_EQ(seen.seen(), (std::vector<std::string>{"put /w/1=before", "put /w/2=during"}));
}

TEST(EtcdWatch, ACompactedRevisionEndsTheWatchWithOutOfRange) {
  auto cluster = StartCluster(1);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  auto first = client->Put("/w/a", "1");
  ASSERT_TRUE(first.ok());
  auto last = client->Put("/w/a", "2");
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(client->Put("/w/a", "3").ok());
  ASSERT_TRUE(client->Compact(*last).ok());
  absl::Mutex mu;
  absl::Status end;
  bool ended = false;
  Recorder seen;
  Watch watch(
      *client, WatchOptions{"/w/", PrefixEnd("/w/"), *first},
      [&](const std::vector<WatchEvent>& e) { seen.Add(e); },
      [&](absl::Status s) {
        absl::MutexLock lock(&mu);
        end = s;
        ended = true;
      });
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return ended;
  }));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange) << end;
  EXPECT_NE(end.message().find("compacted"), std::string::npos) << end;
  EXPECT_EQ(seen.size(), 0u);
}

TEST(EtcdCluster, OneMemberKilledHasNoVisibleEffect) {
  auto cluster = StartCluster(3);
  ASSERT_TRUE(cluster);
  // The raft leader is the worst member to lose (etcd elects another meanwhile), and the
  // client's first endpoint is where its calls and streams start.
  int victim = cluster->RaftLeader();
  ASSERT_GE(victim, 0);
  auto endpoints = cluster->endpoints();
  std::swap(endpoints[0], endpoints[victim]);
  auto client = Connect(endpoints);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/k", "before").ok());
  auto at = std::chrono::steady_clock::now();
  auto lease = client->GrantLease(2);
  ASSERT_TRUE(lease.ok());
  std::atomic<bool> lost{false};
  LeaseKeeper keeper(*client, *lease, at, [&](absl::Status) { lost = true; });

  cluster->Kill(victim);
  for (int i = 0; i < 20; ++i) {
    auto put = client->Put("/k", std::to_string(i));
    ASSERT_TRUE(put.ok()) << "put " << i << ": " << put.status();
    auto got = client->Get("/k");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ((*got)->value, std::to_string(i));
  }
  // The lease lives on through the other members for longer than its TTL.
  EXPECT_FALSE(WaitFor([&] { return lost.load(); }, seconds(3)));
  EXPECT_TRUE(client->LeaseTimeToLive(lease->id).ok());
}

TEST(EtcdCluster, APausedMemberDoesNotHoldReadsUp) {
  auto cluster = StartCluster(3);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/k", "v").ok());  // calls now go to member 0
  cluster->Stop(0);
  auto got = client->Get("/k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)->value, "v");
  cluster->Continue(0);
}

TEST(EtcdCluster, LossOfQuorumFailsCallsWithinTheirDeadlineAndServiceResumes) {
  auto cluster = StartCluster(3);
  ASSERT_TRUE(cluster);
  auto client = Connect(cluster->endpoints(), milliseconds(1000));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/k", "before").ok());
  cluster->Kill(1);
  cluster->Kill(2);
  for (int i = 0; i < 2; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto put = client->Put("/k", "during");
    auto got = client->Get("/k");
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
    EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
    EXPECT_LT(took, seconds(4)) << "two calls of 1 s each";
  }
  auto restarted = cluster->Restart(1);
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_TRUE(WaitFor([&] { return client->Put("/k", "after").ok(); }, seconds(10)));
  auto got = client->Get("/k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)->value, "after");
}

}  // namespace
}  // namespace relay::controlplane::etcd
