// GuardedHttpPost: the webhook target rules applied again to every address the endpoint's host
// resolves to at delivery time (the name may have been re-pointed since the webhook was added).
#include "controlplane/webhook_sender.h"

#include <gtest/gtest.h>

#include "tests/testutil/canned_http.h"

namespace relay::controlplane {
namespace {

using testutil::CannedEndpoint;

PostResult PostTo(uint16_t port, std::shared_ptr<const WebhookTargets> targets,
                  const std::string& host = "127.0.0.1") {
  return GuardedHttpPost(std::move(targets))(
      "http://" + host + ":" + std::to_string(port) + "/hook", {}, "{}",
      std::chrono::milliseconds(5000));
}

TEST(HttpPost, RefusesOwnPortsAfterResolution) {
  CannedEndpoint ep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  auto targets = std::make_shared<WebhookTargets>(false, false);
  targets->AddOwnPort(ep.port());
  auto r = PostTo(ep.port(), targets, "localhost");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("own ports"), std::string::npos) << r.error;
  EXPECT_FALSE(ep.accepted());
  auto allowing = std::make_shared<WebhookTargets>(false, true);
  allowing->AddOwnPort(ep.port());
  EXPECT_EQ(PostTo(ep.port(), allowing, "localhost").status, 200);
  EXPECT_TRUE(ep.accepted());
}

TEST(HttpPost, OtherLoopbackPortsStayAllowed) {
  CannedEndpoint ep("HTTP/1.1 204 No Content\r\n\r\n");
  auto targets = std::make_shared<WebhookTargets>(false, false);
  targets->AddOwnPort(static_cast<uint16_t>(ep.port() == 1 ? 2 : 1));
  EXPECT_EQ(PostTo(ep.port(), targets).status, 204);
}

}  // namespace
}  // namespace relay::controlplane
