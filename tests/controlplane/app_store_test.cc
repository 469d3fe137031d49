// AppStore: what it stores survives a reopen of the data dir, writes go through one bounded
// writer (a full queue refuses at once, reads never wait for a write), and the time rules (token
// expiry, secret-rotation overlap, last-used stamps) follow the injected clock.
#include "controlplane/app_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>

#include "common/app_secrets.h"
#include "common/crypto.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using relay::v1::App;

class AppStoreTest : public ::testing::Test {
 protected:
  AppStoreTest()
      : dir_((std::filesystem::temp_directory_path() / ("relay-store-" + common::RandomHex(6)))
                 .string()) {}
  ~AppStoreTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<AppStore> Open(size_t max_queued_writes = AppStore::kDefaultMaxQueuedWrites) {
    auto store = AppStore::Open(dir_, clock_, max_queued_writes);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  static relay::v1::CreateAppRequest AppRequest(const std::string& id) {
    relay::v1::CreateAppRequest req;
    req.set_name(id);
    req.set_id(id);
    req.set_key(id + "-key");
    req.set_secret(id + "-secret");
    return req;
  }

  std::string dir_;
  common::ManualClock clock_{1'700'000'000'000};
};

TEST(StoreWriter, RunsJobsInOrderAndNestedJobsInline) {
  std::vector<int> ran;  // touched only by the writer thread until Flush returns
  {
    StoreWriter writer(8);
    writer.Submit([&](absl::Status st) {
      EXPECT_TRUE(st.ok());
      ran.push_back(1);
      // A job that causes another write: it runs now, as part of this one, not after job 3.
      writer.Submit([&](absl::Status nested) {
        EXPECT_TRUE(nested.ok());
        EXPECT_TRUE(writer.OnWriterThread());
        ran.push_back(2);
      });
    });
    writer.Submit([&](absl::Status) { ran.push_back(3); });
    writer.Flush();
    EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
    writer.Submit([&](absl::Status) { ran.push_back(4); });
  }  // destruction runs what is still queued
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4}));
}

TEST_F(AppStoreTest, WritesSurviveReopen) {
  std::string token_secret, node_secret, revoked_node;
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(AppRequest("a1")).ok());
    ASSERT_TRUE(store->Create(AppRequest("a2")).ok());
    EXPECT_EQ(store->Create(AppRequest("a1")).status().code(), absl::StatusCode::kAlreadyExists);
    relay::v1::UpdateAppRequest update;
    update.set_app("a1-key");
    update.mutable_changes()->set_name("renamed");
    update.add_update_mask("name");
    ASSERT_TRUE(store->Update(update).ok());
    ASSERT_TRUE(store->Delete("a2").ok());
    EXPECT_EQ(store->Delete("a2").code(), absl::StatusCode::kNotFound);
    auto token = store->CreateToken("a1", "ci", 0);
    ASSERT_TRUE(token.ok());
    token_secret = token->secret();
    auto revoked = store->CreateToken("a1", "old", 0);
    ASSERT_TRUE(revoked.ok());
    ASSERT_TRUE(store->RevokeToken(revoked->token().id()).ok());
    EXPECT_EQ(store->RevokeToken(revoked->token().id()).code(), absl::StatusCode::kNotFound);
    auto node = store->CreateNodeToken("edge", "node-1");
    ASSERT_TRUE(node.ok());
    node_secret = node->secret();
    auto gone = store->CreateNodeToken("gone", "");
    ASSERT_TRUE(gone.ok());
    revoked_node = gone->token().id();
    ASSERT_TRUE(store->RevokeNodeToken(revoked_node).ok());
  }
  auto store = Open();
  auto a1 = store->Find("a1");
  ASSERT_TRUE(a1.has_value());
  EXPECT_EQ(a1->name(), "renamed");
  EXPECT_EQ(a1->revision(), 3u);  // create a1, create a2, update a1
  EXPECT_FALSE(store->Find("a2").has_value());
  EXPECT_EQ(store->VerifyToken(token_secret), "a1");
  auto tokens = store->ListTokens("a1");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].name(), "ci");
  auto node = store->VerifyNodeToken(node_secret);
  ASSERT_TRUE(node.has_value());
  EXPECT_EQ(node->node_id(), "node-1");
  EXPECT_FALSE(store->NodeTokenExists(revoked_node));
  // The next change keeps counting revisions from the stored ones.
  auto a3 = store->Create(AppRequest("a3"));
  ASSERT_TRUE(a3.ok());
  EXPECT_EQ(a3->revision(), 4u);
}

TEST_F(AppStoreTest, ListenerHearsCommittedChangesInOrder) {
  auto store = Open();
  std::vector<std::string> heard;
  store->SetListener(
      [&](const App& app, bool removed) { heard.push_back((removed ? "-" : "+") + app.id()); });
  ASSERT_TRUE(store->Create(AppRequest("x")).ok());
  ASSERT_TRUE(store->Delete("x").ok());
  EXPECT_EQ(heard, (std::vector<std::string>{"+x", "-x"}));
}

// A second connection holds SQLite's write lock, so the writer's first write waits inside SQLite
// (up to the 5 s busy timeout) until the test lets go: a slow write, deterministically.
TEST_F(AppStoreTest, FullQueueRefusesAtOnceAndReadsDoNotWaitForWrites) {
  auto store = Open(/*max_queued_writes=*/2);
  ASSERT_TRUE(store->Create(AppRequest("base")).ok());
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/relay.db").c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE;", nullptr, nullptr, nullptr), SQLITE_OK);

  std::atomic<int> committed{0};
  std::atomic<bool> slow_done{false};
  auto count = [&](absl::StatusOr<App> r) {
    EXPECT_TRUE(r.ok()) << r.status();
    committed.fetch_add(1);
  };
  store->Create(AppRequest("slow"), [&](absl::StatusOr<App> r) {
    slow_done = true;
    count(std::move(r));
  });
  // The writer has taken the slow write: the queue is empty again and has room for two.
  ASSERT_TRUE(testutil::WaitFor([&] { return store->writer().queued() == 0; }));
  store->Create(AppRequest("q1"), count);
  store->Create(AppRequest("q2"), count);
  absl::Status refused;
  store->Create(AppRequest("q3"), [&](absl::StatusOr<App> r) { refused = r.status(); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("write queue is full"), std::string::npos);
  // Usage is kept in memory: the call says it could not be queued, and never blocks.
  EXPECT_EQ(store->SaveUsage("2023-11-14", "base", 7).code(), absl::StatusCode::kUnavailable);

  // Reads are served from memory while the write is stuck in SQLite.
  auto base = store->FindByKey("base-key");
  ASSERT_TRUE(base.has_value());
  EXPECT_EQ(store->Find("base")->id(), "base");
  EXPECT_EQ(store->List().size(), 1u);  // only committed changes are visible
  EXPECT_FALSE(slow_done.load());

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  ASSERT_TRUE(testutil::WaitFor([&] { return committed.load() == 3; }));
  EXPECT_EQ(store->List().size(), 4u);
  store.reset();

  store = Open();
  for (const char* id : {"base", "slow", "q1", "q2"}) EXPECT_TRUE(store->Find(id)) << id;
  EXPECT_FALSE(store->Find("q3"));
  // The refused count was written when the store closed.
  EXPECT_EQ(store->LoadUsage("2023-11-14")["base"], 7u);
}

TEST_F(AppStoreTest, UsageKeepsTheLargestCountAcrossReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store->SaveUsage("2023-11-14", "a", 10).ok());
    ASSERT_TRUE(store->SaveUsage("2023-11-14", "a", 4).ok());
    ASSERT_TRUE(store->SaveUsage("2023-11-13", "a", 99).ok());
    EXPECT_EQ(store->LoadUsage("2023-11-14")["a"], 10u);
  }
  auto store = Open();
  EXPECT_EQ(store->LoadUsage("2023-11-14")["a"], 10u);
  EXPECT_EQ(store->LoadUsage("2023-11-13")["a"], 99u);
}

// The node registry a restarted control plane waits for: written behind, in order, and read
// back after a reopen (a crash keeps whatever was committed).
TEST_F(AppStoreTest, TheNodeRegistrySurvivesReopen) {
  {
    auto store = Open();
    EXPECT_TRUE(store->LoadKnownNodes().empty());
    store->RememberNode("edge-2");
    store->RememberNode("edge-1");
    store->RememberNode("edge-3");
    store->RememberNode("edge-1");  // again: one entry
    store->ForgetNode("edge-3");    // it said goodbye
    EXPECT_EQ(store->LoadKnownNodes(), (std::vector<std::string>{"edge-1", "edge-2"}));
  }
  auto store = Open();
  EXPECT_EQ(store->LoadKnownNodes(), (std::vector<std::string>{"edge-1", "edge-2"}));
  store->ForgetNode("edge-1");
  store->ForgetNode("unknown");  // nothing to forget: no error
  EXPECT_EQ(store->LoadKnownNodes(), std::vector<std::string>{"edge-2"});
}

TEST_F(AppStoreTest, TokenExpiresExactlyAtItsLifetime) {
  auto store = Open();
  ASSERT_TRUE(store->Create(AppRequest("a")).ok());
  int64_t created = clock_.NowUnixMs();
  auto token = store->CreateToken("a", "short", 60);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token().expires_unix_ms(), created + 60'000);
  clock_.Set(created + 59'999);
  EXPECT_EQ(store->VerifyToken(token->secret()), "a");
  clock_.Set(created + 60'000);
  EXPECT_EQ(store->VerifyToken(token->secret()), std::nullopt);
  EXPECT_EQ(store->VerifyToken("rlt_not-a-token"), std::nullopt);
}

TEST_F(AppStoreTest, LastUsedStampFollowsTheClockAndIsWrittenBehind) {
  std::string secret;
  int64_t used_at = 0;
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(AppRequest("a")).ok());
    auto token = store->CreateToken("a", "t", 0);
    ASSERT_TRUE(token.ok());
    secret = token->secret();
    clock_.Advance(std::chrono::seconds(5));
    used_at = clock_.NowUnixMs();
    ASSERT_EQ(store->VerifyToken(secret), "a");
    EXPECT_EQ((*store->ListTokens("a"))[0].last_used_unix_ms(), used_at);
  }
  auto store = Open();
  EXPECT_EQ((*store->ListTokens("a"))[0].last_used_unix_ms(), used_at);
}

TEST_F(AppStoreTest, RotatedSecretVerifiesUntilTheOverlapEnds) {
  auto store = Open();
  ASSERT_TRUE(store->Create(AppRequest("a")).ok());
  int64_t rotated = clock_.NowUnixMs();
  auto app = store->RotateSecret("a", 60, "new-secret-123");
  ASSERT_TRUE(app.ok());
  auto accepts = [&](int64_t at, std::string_view secret) {
    for (auto s : common::AcceptedSecrets(*app, at)) {
      if (s == secret) return true;
    }
    return false;
  };
  EXPECT_TRUE(accepts(rotated + 59'999, "a-secret"));
  EXPECT_FALSE(accepts(rotated + 60'000, "a-secret"));
  EXPECT_TRUE(accepts(rotated + 60'000, "new-secret-123"));
  // A later rotation drops the previous secrets that no longer verify by the store's clock.
  clock_.Set(rotated + 60'000);
  app = store->RotateSecret("a", 60, "newer-secret-1");
  ASSERT_TRUE(app.ok());
  ASSERT_EQ(app->previous_secrets_size(), 1);
  EXPECT_EQ(app->previous_secrets(0).secret(), "new-secret-123");
  app = store->EndSecretOverlap("a");
  ASSERT_TRUE(app.ok());
  EXPECT_EQ(app->previous_secrets_size(), 0);
}

}  // namespace
}  // namespace relay::controlplane
