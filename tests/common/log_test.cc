#include "common/log.h"

#include <gtest/gtest.h>

#include <string>

#include "common/flags.h"

namespace relay::common {
namespace {

// What one LogLine call writes to stderr.
std::string Captured(LogFormat format, std::initializer_list<LogField> fields) {
  SetLogFormat(format);
  testing::internal::CaptureStderr();
  LogLine(LogLevel::kWarn, "comp\"onent", "a \"quoted\"\nmessage\twith\x01 controls", fields);
  std::string out = testing::internal::GetCapturedStderr();
  SetLogFormat(LogFormat::kText);
  return out;
}

TEST(Log, JsonIsOneEscapedObjectPerLine) {
  std::string line = Captured(LogFormat::kJson, {{"app", "shop"}, {"detail", "a=\"b\"\n"}});
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "exactly one line: " << line;
  EXPECT_EQ(line.rfind("{\"time\":\"", 0), 0u) << line;
  EXPECT_NE(line.find("\"level\":\"warn\",\"component\":\"comp\\\"onent\""), std::string::npos)
      << line;
  EXPECT_NE(line.find("\"message\":\"a \\\"quoted\\\"\\nmessage\\twith\\u0001 controls\""),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("\"app\":\"shop\",\"detail\":\"a=\\\"b\\\"\\n\"}"), std::string::npos)
      << line;
}

TEST(Log, TextStaysOneLineWithFieldsQuotedWhenNeeded) {
  std::string line = Captured(LogFormat::kText, {{"app", "shop"}, {"detail", "two words"}});
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "a newline in a message cannot forge a line";
  EXPECT_NE(line.find(" WARN  [comp\"onent] a \"quoted\"\\x0amessage\\x09with\\x01 controls"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find(" app=shop detail=\"two words\"\n"), std::string::npos) << line;
}

TEST(Log, ParsesLevelsAndFormats) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  EXPECT_FALSE(ParseLogLevel("INFO", &level));
  EXPECT_FALSE(ParseLogLevel("", &level));
  LogFormat format = LogFormat::kText;
  EXPECT_TRUE(ParseLogFormat("json", &format));
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("logfmt", &format));
}

TEST(Flags, CommandLineOnlyFlagsIgnoreTheEnvironment) {
  ::setenv("RELAY_LOGTEST_GLOBAL", "from-env", 1);
  ::setenv("RELAY_LOGTEST_LOCAL", "from-env", 1);
  std::string global, local;
  FlagSet f("t", "t");
  f.String("logtest-global", &global, "g");
  f.set_env(false);
  f.String("logtest-local", &local, "l");
  ASSERT_TRUE(f.Parse(std::vector<std::string>{}).ok());
  EXPECT_EQ(global, "from-env");
  EXPECT_EQ(local, "");
  EXPECT_FALSE(f.WasSet("logtest-local"));
  EXPECT_EQ(f.Usage().find("RELAY_LOGTEST_LOCAL"), std::string::npos);
  ::unsetenv("RELAY_LOGTEST_GLOBAL");
  ::unsetenv("RELAY_LOGTEST_LOCAL");
}

}  // namespace
}  // namespace relay::common
