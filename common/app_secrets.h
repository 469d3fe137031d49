// File: app_secrets.h
// Which secrets of an app verify right now: the current one, plus previous ones still inside
// their rotation overlap. A template over the app type so common/ stays free of generated code.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace relay::common {

template <typename AppT>
std::vector<std::string_view> AcceptedSecrets(const AppT& app, int64_t now_ms) {
  std::vector<std::string_view> out{app.secret()};
  for (const auto& s : app.previous_secrets()) {
    if (s.expires_unix_ms() == 0 || s.expires_unix_ms() > now_ms) out.push_back(s.secret());
  }
  return out;
}

}  // namespace relay::common
