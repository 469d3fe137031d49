#include "controlplane/webhook_sender.h"

#include "transport/http_client.h"

namespace relay::controlplane {

HttpPost GuardedHttpPost(std::shared_ptr<const WebhookTargets> targets) {
  transport::AddressCheck check;
  if (targets) {
    check = [targets](const std::string& ip, uint16_t port) {
      return targets->CheckAddress(ip, port);
    };
  }
  return [check = std::move(check)](const std::string& url,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    const std::string& body, std::chrono::milliseconds timeout) {
    return transport::HttpPost(url, headers, body, timeout, check);
  };
}

}  // namespace relay::controlplane
