// File: flags.h
// Command-line flags for Relay's binaries. Every flag `--some-flag` is also read from the
// environment variable `RELAY_SOME_FLAG` (unless registered after set_env(false)); the command
// line wins over the environment.
// `--help` prints the usage with each flag, its variable and its default.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace relay::common {

class FlagSet {
 public:
  FlagSet(std::string program, std::string summary);

  void String(std::string name, std::string* target, std::string help);
  void Uint(std::string name, uint64_t* target, std::string help);
  void Int(std::string name, int64_t* target, std::string help);
  void Bool(std::string name, bool* target, std::string help);
  // A flag that may be given several times (`--channel a --channel b`).
  void List(std::string name, std::vector<std::string>* target, std::string help);

  // Reads the environment, then `args` (without the program name). Non-flag arguments are
  // appended to `positional` (an error if `positional` is null). Returns InvalidArgument with a
  // message naming the flag on bad input; `help_requested()` is set by --help / -h.
  absl::Status Parse(const std::vector<std::string>& args,
                     std::vector<std::string>* positional = nullptr);
  absl::Status Parse(int argc, char** argv, std::vector<std::string>* positional = nullptr);

  // Flags registered after set_env(false) are read from the command line only (relayctl: only
  // its global flags come from the environment, never a command's own --plan or --name).
  void set_env(bool enabled) { env_ = enabled; }

  bool help_requested() const { return help_requested_; }
  // Whether `name` was set by the command line or the environment.
  bool WasSet(const std::string& name) const;
  std::string Usage() const;
  // Extra text printed after the flags in Usage().
  void set_epilog(std::string epilog) { epilog_ = std::move(epilog); }

  // RELAY_ + upper-cased name with '-' turned into '_'.
  static std::string EnvName(const std::string& name);

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    bool is_list = false;
    bool set = false;
    std::function<absl::Status(const std::string&)> apply;
    bool env = true;  // also read from EnvName(name)
  };
  Flag* Find(const std::string& name);
  void Add(Flag flag);

  std::string program_;
  std::string summary_;
  std::string epilog_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
  bool env_ = true;
};

// The first line of a file that holds a secret (a token file), without surrounding whitespace.
// Errors name the file, never its content.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace relay::common
