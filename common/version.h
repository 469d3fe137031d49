// File: version.h
// What `--version` prints on every binary: the CMake project version and the commit the build
// was configured from (`git describe --always --dirty`, "unknown" outside a git checkout).
#pragma once

#include <string>
#include <string_view>

namespace relay::common {

std::string_view Version();
std::string_view GitCommit();
// "NAME VERSION (git COMMIT)".
std::string VersionLine(std::string_view program);
// True when the command line asks for --version (before any "--"); the caller prints
// VersionLine() and exits 0. Checked before flag parsing, so it wins over every other flag.
bool VersionRequested(int argc, char** argv);

}  // namespace relay::common
