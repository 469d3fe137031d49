#include "common/version.h"

#include "common/strings.h"

namespace relay::common {

std::string_view Version() { return RELAY_VERSION_STRING; }

std::string_view GitCommit() { return RELAY_GIT_COMMIT; }

std::string VersionLine(std::string_view program) {
  return StrCat(program, " ", Version(), " (git ", GitCommit(), ")");
}

bool VersionRequested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") return false;
    if (a == "--version") return true;
  }
  return false;
}

}  // namespace relay::common
