#include "common/flags.h"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace relay::common {
namespace {

struct Parsed {
  std::string host = "127.0.0.1";
  uint64_t port = 6001;
  bool json = false;
  std::vector<std::string> channels;
};

absl::Status ParseInto(Parsed& p, std::vector<std::string> args, FlagSet** out = nullptr) {
  static FlagSet* keep = nullptr;
  delete keep;
  keep = new FlagSet("t", "test");
  keep->String("host", &p.host, "h");
  keep->Uint("port", &p.port, "p");
  keep->Bool("json", &p.json, "j");
  keep->List("channel", &p.channels, "c");
  if (out != nullptr) *out = keep;
  return keep->Parse(args);
}

TEST(Flags, ParsesFormsAndErrors) {
  Parsed p;
  ASSERT_TRUE(
      ParseInto(p, {"--port", "7", "--host=0.0.0.0", "--json", "--channel", "a", "--channel=b"})
          .ok());
  EXPECT_EQ(p.port, 7u);
  EXPECT_EQ(p.host, "0.0.0.0");
  EXPECT_TRUE(p.json);
  EXPECT_EQ(p.channels, (std::vector<std::string>{"a", "b"}));
  Parsed q;
  auto st = ParseInto(q, {"--nope"});
  EXPECT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("--nope"), std::string::npos);
  st = ParseInto(q, {"--port"});
  EXPECT_NE(std::string(st.message()).find("needs a value"), std::string::npos);
  st = ParseInto(q, {"--port", "x1"});
  EXPECT_NE(std::string(st.message()).find("--port"), std::string::npos);
  st = ParseInto(q, {"--port", "-1"});
  EXPECT_FALSE(st.ok());
  st = ParseInto(q, {"--json=maybe"});
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(ParseInto(q, {"positional"}).ok());
}

TEST(Flags, EnvironmentFallbackAndHelp) {
  setenv("RELAY_PORT", "9000", 1);
  Parsed p;
  ASSERT_TRUE(ParseInto(p, {}).ok());
  EXPECT_EQ(p.port, 9000u);
  Parsed q;
  ASSERT_TRUE(ParseInto(q, {"--port", "1"}).ok());
  EXPECT_EQ(q.port, 1u);  // the command line wins
  setenv("RELAY_PORT", "abc", 1);
  Parsed r;
  auto st = ParseInto(r, {});
  EXPECT_NE(std::string(st.message()).find("RELAY_PORT"), std::string::npos);
  unsetenv("RELAY_PORT");
  FlagSet* f = nullptr;
  Parsed h;
  ASSERT_TRUE(ParseInto(h, {"--help"}, &f).ok());
  EXPECT_TRUE(f->help_requested());
  EXPECT_NE(f->Usage().find("RELAY_HOST"), std::string::npos);
  EXPECT_EQ(FlagSet::EnvName("grpc-port"), "RELAY_GRPC_PORT");
}

}  // namespace
}  // namespace relay::common
