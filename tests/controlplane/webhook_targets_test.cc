// Which webhook targets are refused (SSRF guard) and which bind addresses count as loopback for
// the well-known default secret check.
#include "controlplane/webhook_targets.h"

#include <gtest/gtest.h>

#include "controlplane/well_known_secret.h"

namespace relay::controlplane {
namespace {

TEST(WebhookTargets, RefusesLinkLocalAndCloudMetadata) {
  WebhookTargets t(false, false);
  for (const char* ip : {"169.254.169.254", "169.254.0.1", "fe80::1", "febf::1",
                         "::ffff:169.254.169.254", "fd00:ec2::254", "fe80::1%lo"}) {
    auto st = t.CheckAddress(ip, 80);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << ip;
    EXPECT_NE(std::string(st.message()).find("--webhook-allow-link-local"), std::string::npos);
  }
  for (const char* url : {"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/x",
                          "https://user@169.254.169.254/"}) {
    EXPECT_FALSE(t.CheckUrl(url).ok()) << url;
  }
  WebhookTargets allowing(true, false);
  EXPECT_TRUE(allowing.CheckAddress("169.254.169.254", 80).ok());
  EXPECT_TRUE(allowing.CheckUrl("http://[fe80::1]/").ok());
}

TEST(WebhookTargets, RefusesOwnPortsOnThisHostOnly) {
  WebhookTargets t(false, false);
  t.AddOwnPort(50051);
  for (const char* ip : {"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"}) {
    auto st = t.CheckAddress(ip, 50051);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << ip;
    EXPECT_NE(std::string(st.message()).find("--webhook-allow-self"), std::string::npos);
    EXPECT_TRUE(t.CheckAddress(ip, 50052).ok()) << ip;  // other loopback services are fine
  }
  EXPECT_FALSE(t.CheckUrl("http://localhost:50051/admin").ok());
  EXPECT_FALSE(t.CheckUrl("http://[::1]:50051/").ok());
  EXPECT_TRUE(t.CheckUrl("http://127.0.0.1:50052/hooks").ok());
  // Another host's port with the same number is not us.
  EXPECT_TRUE(t.CheckAddress("192.0.2.10", 50051).ok());
  WebhookTargets allowing(false, true);
  allowing.AddOwnPort(50051);
  EXPECT_TRUE(allowing.CheckUrl("http://127.0.0.1:50051/").ok());
}

TEST(WebhookTargets, DefaultPortsFollowTheScheme) {
  WebhookTargets t(false, false);
  t.AddOwnPort(80);
  EXPECT_FALSE(t.CheckUrl("http://127.0.0.1/x").ok());
  EXPECT_TRUE(t.CheckUrl("https://127.0.0.1/x").ok());
  EXPECT_FALSE(t.CheckUrl("http://127.0.0.1:99999/x").ok());  // not a port
}

TEST(WellKnownSecret, LoopbackHosts) {
  for (const char* h :
       {"127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(common::IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", ""}) {
    EXPECT_FALSE(common::IsLoopbackHost(h)) << h;
  }
}

}  // namespace
}  // namespace relay::controlplane
