// File: well_known_secret.h
// Safe default: the zero-setup default app's secret ("app-secret") is public knowledge, fine on
// loopback but a full compromise of the app (anyone can trigger events and sign private and
// presence subscriptions) once the server is reachable from the network.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/well_known_secret.h"
#include "controlplane/app_store.h"

namespace relay::controlplane {

// PermissionDenied (the binaries exit with 2 on it) when `host` is not loopback and some app's
// current secret is the well-known default -- or, on the first start (an empty store), when the
// default app would be created with `default_app_secret` equal to it. The message tells the
// operator how to fix it.
absl::Status RefuseWellKnownSecret(const std::string& host, const AppStore& store,
                                   const std::string& default_app_secret);

}  // namespace relay::controlplane
