// Fuzzes the channel and event naming rules (common/channel.h) with arbitrary names and checks
// the properties the rest of Relay relies on: a name that passes is short and made only of the
// allowed characters, the classification agrees with the prefix, and a socket id that passes is
// digits.digits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/channel.h"

namespace {

bool AllowedChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("_-=@,.;").find(c) != std::string_view::npos;
}

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace relay::common;
  std::string_view name(reinterpret_cast<const char*>(data), size);

  ChannelKind kind = ClassifyChannel(name);
  Check(!(kind.is_private && kind.is_presence));
  Check(!kind.is_encrypted || kind.is_private);
  Check(kind.is_server_to_user ==
        (name.substr(0, kServerToUserPrefix.size()) == kServerToUserPrefix));
  Check(!kind.AllowsClientEvents() || kind.NeedsAuth());

  for (bool allow_server_to_user : {false, true}) {
    if (!ChannelNameError(name, allow_server_to_user).empty()) continue;
    Check(!name.empty() && name.size() <= kMaxChannelNameLength);
    std::string_view rest = name;
    if (kind.is_server_to_user) {
      Check(allow_server_to_user);
      rest = ServerToUserId(name);
      Check(!rest.empty());
    }
    for (char c : rest) Check(AllowedChar(c));
  }

  std::string_view user = ServerToUserId(name);
  Check(user.empty() || kind.is_server_to_user);

  if (IsValidSocketId(name)) {
    size_t dot = name.find('.');
    Check(dot != 0 && dot + 1 < name.size());
    for (size_t i = 0; i < name.size(); ++i) Check(i == dot || (name[i] >= '0' && name[i] <= '9'));
  }
  return 0;
}
