#include "controlplane/well_known_secret.h"

#include "common/strings.h"

namespace relay::controlplane {

absl::Status RefuseWellKnownSecret(const std::string& host, const AppStore& store,
                                   const std::string& default_app_secret) {
  if (common::IsLoopbackHost(host)) return absl::OkStatus();
  std::string offender;
  std::vector<relay::v1::App> apps = store.List();
  if (apps.empty()) {
    if (default_app_secret == common::kWellKnownSecret) offender = "the default app to be created";
  } else {
    for (const auto& app : apps) {
      if (app.secret() == common::kWellKnownSecret) {
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
