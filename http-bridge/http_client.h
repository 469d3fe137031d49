// File: http_client.h
// A small blocking HTTP/1.1 client (http:// and https://, certificates verified against the
// system store) used to deliver webhooks. Every step is bounded by the timeout.
#pragma once

#include "controlplane/webhooks.h"

namespace relay::http_bridge {

// `targets`, when given, vets every address the host resolves to (DNS rebinding): refused
// addresses are never connected to, and when none is left the POST fails with the reason.
controlplane::PostResult HttpPost(const std::string& url,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout,
                                  const controlplane::WebhookTargets* targets = nullptr);

// HttpPost bound to `targets`, for ControlPlaneOptions::webhook_post.
controlplane::HttpPost GuardedHttpPost(std::shared_ptr<const controlplane::WebhookTargets> targets);

}  // namespace relay::http_bridge
