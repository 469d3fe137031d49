// Webhooks on etcd (webhook_backend.h) against a real etcd member (tests/testutil/etcd_cluster.h):
// endpoints and the outbox survive into a new Webhooks object on the same prefix (a newly elected
// leader) which delivers what the old one had not; a run of writes larger than one etcd
// transaction commits in order; the fence refusing writes; a commit etcd could not take is
// retried, in order, once etcd is back; and the outbox write rate (printed, for docs/webhooks.md).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crypto.h"
#include "controlplane/app_store.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/webhook_backend.h"
#include "controlplane/webhooks.h"
#include "tests/testutil/etcd_cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using std::chrono::milliseconds;
using testutil::EtcdCluster;
using testutil::WaitFor;

// Records request bodies; answers `status`.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::string> bodies ABSL_GUARDED_BY(mu);
  std::atomic<int> status{200};
  HttpPost Post() {
    return [this](const std::string&, const auto&, const std::string& body, auto) {
      absl::MutexLock lock(&mu);
      bodies.push_back(body);
      return PostResult{status.load(), ""};
    };
  }
  std::string All() {
    absl::MutexLock lock(&mu);
    std::string all;
    for (const auto& b : bodies) all += b;
    return all;
  }
  size_t Count() {
    absl::MutexLock lock(&mu);
    return bodies.size();
  }
};

// One control plane's local state: its own data dir and app store (the app a1 in it), as two
// replicas would each have.
struct Local {
  Local() : dir(std::filesystem::temp_directory_path() / ("relay-whe-" + common::RandomHex(6))) {
    auto s = AppStore::Open(dir.string());
    EXPECT_TRUE(s.ok()) << s.status();
    store = std::move(*s);
    relay::v1::CreateAppRequest req;
    req.set_name("a");
    req.set_id("a1");
    EXPECT_TRUE(store->Create(req).ok());
  }
  ~Local() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  std::unique_ptr<AppStore> store;
};

class WebhooksEtcd : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = EtcdCluster::Start(1);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto client = etcd::Client::Create(etcd::ClientOptions{cluster_->endpoints()});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::unique_ptr<Webhooks> Make(Local& local, HttpPost post, WebhookOptions options = {}) {
    auto hooks = std::make_unique<Webhooks>(
        MakeEtcdWebhookBackend(*client_, EtcdWebhookOptions{.prefix = kPrefix}), *local.store,
        std::move(post), options);
    auto st = hooks->Open();
    EXPECT_TRUE(st.ok()) << st;
    return hooks;
  }

  // Webhooks of the control plane "cp-1", fenced on /leader == cp-1 (which it holds now).
  std::unique_ptr<Webhooks> MakeLeaderCp1(Local& local, Recorder& recorder) {
    EXPECT_TRUE(client_->Put("/leader", "cp-1").ok());
    auto hooks = Make(local, recorder.Post());
    hooks->SetFence(
        [] { return std::vector<etcd::Compare>{etcd::Compare::Value("/leader", "cp-1")}; });
    return hooks;
  }

  // Keys under <prefix>/v1/<what>/, in key order.
  std::vector<std::string> Keys(const std::string& what) {
    std::string p = std::string(kPrefix) + "/v1/" + what + "/";
    etcd::RangeOptions ro;
    ro.range_end = etcd::PrefixEnd(p);
    auto r = client_->Range(p, ro);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> keys;
    if (r.ok()) {
      for (const auto& kv : r->kvs) keys.push_back(kv.key);
    }
    return keys;
  }

  static constexpr char kPrefix[] = "/relay-test";
  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<etcd::Client> client_;
};

relay::v1::Webhook Hook() {
  relay::v1::Webhook h;
  h.set_url("http://127.0.0.1:1/x");
  h.set_batch_max_events(100);
  return h;
}

// Every "c<i>" of [from, to) appears in `all`, in order.
void ExpectInOrder(const std::string& all, int from, int to) {
  size_t at = 0;
  for (int i = from; i < to; ++i) {
    size_t next = all.find("\"channel\":\"c" + std::to_string(i) + "\"", at);
    ASSERT_NE(next, std::string::npos) << "c" << i << " missing or out of order";
    at = next;
  }
}

TEST_F(WebhooksEtcd, ANewLeaderOnThePrefixDeliversWhatTheOldOneDidNot) {
  constexpr int kEvents = 300;  // more than one etcd transaction holds
  Local old_cp;
  std::string id;
  {
    // The old leader: its receiver is down (500), so everything stays in the outbox.
    Recorder down;
    down.status = 500;
    auto hooks = Make(old_cp, down.Post());
    hooks->Start();
    auto added = hooks->Add("a1", Hook());
    ASSERT_TRUE(added.ok()) << added.status();
    id = added->id();
    for (int i = 0; i < kEvents; ++i) {
      hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
    }
    ASSERT_TRUE(WaitFor([&] { return Keys("outbox").size() == kEvents; })) << Keys("outbox").size();
    ASSERT_TRUE(WaitFor([&] { return down.Count() >= 1; }));  // it tried, and failed
  }  // the old leader goes (what it stored is all the new one gets)
  EXPECT_EQ(Keys("webhooks"),
            std::vector<std::string>{std::string(kPrefix) + "/v1/webhooks/" + id});

  // The new leader: another process with its own data dir, on the same etcd prefix.
  Local new_cp;
  Recorder up;
  auto hooks = Make(new_cp, up.Post());
  auto list = hooks->List("a1");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id(), id);
  EXPECT_EQ(list[0].url(), "http://127.0.0.1:1/x");
  EXPECT_EQ(list[0].stats().retrying(), static_cast<uint64_t>(kEvents));
  hooks->Start();
  ASSERT_TRUE(WaitFor([&] { return hooks->List("a1")[0].stats().delivered() == kEvents; }));
  ExpectInOrder(up.All(), 0, kEvents);
  // Delivered events leave etcd; new ones are numbered after every row the old leader used.
  ASSERT_TRUE(WaitFor([&] { return Keys("outbox").empty(); }));
  up.status = 500;
  hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "later"));
  ASSERT_TRUE(WaitFor([&] { return Keys("outbox").size() == 1; }));
  std::string key = Keys("outbox")[0];
  EXPECT_EQ(key, std::string(kPrefix) + "/v1/outbox/" + id + "/" + std::string(17, '0') + "301");
  // Removing the endpoint removes it and its outbox from etcd.
  ASSERT_TRUE(hooks->Remove(id).ok());
  EXPECT_TRUE(Keys("webhooks").empty());
  EXPECT_TRUE(Keys("outbox").empty());
}

// Replicas: a follower's Webhooks, opened before the leader queued anything, delivers nothing;
// elected, it reloads what the leader left in etcd and delivers that.
TEST_F(WebhooksEtcd, AFollowerDeliversNothingThenReloadsWhenElected) {
  Local follower_cp;
  Recorder up;
  auto follower = Make(follower_cp, up.Post());
  follower->SetActive(false);
  follower->Start();
  Local leader_cp;
  std::string id;
  {
    Recorder down;
    down.status = 500;
    auto leader = Make(leader_cp, down.Post());
    auto added = leader->Add("a1", Hook());
    ASSERT_TRUE(added.ok()) << added.status();
    id = added->id();
    for (int i = 0; i < 5; ++i) {
      leader->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
    }
    ASSERT_TRUE(WaitFor([&] { return Keys("outbox").size() == 5; }));
  }
  EXPECT_TRUE(follower->List("a1").empty());  // loaded before the endpoint existed
  ASSERT_TRUE(follower->Reload().ok());
  ASSERT_EQ(follower->List("a1").size(), 1u);
  EXPECT_EQ(up.Count(), 0u);
  follower->SetActive(true);
  ASSERT_TRUE(WaitFor([&] { return follower->List("a1")[0].stats().delivered() == 5; }));
  ExpectInOrder(up.All(), 0, 5);
  ASSERT_TRUE(WaitFor([&] { return Keys("outbox").empty(); }));
}

// 1000 inserts of 12 KB (over etcd's 128 operations and 1.5 MiB per transaction, and over
// gRPC's 4 MiB per load page) and deletes,
// some of rows inserted in the same run: stored in order, and a run cut short (here by the
// fence failing at the fourth transaction) leaves a prefix of it, never a later write without
// an earlier one.
TEST_F(WebhooksEtcd, ALargeRunCommitsInOrderAcrossTransactions) {
  // Load pages of 500 x 12 KB are over gRPC's 4 MiB: cut until they fit.
  auto backend =
      MakeEtcdWebhookBackend(*client_, EtcdWebhookOptions{.prefix = kPrefix, .load_page = 500});
  ASSERT_TRUE(backend->Load().ok());
  std::deque<WebhookOutboxWrite> writes;
  std::string big(12 * 1024, 'x');
  for (int i = 1; i <= 1000; ++i) {
    writes.push_back({i, "wh_a", WebhookOutboxEntry{i, "n", "c" + std::to_string(i), "", big}});
  }
  for (int i = 1; i <= 10; ++i) writes.push_back({i, "wh_a", std::nullopt});
  // As Webhooks does: what etcd did not take (a transaction timed out on a loaded machine) is
  // written again from the first write not surely stored.
  WebhookCommitResult r;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::deque<WebhookOutboxWrite> rest(writes.begin() + r.written, writes.end());
    size_t before = r.written;
    r = backend->Commit(rest);
    r.written += before;
    if (r.status.code() != absl::StatusCode::kUnavailable) break;
  }
  ASSERT_TRUE(r.status.ok()) << r.status << " after " << r.written;
  EXPECT_EQ(r.written, writes.size());
  auto loaded = backend->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->outbox.size(), 990u);
  for (size_t i = 0; i < loaded->outbox.size(); ++i) {
    EXPECT_EQ(loaded->outbox[i].first, "wh_a");
    EXPECT_EQ(loaded->outbox[i].second.row, static_cast<int64_t>(i + 11));
    EXPECT_EQ(loaded->outbox[i].second.channel, "c" + std::to_string(i + 11));
  }
  EXPECT_EQ(loaded->max_row, 1000);

  // The fence holds for three transactions, then another leader takes over.
  ASSERT_TRUE(client_->Put("/fence", "me").ok());
  std::atomic<int> calls{0};
  backend->SetFence([&] {
    if (++calls == 4) {
      EXPECT_TRUE(client_->Put("/fence", "other").ok());
    }
    return std::vector<etcd::Compare>{etcd::Compare::Value("/fence", "me")};
  });
  writes.clear();
  for (int i = 1001; i <= 2000; ++i) {
    writes.push_back({i, "wh_b", WebhookOutboxEntry{i, "n", "c" + std::to_string(i), "", big}});
  }
  r = backend->Commit(writes);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition) << r.status;
  ASSERT_GT(r.written, 0u);
  ASSERT_LT(r.written, writes.size());
  loaded = backend->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<int64_t> rows;
  for (const auto& [ep, e] : loaded->outbox) {
    if (ep == "wh_b") rows.push_back(e.row);
  }
  ASSERT_EQ(rows.size(), r.written);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i], static_cast<int64_t>(1001 + i));
}

TEST_F(WebhooksEtcd, TheFenceRefusesEveryWriteOnceAnotherLeaderHoldsIt) {
  Local local;
  Recorder down;  // nothing is delivered: everything stays in the outbox
  down.status = 500;
  auto hooks = MakeLeaderCp1(local, down);
  auto added = hooks->Add("a1", Hook());
  ASSERT_TRUE(added.ok()) << added.status();
  hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c0"));
  ASSERT_TRUE(WaitFor([&] { return Keys("outbox").size() == 1; }));

  // Another control plane leads now: nothing this one writes lands.
  ASSERT_TRUE(client_->Put("/leader", "cp-2").ok());
  auto refused = hooks->Add("a1", Hook());
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("no longer the leader"), std::string::npos);
  EXPECT_EQ(hooks->Remove(added->id()).code(), absl::StatusCode::kFailedPrecondition);
  hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c1"));
  ASSERT_TRUE(WaitFor([&] { return hooks->totals().fenced_writes >= 3; }))
      << hooks->totals().fenced_writes;
  EXPECT_EQ(Keys("webhooks").size(), 1u);
  EXPECT_EQ(Keys("outbox").size(), 1u);
  EXPECT_EQ(hooks->List("a1").size(), 1u);  // the refused removal left the endpoint in place
}

// A leader that stops stores what it queued before it resigns (ControlPlane::Stop calls
// StoreQueued while its fence still holds): every event is in etcd at once for the next leader,
// none left to a commit that the next leader's fence would refuse.
TEST_F(WebhooksEtcd, StoreQueuedCommitsEverythingBeforeTheFenceMoves) {
  constexpr int kEvents = 500;  // several transactions
  Local local;
  Recorder down;  // nothing is delivered: everything stays in the outbox
  down.status = 500;
  auto hooks = MakeLeaderCp1(local, down);
  ASSERT_TRUE(hooks->Add("a1", Hook()).ok());
  for (int i = 0; i < kEvents; ++i) {
    hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
  }
  hooks->StoreQueued();
  ASSERT_TRUE(client_->Put("/leader", "cp-2").ok());  // resigned: the next leader holds it
  EXPECT_EQ(Keys("outbox").size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(hooks->totals().fenced_writes, 0u);
}

// etcd down: the outbox writes wait (their events are not delivered before they are stored)
// and go in, in order, once it is back; nothing is lost.
TEST_F(WebhooksEtcd, ACommitEtcdCouldNotTakeIsRetriedInOrder) {
  Local local;
  Recorder up;
  auto hooks = Make(local, up.Post());
  auto added = hooks->Add("a1", Hook());
  ASSERT_TRUE(added.ok());
  hooks->Start();
  cluster_->Kill(0);
  for (int i = 0; i < 50; ++i) {
    hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
  }
  ASSERT_TRUE(WaitFor([&] { return hooks->totals().store_failures >= 1; }));
  EXPECT_EQ(up.Count(), 0u);
  EXPECT_EQ(hooks->List("a1")[0].stats().retrying(), 50u);
  ASSERT_TRUE(cluster_->Restart(0).ok());
  ASSERT_TRUE(WaitFor([&] { return hooks->List("a1")[0].stats().delivered() == 50; },
                      std::chrono::seconds(20)));
  ExpectInOrder(up.All(), 0, 50);
  ASSERT_TRUE(WaitFor([&] { return Keys("outbox").empty(); }));
}

// The cost, printed for docs/webhooks.md (with SQLite for comparison):
//   - coalesced: events emitted faster than etcd commits, as in a burst; the writer commits
//     whatever queued meanwhile in one run (cut into transactions of at most 128 operations);
//   - one per transaction: events arriving one at a time, each its own commit (the latency
//     bound: each costs an etcd round trip and its fsync).
TEST_F(WebhooksEtcd, OutboxWriteRate) {
  constexpr int kBurst = 20000;
  constexpr int kSingles = 300;
  WebhookOptions options;
  options.max_outbox_per_endpoint = kBurst;
  auto rate = [](int n, std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<int>(n / s);
  };
  for (bool on_etcd : {true, false}) {
    const char* name = on_etcd ? "etcd (1 member)" : "sqlite";
    Local local;
    Recorder up;
    std::unique_ptr<Webhooks> hooks;
    if (on_etcd) {
      hooks = Make(local, up.Post(), options);
    } else {
      hooks = std::make_unique<Webhooks>(local.dir.string(), *local.store, up.Post(), options);
      ASSERT_TRUE(hooks->Open().ok());
    }
    ASSERT_TRUE(hooks->Add("a1", Hook()).ok());
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kBurst; ++i) {
      hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
    }
    hooks->Stop();  // returns once every outbox write is stored
    std::cout << "[rate] " << name << ", coalesced: " << rate(kBurst, t0)
              << " events/s stored in the outbox\n";
    if (on_etcd) {
      EXPECT_EQ(Keys("outbox").size(), static_cast<size_t>(kBurst));
    }

    std::unique_ptr<WebhookBackend> backend;
    if (on_etcd) {
      backend = MakeEtcdWebhookBackend(*client_, EtcdWebhookOptions{.prefix = "/rate"});
    } else {
      backend = MakeSqliteWebhookBackend(local.dir.string() + "/single");
      std::filesystem::create_directories(local.dir / "single");
    }
    ASSERT_TRUE(backend->Load().ok());
    WebhookOutboxEntry e{0, "channel_occupied", "c", "",
                         R"({"name":"channel_occupied","channel":"c"})"};
    t0 = std::chrono::steady_clock::now();
    for (int i = 1; i <= kSingles; ++i) {
      e.row = i;
      ASSERT_TRUE(backend->Commit({{i, "wh_a", e}}).status.ok());
    }
    std::cout << "[rate] " << name << ", one per transaction: " << rate(kSingles, t0)
              << " events/s\n";
  }
}

}  // namespace
}  // namespace relay::controlplane
