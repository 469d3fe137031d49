// File: http_client.h
// A small blocking HTTP/1.1 client (http:// and https://, certificates verified against the
// system store) used to deliver webhooks. Every step is bounded by the timeout.
#pragma once

#include "controlplane/webhooks.h"

namespace relay::http_bridge {

controlplane::PostResult HttpPost(const std::string& url,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout);

}  // namespace relay::http_bridge
