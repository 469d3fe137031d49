#include "common/channel.h"

#include "common/strings.h"

namespace relay::common {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '=' || c == '@' || c == ',' || c == '.' || c == ';';
}

bool IsDigits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

}  // namespace

ChannelKind ClassifyChannel(std::string_view name) {
  ChannelKind k;
  if (StartsWith(name, kServerToUserPrefix)) {
    k.is_server_to_user = true;
  } else if (StartsWith(name, "private-encrypted-")) {
    k.is_private = k.is_encrypted = true;
    k.is_cache = StartsWith(name, "private-encrypted-cache-");
  } else if (StartsWith(name, "private-")) {
    k.is_private = true;
    k.is_cache = StartsWith(name, "private-cache-");
  } else if (StartsWith(name, "presence-")) {
    k.is_presence = true;
    k.is_cache = StartsWith(name, "presence-cache-");
  } else {
    k.is_cache = StartsWith(name, "cache-");
  }
  return k;
}

std::string ChannelNameError(std::string_view name, bool allow_server_to_user) {
  if (name.empty()) {
    return "Channel name must not be empty";
  }
  if (name.size() > kMaxChannelNameLength) {
    return common::StrCat("Channel name is longer than ", kMaxChannelNameLength, " characters");
  }
  std::string_view rest = name;
  if (StartsWith(name, kServerToUserPrefix)) {
    if (!allow_server_to_user) {
      return "Channel names starting with # are reserved";
    }
    rest = name.substr(kServerToUserPrefix.size());
    if (rest.empty()) {
      return "Missing user id in #server-to-user- channel";
    }
  }
  for (char c : rest) {
    if (!IsNameChar(c)) {
      return "Channel name contains characters outside [A-Za-z0-9_-=@,.;]";
    }
  }
  return {};
}

std::string_view ServerToUserId(std::string_view name) {
  if (!StartsWith(name, kServerToUserPrefix)) {
    return {};
  }
  return name.substr(kServerToUserPrefix.size());
}

bool IsValidSocketId(std::string_view id) {
  size_t dot = id.find('.');
  if (dot == std::string_view::npos) {
    return false;
  }
  return IsDigits(id.substr(0, dot)) && IsDigits(id.substr(dot + 1));
}

}  // namespace relay::common
