#include "common/flags.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace relay::common {

FlagSet::FlagSet(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

std::string FlagSet::EnvName(const std::string& name) {
  std::string env = "RELAY_";
  for (char c : name) {
    env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return env;
}

void FlagSet::Add(Flag flag) {
  flag.env = env_;
  flags_.push_back(std::move(flag));
}

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (auto& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::WasSet(const std::string& name) const {
  for (const auto& f : flags_) {
    if (f.name == name) return f.set;
  }
  return false;
}

void FlagSet::String(std::string name, std::string* target, std::string help) {
  Add({name, std::move(help), target->empty() ? "" : *target, false, false, false,
       [target](const std::string& v) {
         *target = v;
         return absl::OkStatus();
       }});
}

void FlagSet::Uint(std::string name, uint64_t* target, std::string help) {
  Add({name, std::move(help), common::StrCat(*target), false, false, false,
       [target, name](const std::string& v) {
         uint64_t parsed = 0;
         if (!absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &parsed) ||
             (!v.empty() && v[0] == '-')) {
           return absl::InvalidArgumentError(
               common::StrCat("--", name, ": expected a non-negative integer, got '", v, "'"));
         }
         *target = parsed;
         return absl::OkStatus();
       }});
}

void FlagSet::Int(std::string name, int64_t* target, std::string help) {
  Add({name, std::move(help), common::StrCat(*target), false, false, false,
       [target, name](const std::string& v) {
         int64_t parsed = 0;
         if (!absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &parsed)) {
           return absl::InvalidArgumentError(
               common::StrCat("--", name, ": expected an integer, got '", v, "'"));
         }
         *target = parsed;
         return absl::OkStatus();
       }});
}

void FlagSet::Bool(std::string name, bool* target, std::string help) {
  Add({name, std::move(help), *target ? "true" : "false", true, false, false,
       [target, name](const std::string& v) {
         if (v.empty() || v == "true" || v == "1" || v == "yes") {
           *target = true;
         } else if (v == "false" || v == "0" || v == "no") {
           *target = false;
         } else {
           return absl::InvalidArgumentError(
               common::StrCat("--", name, ": expected true or false, got '", v, "'"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::List(std::string name, std::vector<std::string>* target, std::string help) {
  Add({name, std::move(help), "", false, true, false, [target](const std::string& v) {
         target->push_back(v);
         return absl::OkStatus();
       }});
}

absl::Status FlagSet::Parse(int argc, char** argv, std::vector<std::string>* positional) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return Parse(args, positional);
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args,
                            std::vector<std::string>* positional) {
  for (auto& f : flags_) {
    if (f.is_list || !f.env) continue;
    if (const char* env = std::getenv(EnvName(f.name).c_str()); env != nullptr) {
      if (auto st = f.apply(env); !st.ok()) {
        return absl::InvalidArgumentError(
            common::StrCat(st.message(), " (from ", EnvName(f.name), ")"));
      }
      f.set = true;
    }
  }
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!only_positional && (a == "--help" || a == "-h")) {
      help_requested_ = true;
      continue;
    }
    if (!only_positional && a == "--") {
      only_positional = true;
      continue;
    }
    if (only_positional || a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (positional == nullptr) {
        return absl::InvalidArgumentError(common::StrCat("unexpected argument '", a, "'"));
      }
      positional->push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* f = Find(name);
    if (f == nullptr) {
      return absl::InvalidArgumentError(common::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value && !f->is_bool) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(common::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    if (auto st = f->apply(value); !st.ok()) return st;
    f->set = true;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = common::StrCat("Usage: ", program_, "\n\n", summary_, "\n\nFlags:\n");
  for (const auto& f : flags_) {
    common::StrAppend(&out, "  --", f.name, f.is_bool ? "" : " VALUE", "\n      ", f.help);
    if (!f.default_text.empty()) common::StrAppend(&out, " (default: ", f.default_text, ")");
    if (!f.is_list && f.env) common::StrAppend(&out, " [env ", EnvName(f.name), "]");
    common::StrAppend(&out, "\n");
  }
  common::StrAppend(&out, "  --help\n      Print this help and exit.\n");
  common::StrAppend(&out, "  --version\n      Print the version and exit.\n");
  if (!epilog_.empty()) common::StrAppend(&out, "\n", epilog_, "\n");
  return out;
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat("cannot read ", path));
  std::string line;
  std::getline(in, line);
  size_t begin = line.find_first_not_of(" \t\r\n");
  size_t end = line.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) return absl::InvalidArgumentError(StrCat(path, " is empty"));
  return line.substr(begin, end - begin + 1);
}

}  // namespace relay::common
