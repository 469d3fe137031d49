#include "controlplane/webhook_targets.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/strings.h"
#include "transport/http_client.h"

namespace relay::controlplane {
namespace {

// An address as 16 bytes; IPv4 (and IPv4-mapped IPv6) as ::ffff:a.b.c.d so one set of rules
// covers both spellings.
using Ip = std::array<uint8_t, 16>;

bool ParseIp(const std::string& spelled, Ip* out) {
  std::string text = spelled.substr(0, spelled.find('%'));  // fe80::1%eth0: drop the zone
  in6_addr a6{};
  in_addr a4{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    std::memcpy(out->data(), &a6, 16);
    return true;
  }
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    *out = Ip{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(out->data() + 12, &a4, 4);
    return true;
  }
  return false;
}

bool IsV4(const Ip& ip) {
  static const Ip kPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(ip.begin(), ip.begin() + 12, kPrefix.begin());
}

bool IsLinkLocal(const Ip& ip) {
  if (IsV4(ip)) return ip[12] == 169 && ip[13] == 254;       // 169.254.0.0/16
  if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) return true;  // fe80::/10
  // fd00:ec2::254, the IPv6 instance metadata address of EC2 (not link-local by prefix).
  static const Ip kEc2{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
  return ip == kEc2;
}

// Addresses that reach this host: loopback, unspecified (connecting to 0.0.0.0 or :: reaches
// the local host) and the addresses of its interfaces.
bool IsThisHost(const Ip& ip) {
  if (IsV4(ip)) {
    if (ip[12] == 127) return true;
    if (ip[12] == 0 && ip[13] == 0 && ip[14] == 0 && ip[15] == 0) return true;
  } else {
    static const Ip kAny{};
    static const Ip kLoopback{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (ip == kAny || ip == kLoopback) return true;
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    Ip local{};
    if (i->ifa_addr->sa_family == AF_INET) {
      local = Ip{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      std::memcpy(local.data() + 12, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      std::memcpy(local.data(), &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
    } else {
      continue;
    }
    found = local == ip;
  }
  freeifaddrs(list);
  return found;
}

}  // namespace

void WebhookTargets::AddOwnPort(uint16_t port) {
  absl::MutexLock lock(&mu_);
  own_ports_.insert(port);
}

bool WebhookTargets::IsOwnPort(uint16_t port) const {
  absl::MutexLock lock(&mu_);
  return own_ports_.contains(port);
}

absl::Status WebhookTargets::CheckAddress(const std::string& ip_text, uint16_t port) const {
  Ip ip{};
  if (!ParseIp(ip_text, &ip)) {
    return absl::InvalidArgumentError(common::StrCat("'", ip_text, "' is not an IP address"));
  }
  if (!allow_link_local_ && IsLinkLocal(ip)) {
    return absl::InvalidArgumentError(
        common::StrCat("webhook target ", ip_text,
                       " is a link-local or cloud metadata address; refused "
                       "(start the control plane with --webhook-allow-link-local to allow it)"));
  }
  if (!allow_self_ && IsOwnPort(port) && IsThisHost(ip)) {
    return absl::InvalidArgumentError(
        common::StrCat("webhook target ", ip_text, ":", port,
                       " is one of this server's own ports; refused "
                       "(start the control plane with --webhook-allow-self to allow it)"));
  }
  return absl::OkStatus();
}

absl::Status WebhookTargets::CheckUrl(const std::string& url) const {
  transport::HttpUrl parsed;
  if (!transport::ParseHttpUrl(url, &parsed)) {
    return absl::InvalidArgumentError(common::StrCat("cannot parse the webhook URL '", url, "'"));
  }
  const std::string& host = parsed.host;
  const uint16_t port = parsed.port;
  Ip literal{};
  if (ParseIp(host, &literal)) return CheckAddress(host, port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &results) != 0) return absl::OkStatus();
  absl::Status status;
  for (addrinfo* r = results; r && status.ok(); r = r->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr =
        r->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(r->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(r->ai_addr)->sin6_addr);
    if (r->ai_family != AF_INET && r->ai_family != AF_INET6) continue;
    if (!inet_ntop(r->ai_family, addr, text, sizeof(text))) continue;
    status = CheckAddress(text, port);
  }
  freeaddrinfo(results);
  if (!status.ok()) {
    return absl::InvalidArgumentError(common::StrCat(
        "webhook host '", host, "' resolves to a refused address: ", status.message()));
  }
  return status;
}

}  // namespace relay::controlplane
