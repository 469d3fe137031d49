// File: webhook_sender.h
// The HttpPost the servers give Webhooks: the transport's bounded HTTP client, with every
// address the endpoint's host resolves to vetted by the webhook target rules (DNS rebinding).
#pragma once

#include <memory>

#include "controlplane/webhook_targets.h"
#include "controlplane/webhooks.h"

namespace relay::controlplane {

HttpPost GuardedHttpPost(std::shared_ptr<const WebhookTargets> targets);

}  // namespace relay::controlplane
