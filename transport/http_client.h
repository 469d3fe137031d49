// File: http_client.h
// A small blocking HTTP/1.1 client (http:// and https://, certificates verified against the
// system store). Every step is bounded by the timeout and the response is read under fixed size
// limits, so a hostile server can make a request fail but not grow memory or end the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace relay::transport {

// The parts of an http:// or https:// URL a request needs.
struct HttpUrl {
  bool tls = false;
  std::string host;    // without brackets for IPv6 literals
  uint16_t port = 0;   // the scheme's default when the URL names none
  std::string target;  // path and query, "/" when empty
};

// False for anything but a well-formed http(s) URL with a host and a port in 1..65535.
bool ParseHttpUrl(const std::string& url, HttpUrl* out);

// Result of one HTTP POST.
struct HttpPostResult {
  int status = 0;     // 0 when no response arrived
  std::string error;  // transport error text
};

// Vets each address the host resolves to before it is connected to (DNS rebinding): a refused
// address is skipped, and when none is left the POST fails with the last reason.
using AddressCheck = std::function<absl::Status(const std::string& ip, uint16_t port)>;

HttpPostResult HttpPost(const std::string& url,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        const std::string& body, std::chrono::milliseconds timeout,
                        const AddressCheck& check = nullptr);

}  // namespace relay::transport
