// The bounded HTTP client against hostile endpoints (responses that made Beast throw or buffer
// without bound), its URL parsing and its per-address check.
#include "transport/http_client.h"

#include <gtest/gtest.h>

#include "tests/testutil/canned_http.h"

namespace relay::transport {
namespace {

using testutil::CannedEndpoint;

HttpPostResult PostTo(uint16_t port, const AddressCheck& check = nullptr,
                      const std::string& host = "127.0.0.1") {
  return HttpPost("http://" + host + ":" + std::to_string(port) + "/hook", {}, "{}",
                  std::chrono::milliseconds(5000), check);
}

TEST(HttpPost, SucceedsAgainstANormalEndpoint) {
  CannedEndpoint ep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
  auto r = PostTo(ep.port());
  EXPECT_EQ(r.status, 200) << r.error;
}

// Responses that made Beast throw std::length_error ("field value too large": a 64 KiB field,
// in the trailer, which header_limit does not cover) -- which used to end the control plane --
// or buffer without bound (chunk extensions). Each fails its delivery only.
TEST(HttpPost, HostileResponsesFailTheDeliveryOnly) {
  const std::string big(65534, 'a');
  for (const std::string& response :
       {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + big + "\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: " + big + "\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + big + big + big +
            "\r\nx\r\n0\r\n\r\n"}) {
    CannedEndpoint ep(response);
    auto r = PostTo(ep.port());
    EXPECT_EQ(r.status, 0) << response.substr(0, 60);
    EXPECT_NE(r.error, "");
  }
}

// At delivery the resolved addresses are checked again (the name may have been re-pointed
// since the webhook was added): this server's own ports are never connected to.
// Every resolved address goes through the check before a connection is made.
TEST(HttpPost, RefusedAddressesAreNeverConnectedTo) {
  CannedEndpoint ep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  std::vector<std::string> asked;
  auto r = PostTo(
      ep.port(),
      [&](const std::string& ip, uint16_t) {
        asked.push_back(ip);
        return absl::PermissionDeniedError("not that one");
      },
      "localhost");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "not that one");
  EXPECT_FALSE(asked.empty());
  EXPECT_FALSE(ep.accepted());
}

TEST(ParseHttpUrl, SplitsSchemeHostPortAndTarget) {
  HttpUrl u;
  ASSERT_TRUE(ParseHttpUrl("https://user@[::1]:8443/a/b?c=d#frag", &u));
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 8443);
  EXPECT_EQ(u.target, "/a/b?c=d");
  ASSERT_TRUE(ParseHttpUrl("http://example.com?x=1", &u));
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.target, "/?x=1");
  ASSERT_TRUE(ParseHttpUrl("https://example.com", &u));
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.target, "/");
  for (const char* bad : {"ftp://x/", "http://", "http://h:0/", "http://h:65536/", "http://[::1/",
                          "http://h:port/", "example.com"}) {
    EXPECT_FALSE(ParseHttpUrl(bad, &u)) << bad;
  }
}

}  // namespace
}  // namespace relay::transport
