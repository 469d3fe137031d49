// File: webhook_targets.h
// Which addresses a webhook may be delivered to (SSRF guard). Anyone holding an admin token can
// point a webhook anywhere, and the control plane then POSTs from inside the network: so
// link-local addresses (cloud metadata at 169.254.169.254, fe80::/10) and this server's own
// listening ports (its admin gRPC and HTTP API) are refused, both when a webhook is added and
// after every DNS resolution at delivery time (DNS rebinding). Other loopback and private
// addresses stay allowed (a receiver next to the server is a normal setup). Operators can
// lift either rule (--webhook-allow-link-local, --webhook-allow-self). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace relay::controlplane {

class WebhookTargets {
 public:
  WebhookTargets(bool allow_link_local, bool allow_self)
      : allow_link_local_(allow_link_local), allow_self_(allow_self) {}

  // Registers a port this process listens on (call once each server is bound).
  void AddOwnPort(uint16_t port);

  // Checks one resolved address (an IP literal, v4 or v6) and port. InvalidArgument with a
  // message naming the rule and the flag that lifts it.
  absl::Status CheckAddress(const std::string& ip, uint16_t port) const;

  // Checks a webhook URL when it is added: an IP literal is checked as is; a host name is
  // resolved (best effort: a name that does not resolve yet is left to the delivery check).
  absl::Status CheckUrl(const std::string& url) const;

 private:
  bool IsOwnPort(uint16_t port) const;

  const bool allow_link_local_;
  const bool allow_self_;
  mutable absl::Mutex mu_;
  std::set<uint16_t> own_ports_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::controlplane
