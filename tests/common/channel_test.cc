#include "common/channel.h"

#include <gtest/gtest.h>

namespace relay::common {
namespace {

TEST(Channel, ClassifiesMostSpecificPrefixFirst) {
  auto k = ClassifyChannel("private-encrypted-cache-x");
  EXPECT_TRUE(k.is_private && k.is_encrypted && k.is_cache);
  EXPECT_FALSE(k.AllowsClientEvents());
  k = ClassifyChannel("private-encrypted-x");
  EXPECT_TRUE(k.is_private && k.is_encrypted && !k.is_cache);
  k = ClassifyChannel("private-cache-x");
  EXPECT_TRUE(k.is_private && k.is_cache && !k.is_encrypted && k.AllowsClientEvents());
  k = ClassifyChannel("presence-cache-x");
  EXPECT_TRUE(k.is_presence && k.is_cache && k.NeedsAuth());
  k = ClassifyChannel("cache-x");
  EXPECT_TRUE(k.is_cache && !k.NeedsAuth() && !k.AllowsClientEvents());
  k = ClassifyChannel("privatefoo");
  EXPECT_FALSE(k.is_private || k.is_presence || k.is_cache);
  EXPECT_TRUE(ClassifyChannel("#server-to-user-u1").is_server_to_user);
  EXPECT_EQ(ServerToUserId("#server-to-user-u1"), "u1");
}

TEST(Channel, NameRules) {
  EXPECT_EQ(ChannelNameError("private-App.Models.User.1", false), "");
  EXPECT_EQ(ChannelNameError("a_b-c=d@e,f.g;h", false), "");
  EXPECT_NE(ChannelNameError("", false), "");
  EXPECT_NE(ChannelNameError("has space", false), "");
  EXPECT_NE(ChannelNameError("ünïcode", false), "");
  EXPECT_EQ(ChannelNameError(std::string(164, 'a'), false), "");
  EXPECT_NE(ChannelNameError(std::string(165, 'a'), false), "");
  EXPECT_EQ(ChannelNameError("#server-to-user-u1", true), "");
  EXPECT_NE(ChannelNameError("#server-to-user-u1", false), "");
  EXPECT_NE(ChannelNameError("#other", true), "");
}

TEST(Channel, SocketIds) {
  EXPECT_TRUE(IsValidSocketId("123.456"));
  EXPECT_FALSE(IsValidSocketId("123"));
  EXPECT_FALSE(IsValidSocketId("123."));
  EXPECT_FALSE(IsValidSocketId(".1"));
  EXPECT_FALSE(IsValidSocketId("1.2.3"));
  EXPECT_FALSE(IsValidSocketId("-1.2"));
}

}  // namespace
}  // namespace relay::common
