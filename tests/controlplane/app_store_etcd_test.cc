// AppStore on etcd (EtcdBackend) against a real etcd member (tests/testutil/etcd_cluster.h):
// what it stores is there for the next store on the prefix, two stores racing for one app id or
// key cannot both win, a change one store makes reaches the other through its watch (cache and
// listener), and a fence that no longer holds refuses every write and writes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crypto.h"
#include "controlplane/app_store.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd_backend.h"
#include "controlplane/sqlite_backend.h"
#include "controlplane/store_import.h"
#include "tests/testutil/etcd_cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using relay::v1::App;
using std::chrono::seconds;
using testutil::EtcdCluster;
using testutil::WaitFor;

class AppStoreEtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EtcdCluster::Start(1);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    auto client = etcd::Client::Create(etcd::ClientOptions{cluster_->endpoints()});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::unique_ptr<AppStore> Open(const std::string& prefix = "/test") {
    auto backend = EtcdBackend::Open(*client_, prefix);
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (!backend.ok()) return nullptr;
    auto store = AppStore::Open(std::move(*backend), clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  bool KeyExists(const std::string& key) {
    auto kv = client_->Get(key);
    EXPECT_TRUE(kv.ok()) << kv.status();
    return kv.ok() && kv->has_value();
  }

  static relay::v1::CreateAppRequest AppRequest(const std::string& id) {
    relay::v1::CreateAppRequest req;
    req.set_name(id);
    req.set_id(id);
    req.set_key(id + "-key");
    req.set_secret(id + "-secret");
    return req;
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<etcd::Client> client_;
  common::ManualClock clock_{1'700'000'000'000};
};

// Records the listener's calls (writer thread) for the test thread.
class Changes {
 public:
  AppStore::Listener listener() {
    return [this](const App& app, bool removed) {
      absl::MutexLock lock(&mu_);
      seen_.push_back((removed ? "removed " : "changed ") + app.id() + " " + app.name());
    };
  }
  bool Saw(const std::string& what) const {
    absl::MutexLock lock(&mu_);
    return std::find(seen_.begin(), seen_.end(), what) != seen_.end();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

TEST_F(AppStoreEtcdTest, EverythingIsStoredInEtcdForTheNextStore) {
  std::string token_secret, node_secret, node_token_id;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto app = store->Create(AppRequest("a1"));
    ASSERT_TRUE(app.ok()) << app.status();
    EXPECT_TRUE(KeyExists("/test/v1/apps/a1"));
    EXPECT_TRUE(KeyExists("/test/v1/app-keys/a1-key"));
    EXPECT_TRUE(KeyExists("/test/v1/meta/schema"));

    relay::v1::UpdateAppRequest update;
    update.set_app("a1-key");
    update.mutable_changes()->set_name("renamed");
    update.add_update_mask("name");
    auto updated = store->Update(update);
    ASSERT_TRUE(updated.ok()) << updated.status();
    EXPECT_GT(updated->revision(), app->revision());

    auto token = store->CreateToken("a1", "ci", 0);
    ASSERT_TRUE(token.ok()) << token.status();
    token_secret = token->secret();
    EXPECT_EQ(store->VerifyToken(token_secret), "a1");
    auto doomed = store->CreateToken("a1", "doomed", 0);
    ASSERT_TRUE(doomed.ok());
    ASSERT_TRUE(store->RevokeToken(doomed->token().id()).ok());
    EXPECT_FALSE(KeyExists("/test/v1/tokens/" + doomed->token().id()));

    auto node = store->CreateNodeToken("edge", "dp-1");
    ASSERT_TRUE(node.ok()) << node.status();
    node_secret = node->secret();
    node_token_id = node->token().id();

    EXPECT_TRUE(store->SaveUsage("2026-12-03", "a1", 42).ok());
    EXPECT_TRUE(store->SaveUsage("2026-12-03", "a1", 7).ok());  // smaller: ignored
    store->RememberNode("dp-1");
    store->RememberNode("dp-2");
    store->ForgetNode("dp-2");
    store->writer().Flush();
    // The secrets themselves are never stored, only their hashes.
    auto all = client_->Range("/test/", etcd::RangeOptions{.range_end = etcd::PrefixEnd("/test/")});
    ASSERT_TRUE(all.ok());
    for (const auto& kv : all->kvs) {
      EXPECT_EQ(kv.value.find(token_secret), std::string::npos) << kv.key;
      EXPECT_EQ(kv.value.find(node_secret), std::string::npos) << kv.key;
    }
  }
  // A new store on the same prefix (another replica, or this one restarted) has all of it.
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto app = store->Find("a1-key");
  ASSERT_TRUE(app.has_value());
  EXPECT_EQ(app->name(), "renamed");
  EXPECT_EQ(app->secret(), "a1-secret");
  EXPECT_EQ(store->VerifyToken(token_secret), "a1");
  auto tokens = store->ListTokens("a1");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].name(), "ci");
  auto node = store->VerifyNodeToken(node_secret);
  ASSERT_TRUE(node.has_value());
  EXPECT_EQ(node->node_id(), "dp-1");
  EXPECT_EQ(store->LoadUsage("2026-12-03").at("a1"), 42u);
  EXPECT_EQ(store->LoadKnownNodes(), std::vector<std::string>{"dp-1"});

  // Deleting the app takes its key and tokens with it.
  ASSERT_TRUE(store->Delete("a1").ok());
  EXPECT_FALSE(KeyExists("/test/v1/apps/a1"));
  EXPECT_FALSE(KeyExists("/test/v1/app-keys/a1-key"));
  EXPECT_FALSE(store->VerifyToken(token_secret).has_value());
  ASSERT_TRUE(store->RevokeNodeToken(node_token_id).ok());
  store.reset();
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_TRUE(reopened->List().empty());
  EXPECT_FALSE(reopened->VerifyToken(token_secret).has_value());
  EXPECT_FALSE(reopened->VerifyNodeToken(node_secret).has_value());
  // Another prefix is another store.
  auto other = Open("/elsewhere");
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->List().empty());
}

TEST_F(AppStoreEtcdTest, TwoStoresRacingForOneIdOrKeyCannotBothWin) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (int round = 0; round < 10; ++round) {
    const std::string id = "race" + std::to_string(round);
    auto req_a = AppRequest(id);
    auto req_b = AppRequest(id);
    // Odd rounds: different ids, the same key.
    if (round % 2 == 1) req_b.set_id(id + "-b");
    absl::StatusOr<App> ra = absl::UnknownError("unset"), rb = absl::UnknownError("unset");
    std::thread ta([&] { ra = a->Create(req_a); });
    std::thread tb([&] { rb = b->Create(req_b); });
    ta.join();
    tb.join();
    EXPECT_NE(ra.ok(), rb.ok()) << "round " << round << ": " << ra.status() << " / " << rb.status();
    const absl::Status& lost = ra.ok() ? rb.status() : ra.status();
    EXPECT_EQ(lost.code(), absl::StatusCode::kAlreadyExists) << lost;
  }
  // Both end up with the same ten apps (each sees the other's through its watch).
  EXPECT_TRUE(WaitFor([&] { return a->List().size() == 10 && b->List().size() == 10; }));
  // An id that is another app's key is refused too.
  auto clash = AppRequest("race0-key");
  clash.set_key("fresh-key");
  EXPECT_EQ(a->Create(clash).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(AppStoreEtcdTest, ChangesByAnotherStoreArriveThroughTheWatch) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Changes seen_by_b;
  b->SetListener(seen_by_b.listener());

  ASSERT_TRUE(a->Create(AppRequest("w1")).ok());
  EXPECT_TRUE(WaitFor([&] { return seen_by_b.Saw("changed w1 w1"); }, seconds(10)));
  ASSERT_TRUE(b->FindByKey("w1-key").has_value());

  relay::v1::UpdateAppRequest update;
  update.set_app("w1");
  update.mutable_changes()->set_name("second");
  update.add_update_mask("name");
  ASSERT_TRUE(a->Update(update).ok());
  EXPECT_TRUE(WaitFor([&] { return seen_by_b.Saw("changed w1 second"); }, seconds(10)));
  EXPECT_EQ(b->Find("w1")->name(), "second");

  // B now updates the same app: it saw A's revision, so its write is accepted.
  update.mutable_changes()->set_name("third");
  ASSERT_TRUE(b->Update(update).ok());
  EXPECT_TRUE(WaitFor([&] { return a->Find("w1")->name() == "third"; }, seconds(10)));

  auto token = a->CreateToken("w1", "t", 0);
  ASSERT_TRUE(token.ok());
  EXPECT_TRUE(WaitFor([&] { return b->VerifyToken(token->secret()).has_value(); }, seconds(10)));
  auto node = a->CreateNodeToken("n", "");
  ASSERT_TRUE(node.ok());
  EXPECT_TRUE(WaitFor([&] { return b->VerifyNodeToken(node->secret()).has_value(); }, seconds(10)));
  ASSERT_TRUE(a->RevokeNodeToken(node->token().id()).ok());
  EXPECT_TRUE(
      WaitFor([&] { return !b->VerifyNodeToken(node->secret()).has_value(); }, seconds(10)));

  ASSERT_TRUE(a->Delete("w1").ok());
  EXPECT_TRUE(WaitFor([&] { return seen_by_b.Saw("removed w1 third"); }, seconds(10)));
  EXPECT_FALSE(b->Find("w1").has_value());
  EXPECT_FALSE(b->VerifyToken(token->secret()).has_value());
}

TEST_F(AppStoreEtcdTest, AStaleUpdateIsRefusedNotLost) {
  auto a = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Create(AppRequest("s1")).ok());
  // Another writer changes the record behind the store's back (as a replica whose change has
  // not reached this one yet): an update from the stale view must not overwrite it.
  auto kv = client_->Get("/test/v1/apps/s1");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  App other;
  ASSERT_TRUE(other.ParseFromString((*kv)->value));
  other.set_name("by-someone-else");
  other.set_revision(other.revision() + 100);
  etcd::Txn txn;
  txn.success.push_back(etcd::TxnOp::Put("/test/v1/apps/s1", other.SerializeAsString()));
  // Written and applied from the watch before the update runs, or refused: never overwritten.
  relay::v1::UpdateAppRequest update;
  update.set_app("s1");
  update.mutable_changes()->set_plan("gold");
  update.add_update_mask("plan");
  ASSERT_TRUE(client_->Commit(txn).ok());
  auto result = a->Update(update);
  if (result.ok()) {
    EXPECT_EQ(result->name(), "by-someone-else");  // the watch had delivered it first
  } else {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
  }
  EXPECT_TRUE(WaitFor([&] { return a->Find("s1")->name() == "by-someone-else"; }, seconds(10)));
}

TEST_F(AppStoreEtcdTest, AFenceThatNoLongerHoldsRefusesEveryWrite) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  // The leader key as an election holds it: writes are fenced on its create revision.
  auto rev = client_->Put("/test-election/leader", "me");
  ASSERT_TRUE(rev.ok());
  const int64_t won_at = *rev;
  EXPECT_TRUE(store->SetFence([won_at] {
    return std::vector<etcd::Compare>{
        etcd::Compare::CreateRevision("/test-election/leader", won_at)};
  }));
  ASSERT_TRUE(store->Create(AppRequest("f1")).ok());
  auto token = store->CreateToken("f1", "t", 0);
  ASSERT_TRUE(token.ok());

  // Leadership lost: the key is gone and made again by someone else.
  ASSERT_TRUE(client_->Delete("/test-election/leader").ok());
  ASSERT_TRUE(client_->Put("/test-election/leader", "other").ok());

  auto created = store->Create(AppRequest("f2"));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kFailedPrecondition) << created.status();
  EXPECT_NE(created.status().message().find("not the leader"), std::string::npos);
  EXPECT_FALSE(KeyExists("/test/v1/apps/f2"));
  EXPECT_FALSE(store->Find("f2").has_value());

  relay::v1::UpdateAppRequest update;
  update.set_app("f1");
  update.mutable_changes()->set_name("nope");
  update.add_update_mask("name");
  EXPECT_EQ(store->Update(update).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Find("f1")->name(), "f1");
  EXPECT_EQ(store->Delete("f1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(KeyExists("/test/v1/apps/f1"));
  EXPECT_EQ(store->RevokeToken(token->token().id()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->CreateNodeToken("n", "").status().code(), absl::StatusCode::kFailedPrecondition);
  store->RememberNode("dp-9");
  store->writer().Flush();
  EXPECT_FALSE(KeyExists("/test/v1/nodes/dp-9"));

  // Cleared: writes go through again.
  store->SetFence(nullptr);
  EXPECT_TRUE(store->Create(AppRequest("f3")).ok());
}

// A store whose etcd member froze while another store changed apps and the history was
// compacted: its watch moves to another member, cannot resume from a compacted revision, and the
// store reads everything again; it ends with the current state and its listener heard of each
// change.
TEST(AppStoreEtcdCompaction, AWatchThatCannotResumeReadsEverythingAgain) {
  auto cluster = EtcdCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  // The follower prefers a member that is not the raft leader (frozen below without a raft
  // election) and falls back on the leader, which the writer talks to.
  const int leader = (*cluster)->RaftLeader();
  ASSERT_GE(leader, 0);
  const int frozen = (leader + 1) % 3;
  auto far = etcd::Client::Create(
      etcd::ClientOptions{{(*cluster)->endpoint(frozen), (*cluster)->endpoint(leader)}});
  auto near = etcd::Client::Create(etcd::ClientOptions{{(*cluster)->endpoint(leader)}});
  ASSERT_TRUE(far.ok() && near.ok());
  auto writer_backend = EtcdBackend::Open(**near, "/cmp");
  auto follower_backend = EtcdBackend::Open(**far, "/cmp");
  ASSERT_TRUE(writer_backend.ok() && follower_backend.ok());
  EtcdBackend* follower_etcd = follower_backend->get();
  auto writer = AppStore::Open(std::move(*writer_backend));
  auto follower = AppStore::Open(std::move(*follower_backend));
  ASSERT_TRUE(writer.ok() && follower.ok());
  Changes seen;
  (*follower)->SetListener(seen.listener());
  relay::v1::CreateAppRequest req;
  req.set_name("c1");
  req.set_id("c1");
  ASSERT_TRUE((*writer)->Create(req).ok());
  ASSERT_TRUE(WaitFor([&] { return seen.Saw("changed c1 c1"); }, seconds(10)));

  // The follower's member freezes; before its watch gives up on it (a few seconds), the changes
  // are made and the history they are in is compacted away.
  (*cluster)->Stop(frozen);
  req.set_name("c2");
  req.set_id("c2");
  ASSERT_TRUE((*writer)->Create(req).ok());
  ASSERT_TRUE((*writer)->Delete("c1").ok());
  auto head = (*near)->Put("/cmp-other/x", "y");
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE((*near)->Compact(*head).ok());

  EXPECT_TRUE(WaitFor([&] { return follower_etcd->reloads() > 0; }, seconds(30)));
  EXPECT_TRUE(
      WaitFor([&] { return (*follower)->Find("c2").has_value() && !(*follower)->Find("c1"); },
              seconds(10)));
  EXPECT_TRUE(seen.Saw("changed c2 c2"));
  EXPECT_TRUE(seen.Saw("removed c1 c1"));
  // And it follows again from there.
  req.set_name("c3");
  req.set_id("c3");
  ASSERT_TRUE((*writer)->Create(req).ok());
  EXPECT_TRUE(WaitFor([&] { return seen.Saw("changed c3 c3"); }, seconds(10)));
  (*cluster)->Continue(frozen);
}

TEST_F(AppStoreEtcdTest, ImportCopiesAnSqliteStoreOnce) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("relay-import-" + common::RandomHex(6))).string();
  std::string token_secret;
  {
    auto sqlite = AppStore::Open(dir, clock_);
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    ASSERT_TRUE((*sqlite)->Create(AppRequest("imp")).ok());
    auto token = (*sqlite)->CreateToken("imp", "t", 0);
    ASSERT_TRUE(token.ok());
    token_secret = token->secret();
    ASSERT_TRUE((*sqlite)->SaveUsage("2026-12-01", "imp", 5).ok());
  }
  auto summary = ImportSqliteStore(dir + "/relay.db", *client_, "/imported");
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->apps, 1u);
  EXPECT_EQ(summary->tokens, 1u);
  EXPECT_EQ(summary->usage_counts, 1u);
  EXPECT_FALSE(summary->already_imported);
  auto store = Open("/imported");
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Find("imp-key")->secret(), "imp-secret");
  EXPECT_EQ(store->VerifyToken(token_secret), "imp");
  EXPECT_EQ(store->LoadUsage("2026-12-01").at("imp"), 5u);
  // Again: the same data, nothing to do.
  auto again = ImportSqliteStore(dir, *client_, "/imported");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_imported);
  // Different apps there: refused.
  ASSERT_TRUE(store->Create(AppRequest("other")).ok());
  auto refused = ImportSqliteStore(dir, *client_, "/imported");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(ImportSqliteStore(dir + "/missing.db", *client_, "/x").status().code(),
            absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace relay::controlplane
