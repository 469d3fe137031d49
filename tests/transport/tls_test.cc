// TlsServerContext: what an operator sees at startup and on SIGHUP. The certificates come from
// the openssl CLI, into a temporary directory of this test.
#include "transport/tls.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/strings.h"

namespace relay::transport {
namespace {

class TlsServerContextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/relay-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* serial : {"1001", "1002"}) {
      std::string cmd = common::StrCat(
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 ",
          "-subj /CN=127.0.0.1 -set_serial ", serial, " -keyout ", Path(serial, "key"), " -out ",
          Path(serial, "pem"), " >/dev/null 2>&1");
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  static std::string Path(const std::string& name, const std::string& ext) {
    return common::StrCat(dir_, "/", name, ".", ext);
  }
  static void Copy(const std::string& from, const std::string& to) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  }

  static inline std::string dir_;
};

TEST_F(TlsServerContextTest, LoadsAMatchingPairAndNamesItsSerial) {
  auto ctx = TlsServerContext::Load(Path("1001", "pem"), Path("1001", "key"));
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_NE((*ctx)->Describe().find("serial 03E9"), std::string::npos) << (*ctx)->Describe();
  EXPECT_NE((*ctx)->Current(), nullptr);
}

TEST_F(TlsServerContextTest, BadFilesAreRefusedWithTheFlagAndFileNamed) {
  auto missing = TlsServerContext::Load(Path("nope", "pem"), Path("1001", "key"));
  EXPECT_EQ(missing.status().message(),
            common::StrCat("cannot read --tls-cert ", Path("nope", "pem")));
  auto mismatched = TlsServerContext::Load(Path("1001", "pem"), Path("1002", "key"));
  EXPECT_NE(mismatched.status().message().find("does not match --tls-cert"), std::string::npos)
      << mismatched.status();
  auto swapped = TlsServerContext::Load(Path("1001", "key"), Path("1001", "pem"));
  EXPECT_NE(swapped.status().message().find("is not a PEM certificate chain"), std::string::npos)
      << swapped.status();
  auto half = TlsServerContext::Load(Path("1001", "pem"), "");
  EXPECT_FALSE(half.ok());
}

TEST_F(TlsServerContextTest, ReloadSwapsForNewHandshakesAndKeepsTheOldOneOnError) {
  Copy(Path("1001", "pem"), Path("live", "pem"));
  Copy(Path("1001", "key"), Path("live", "key"));
  auto ctx = TlsServerContext::Load(Path("live", "pem"), Path("live", "key"));
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  auto before = (*ctx)->Current();

  Copy(Path("1002", "pem"), Path("live", "pem"));
  Copy(Path("1002", "key"), Path("live", "key"));
  ASSERT_TRUE((*ctx)->Reload().ok());
  EXPECT_NE((*ctx)->Describe().find("serial 03EA"), std::string::npos) << (*ctx)->Describe();
  EXPECT_NE((*ctx)->Current(), before);  // a connection holding `before` keeps it

  std::ofstream(Path("live", "pem")) << "not a certificate\n";
  EXPECT_FALSE((*ctx)->Reload().ok());
  EXPECT_NE((*ctx)->Describe().find("serial 03EA"), std::string::npos) << (*ctx)->Describe();
}

}  // namespace
}  // namespace relay::transport
