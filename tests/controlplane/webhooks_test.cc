// The webhook outbox's overflow policy: bounded per endpoint, oldest dropped and counted.
#include "controlplane/webhooks.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/crypto.h"
#include "controlplane/app_store.h"

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
  Webhooks hooks(dir.string(), **store, [](auto&&...) { return PostResult{500, ""}; }, options);
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

}  // namespace
}  // namespace relay::controlplane
