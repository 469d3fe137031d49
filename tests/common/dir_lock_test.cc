// The data dir lock: one holder at a time, the refusal names the dir and the holder's pid, and
// releasing (or destroying) the lock lets the next server in.
#include "common/dir_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/strings.h"

namespace relay::common {
namespace {

std::string NewTempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "relay-lock-XXXXXX").string();
  char* made = ::mkdtemp(templ.data());
  return made ? std::string(made) : std::string();
}

TEST(DirLock, ASecondHolderIsRefusedUntilTheFirstReleases) {
  std::string dir = NewTempDir() + "/data";  // created by Acquire, private
  auto first = DirLock::Acquire(dir);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  auto second = DirLock::Acquire(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(second.status().message())
                .find(StrCat("the data dir ", dir, " is in use by another Relay process (pid ",
                             ::getpid(), ")")),
            std::string::npos)
      << second.status();

  first->Release();
  EXPECT_FALSE(first->held());
  auto third = DirLock::Acquire(dir);
  ASSERT_TRUE(third.ok()) << third.status();
  {
    DirLock moved = std::move(*third);  // the lock moves with the object
    EXPECT_TRUE(moved.held());
    EXPECT_FALSE(DirLock::Acquire(dir).ok());
  }
  EXPECT_TRUE(DirLock::Acquire(dir).ok());  // the destructor released it
}

TEST(DirLock, ADirThatCannotBeCreatedIsAClearError) {
  auto lock = DirLock::Acquire("/proc/relay-no-such/data");
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(std::string(lock.status().message()).find("cannot create data dir"), std::string::npos)
      << lock.status();
}

}  // namespace
}  // namespace relay::common
