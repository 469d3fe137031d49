// Webhooks: the outbox's overflow policy (bounded per endpoint, oldest dropped and counted),
// event order kept through the outbox and a restart, and a clean shutdown with deliveries in
// flight.
#include "controlplane/webhooks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/crypto.h"
#include "controlplane/app_store.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

TEST(WebhookOutbox, OverflowDropsOldestAndCountsIt) {
  auto dir = std::filesystem::temp_directory_path() / ("relay-wh-" + common::RandomHex(6));
  auto store = AppStore::Open(dir.string());
  ASSERT_TRUE(store.ok());
  relay::v1::CreateAppRequest req;
  req.set_name("a");
  req.set_id("a1");
  ASSERT_TRUE((*store)->Create(req).ok());
  WebhookOptions options;
  options.max_outbox_per_endpoint = 3;
  // Not started: nothing is delivered, so the outbox only fills.
  Webhooks hooks(
      dir.string(), **store,
      [](auto&&...) {
        return PostResult{500, ""};
      },
      options);
  ASSERT_TRUE(hooks.Open().ok());
  relay::v1::Webhook h;
  h.set_url("http://127.0.0.1:1/x");
  auto added = hooks.Add("a1", h);
  ASSERT_TRUE(added.ok());
  for (int i = 0; i < 5; ++i) {
    hooks.Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
  }
  auto list = hooks.List("a1");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].stats().retrying(), 3u);
  EXPECT_EQ(list[0].stats().dropped(), 2u);
  // Invalid configurations are refused with a clear message.
  relay::v1::Webhook bad;
  bad.set_url("ftp://x");
  EXPECT_FALSE(hooks.Add("a1", bad).ok());
  bad.set_url("http://x");
  bad.add_event_types("nope");
  EXPECT_FALSE(hooks.Add("a1", bad).ok());
  relay::v1::Webhook header;
  header.set_url("http://x");
  (*header.mutable_headers())["X-Pusher-Signature"] = "forged";
  EXPECT_FALSE(hooks.Add("a1", header).ok());
  std::filesystem::remove_all(dir);
}

class WebhooksTest : public ::testing::Test {
 protected:
  WebhooksTest()
      : dir_(std::filesystem::temp_directory_path() / ("relay-wh-" + common::RandomHex(6))) {
    auto store = AppStore::Open(dir_.string());
    EXPECT_TRUE(store.ok());
    store_ = std::move(*store);
    relay::v1::CreateAppRequest req;
    req.set_name("a");
    req.set_id("a1");
    EXPECT_TRUE(store_->Create(req).ok());
  }
  ~WebhooksTest() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<AppStore> store_;
};

// Records request bodies.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::string> bodies ABSL_GUARDED_BY(mu);
  HttpPost Post() {
    return [this](const std::string&, const auto&, const std::string& body, auto) {
      absl::MutexLock lock(&mu);
      bodies.push_back(body);
      return PostResult{200, ""};
    };
  }
  std::string All() {
    absl::MutexLock lock(&mu);
    std::string all;
    for (const auto& b : bodies) all += b;
    return all;
  }
};

TEST_F(WebhooksTest, OrderIsKeptThroughTheOutboxAndARestart) {
  {
    // Not started: the events only reach the outbox.
    Webhooks hooks(dir_.string(), *store_, [](auto&&...) { return PostResult{500, ""}; });
    ASSERT_TRUE(hooks.Open().ok());
    relay::v1::Webhook h;
    h.set_url("http://127.0.0.1:1/x");
    ASSERT_TRUE(hooks.Add("a1", h).ok());
    for (int i = 0; i < 5; ++i) {
      hooks.Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c" + std::to_string(i)));
      // A member that leaves and re-joins within the delay sends nothing at all.
      hooks.Emit("a1", Webhooks::MemberEvent("member_removed", "presence-p", "u"));
      hooks.Emit("a1", Webhooks::MemberEvent("member_added", "presence-p", "u"));
    }
    EXPECT_EQ(hooks.List("a1")[0].stats().retrying(), 5u);
  }  // closing commits what the writer had not yet written

  Recorder recorder;
  {
    Webhooks hooks(dir_.string(), *store_, recorder.Post());
    ASSERT_TRUE(hooks.Open().ok());
    ASSERT_EQ(hooks.List("a1").size(), 1u);
    EXPECT_EQ(hooks.List("a1")[0].stats().retrying(), 5u);
    hooks.Start();
    ASSERT_TRUE(testutil::WaitFor([&] { return hooks.List("a1")[0].stats().delivered() == 5; }));
  }
  std::string all = recorder.All();
  size_t at = 0;
  for (int i = 0; i < 5; ++i) {
    size_t next = all.find("\"channel\":\"c" + std::to_string(i) + "\"", at);
    ASSERT_NE(next, std::string::npos) << "c" << i << " missing or out of order in " << all;
    at = next;
  }
  EXPECT_EQ(all.find("member_"), std::string::npos) << all;

  // Delivered events left the outbox for good.
  Webhooks hooks(dir_.string(), *store_, recorder.Post());
  ASSERT_TRUE(hooks.Open().ok());
  EXPECT_EQ(hooks.List("a1")[0].stats().retrying(), 0u);
  // Removing the endpoint removes it from disk too.
  ASSERT_TRUE(hooks.Remove(hooks.List("a1")[0].id()).ok());
  EXPECT_EQ(hooks.Remove("wh_none").code(), absl::StatusCode::kNotFound);
  Webhooks reopened(dir_.string(), *store_, recorder.Post());
  ASSERT_TRUE(reopened.Open().ok());
  EXPECT_TRUE(reopened.List("a1").empty());
}

// A delivery that overruns its timeout (a slow sender) is still running when the object goes:
// destruction waits for it. Before delivery threads were owned, Stop gave up after the timeout
// plus a second and the detached thread touched the freed object afterwards (ASan:
// heap-use-after-free).
TEST_F(WebhooksTest, DestroyingWithADeliveryInFlightWaitsForIt) {
  absl::Notification entered;
  std::atomic<bool> returned{false};
  WebhookOptions options;
  options.request_timeout = std::chrono::milliseconds(20);
  auto hooks = std::make_unique<Webhooks>(
      dir_.string(), *store_,
      [&](auto&&...) {
        entered.Notify();
        // Slower than Stop used to wait (request timeout + 1 s).
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        returned = true;
        return PostResult{200, ""};
      },
      options);
  ASSERT_TRUE(hooks->Open().ok());
  relay::v1::Webhook h;
  h.set_url("http://127.0.0.1:1/x");
  ASSERT_TRUE(hooks->Add("a1", h).ok());
  hooks->Start();
  hooks->Emit("a1", Webhooks::ChannelEvent("channel_occupied", "c"));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  hooks.reset();
  EXPECT_TRUE(returned.load());
}

TEST_F(WebhooksTest, TestRequestsRunOnOwnedThreads) {
  Recorder recorder;
  Webhooks hooks(dir_.string(), *store_, recorder.Post());
  ASSERT_TRUE(hooks.Open().ok());
  relay::v1::Webhook h;
  h.set_url("http://127.0.0.1:1/x");
  ASSERT_TRUE(hooks.Add("a1", h).ok());
  hooks.Start();
  absl::Notification done;
  std::vector<relay::v1::TestWebhookResult> results;
  hooks.Test("a1", [&](std::vector<relay::v1::TestWebhookResult> r) {
    results = std::move(r);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status(), 200u);
  hooks.Stop();
  // Once stopped, nothing starts: the callback answers at once with no result.
  bool answered = false;
  hooks.Test("a1", [&](std::vector<relay::v1::TestWebhookResult> r) { answered = r.empty(); });
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace relay::controlplane
