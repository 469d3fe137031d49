#include "common/crypto.h"

#include <gtest/gtest.h>

#include "common/pusher_auth.h"

namespace relay::common {
namespace {

// Test app from ../shared/spec/pusher-protocol.md section 10.10.
constexpr const char* kKey = "a1b2c3d4e5f6a7b8c9d0";
constexpr const char* kSecret = "0f9e8d7c6b5a4f3e2d1c";

TEST(Crypto, HmacRfc4231Case2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, Md5AndConstantTimeEquals) {
  EXPECT_EQ(Md5Hex("{}"), "99914b932bd37a50b983c5e7c90ae93b");
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_EQ(RandomHex(16).size(), 32u);
  EXPECT_NE(RandomHex(16), RandomHex(16));
}

TEST(PusherAuth, DocsChannelAndUserVectors) {
  EXPECT_EQ(HmacSha256Hex("7ad3773142a6692b25b8", "1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
  EXPECT_EQ(
      HmacSha256Hex("7ad3773142a6692b25b8", UserStringToSign("1234.1234", R"({"id":"12345"})")),
      "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba");
  EXPECT_EQ(
      HmacSha256Hex("7ad3773142a6692b25b8",
                    ChannelStringToSign("1234.1234", "presence-foobar",
                                        R"({"user_id":10,"user_info":{"name":"Mr. Channels"}})")),
      "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80");
}

TEST(PusherAuth, SpecVectorsEFG) {
  EXPECT_EQ(
      SignToken(kKey, kSecret, ChannelStringToSign("123.456", "private-orders", "")),
      "a1b2c3d4e5f6a7b8c9d0:d4649f03a6789003f2de89c82d64e253d448c49683ab425c5266762abaf81e59");
  const std::string cd = R"({"user_id":"u-1","user_info":{"name":"Ada"}})";
  EXPECT_EQ(
      SignToken(kKey, kSecret, ChannelStringToSign("123.456", "presence-room", cd)),
      "a1b2c3d4e5f6a7b8c9d0:94dc1524eb96454db6893c2af4c815e35aea037aca6d50e0f7f89b8fbee1185b");
  const std::string ud = R"({"id":"u-1","user_info":{"name":"Ada"},"watchlist":["u-2","u-3"]})";
  EXPECT_EQ(
      SignToken(kKey, kSecret, UserStringToSign("123.456", ud)),
      "a1b2c3d4e5f6a7b8c9d0:743254ac2a329b043c1ccf21549dfcec4c409da210c32b6f38c0300722baaf7e");
}

TEST(PusherAuth, VerifyTokenRules) {
  std::string s = ChannelStringToSign("123.456", "private-orders", "");
  std::string good = SignToken(kKey, kSecret, s);
  EXPECT_TRUE(VerifyToken(good, kKey, {kSecret}, s));
  EXPECT_TRUE(VerifyToken(good, kKey, {"other-secret", kSecret}, s));  // rotation overlap
  EXPECT_FALSE(VerifyToken(good, "wrong-key", {kSecret}, s));
  std::string flipped = good;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_FALSE(VerifyToken(flipped, kKey, {kSecret}, s));
  EXPECT_FALSE(VerifyToken("no-colon", kKey, {kSecret}, s));
  EXPECT_FALSE(VerifyToken(good, kKey, {kSecret}, s + "x"));
}

TEST(PusherAuth, HttpSignatureVectors) {
  // Pusher's docs example.
  QueryParams docs = {{"auth_key", "278d425bdf160c739803"},
                      {"auth_timestamp", "1353088179"},
                      {"auth_version", "1.0"},
                      {"body_md5", "ec365a775a4cd0599faeb73354201b6f"}};
  EXPECT_EQ(Md5Hex(R"({"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"})"),
            "ec365a775a4cd0599faeb73354201b6f");
  EXPECT_EQ(HmacSha256Hex("7ad3773142a6692b25b8", HttpStringToSign("POST", "/apps/3/events", docs)),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
  // Vector A.
  std::string body =
      R"({"name":"order-shipped","channels":["orders","presence-room"],"data":"{\"id\":7,\"status\":\"shipped\"}","socket_id":"123.456"})";
  EXPECT_EQ(Md5Hex(body), "12a2b3c4910bbef80863bf28608e1893");
  QueryParams a = {{"auth_signature", "ignored"},
                   {"body_md5", Md5Hex(body)},
                   {"auth_version", "1.0"},
                   {"auth_key", kKey},
                   {"auth_timestamp", "1700000000"}};
  EXPECT_EQ(HttpStringToSign("POST", "/apps/12345/events", a),
            "POST\n/apps/12345/events\nauth_key=a1b2c3d4e5f6a7b8c9d0&auth_timestamp=1700000000&"
            "auth_version=1.0&body_md5=12a2b3c4910bbef80863bf28608e1893");
  EXPECT_EQ(HmacSha256Hex(kSecret, HttpStringToSign("POST", "/apps/12345/events", a)),
            "f32397728bffd1602f238a598fa52b0d3592a2fb328263032b36fca3d29558b3");
  // Vector B: values are not re-escaped, keys sorted.
  QueryParams b;
  ASSERT_TRUE(
      ParseQuery("info=user_count&filter_by_prefix=presence-&auth_version=1.0&"
                 "auth_timestamp=1700000000&auth_key=a1b2c3d4e5f6a7b8c9d0",
                 &b));
  EXPECT_EQ(HmacSha256Hex(kSecret, HttpStringToSign("GET", "/apps/12345/channels", b)),
            "032c3f36ef9033727d60f67b5d2e9bb0cde2782e95393009463a61e7d8f9a615");
  // Vector C.
  QueryParams c = {{"auth_key", kKey},
                   {"auth_timestamp", "1700000000"},
                   {"auth_version", "1.0"},
                   {"body_md5", Md5Hex("{}")}};
  EXPECT_EQ(HmacSha256Hex(kSecret, HttpStringToSign(
                                       "POST", "/apps/12345/users/u-1/terminate_connections", c)),
            "0a0a975a9b452c82aa515dd58a586394d6308193a9ab6fde3aed1df6a43cd4d9");
}

TEST(PusherAuth, PercentDecoding) {
  std::string out;
  EXPECT_TRUE(PercentDecode("a%2Cb+c", &out));
  EXPECT_EQ(out, "a,b c");
  EXPECT_FALSE(PercentDecode("%zz", &out));
  EXPECT_FALSE(PercentDecode("abc%4", &out));
  QueryParams q;
  EXPECT_TRUE(ParseQuery("a=1&&b=%41&c", &q));
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].second, "A");
  EXPECT_EQ(q[2].first, "c");
  EXPECT_FALSE(ParseQuery("a=%G0", &q));
}

}  // namespace
}  // namespace relay::common
