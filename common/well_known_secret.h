// File: well_known_secret.h
// The zero-setup default app's secret ("app-secret") is public knowledge: fine on loopback, a
// full compromise of the app (anyone can trigger events and sign private and presence
// subscriptions) once a server is reachable from the network. Both planes refuse it there.
#pragma once

#include <string>

namespace relay::common {

inline constexpr char kWellKnownSecret[] = "app-secret";

// True for addresses only this host can reach: 127.0.0.0/8, ::1 (and ::ffff:127.x), localhost.
bool IsLoopbackHost(const std::string& host);

}  // namespace relay::common
