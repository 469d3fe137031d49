#include "controlplane/well_known_secret.h"

#include <arpa/inet.h>

#include <cstring>

#include "common/strings.h"

namespace relay::controlplane {

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  return false;  // 0.0.0.0, ::, other addresses and names
}

absl::Status RefuseWellKnownSecret(const std::string& host, const AppStore& store,
                                   const std::string& default_app_secret) {
  if (IsLoopbackHost(host)) return absl::OkStatus();
  std::string offender;
  std::vector<relay::v1::App> apps = store.List();
  if (apps.empty()) {
    if (default_app_secret == kWellKnownSecret) offender = "the default app to be created";
  } else {
    for (const auto& app : apps) {
      if (app.secret() == kWellKnownSecret) {
        offender = common::StrCat("app '", app.id(), "'");
        break;
      }
    }
  }
  if (offender.empty()) return absl::OkStatus();
  return absl::PermissionDeniedError(common::StrCat(
      "refusing to listen on ", host, ": ", offender,
      " uses the well-known default secret 'app-secret', which anyone can use to sign requests. "
      "On a first start pass --app-secret <a long random string>; for an existing app rotate it "
      "(start on --host 127.0.0.1, then: relayctl apps rotate-secret <app id>). Loopback hosts "
      "(127.0.0.1, ::1, localhost) keep the default."));
}

}  // namespace relay::controlplane
