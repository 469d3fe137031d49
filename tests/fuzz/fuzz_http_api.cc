// Fuzzes the Pusher HTTP API (http-bridge/http_api.cc) end to end inside the process: the input
// is parsed by Beast's request parser with the front door's limits (tests/fuzz/http_input.h) and
// handed to HttpApi::Handle on a real control plane (SQLite store in a temp dir, gRPC on a free
// loopback port, no data plane). The first input byte picks the authentication:
//   0 (even): the request as given (HMAC query signature, headers, bearer: all the fuzzer's own);
//   bit 0:    X-Relay-Key / X-Relay-Secret of the default app are added, so hostile bodies reach
//             the endpoints behind authentication (events, batch_events, channels, users);
//   bit 1:    the harness signs the request as the pusher SDK does (auth_key, auth_timestamp,
//             auth_version, body_md5 and auth_signature replace any the input gave), so the
//             HMAC path is covered through to success with hostile paths, queries and bodies.
// Every answer must be a known HTTP status with a JSON body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "common/crypto.h"
#include "common/pusher_auth.h"
#include "common/time.h"
#include "http-bridge/http_api.h"
#include "tests/fuzz/fuzz_control_plane.h"
#include "tests/fuzz/http_input.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

// Signs `r` with the default app's secret, keeping the input's other query parameters.
void Sign(relay::transport::HttpRequest& r) {
  using namespace relay::common;
  QueryParams params;
  if (!ParseQuery(r.query, &params)) return;  // refused before authentication anyway
  std::erase_if(params, [](const auto& p) {
    return p.first.substr(0, 5) == "auth_" || p.first == "body_md5";
  });
  params.emplace_back("auth_key", "app-key");
  params.emplace_back("auth_timestamp", std::to_string(NowUnixSeconds()));
  params.emplace_back("auth_version", "1.0");
  if (!r.body.empty()) params.emplace_back("body_md5", Md5Hex(r.body));
  params.emplace_back("auth_signature",
                      HmacSha256Hex("app-secret", HttpStringToSign(r.method, r.path, params)));
  r.query.clear();
  for (const auto& [k, v] : params) {
    if (!r.query.empty()) r.query += '&';
    r.query += PercentEncode(k) + "=" + PercentEncode(v);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static relay::http_bridge::HttpApi* api = [] {
    relay::controlplane::ControlPlaneOptions o;
    o.limits.trigger_requests_per_minute = 0;  // the fuzzer is one client sending fast
    auto& cp = relay::fuzz::FuzzControlPlane(o);
    return new relay::http_bridge::HttpApi(cp.api());
  }();
  const bool with_secret = (data[0] & 1) != 0;
  const bool signed_by_harness = (data[0] & 2) != 0;
  relay::transport::BeastRequest beast_request;
  std::string leftover;
  if (!relay::fuzz::ParseHttpRequest(
          std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), &beast_request,
          &leftover)) {
    return 0;
  }
  relay::transport::HttpRequest request =
      relay::transport::ToHttpRequest(std::move(beast_request), "127.0.0.1");
  if (signed_by_harness) Sign(request);
  if (with_secret) {
    request.headers.emplace_back("X-Relay-Key", "app-key");
    request.headers.emplace_back("X-Relay-Secret", "app-secret");
  }
  relay::transport::HttpResponse response = api->Handle(request);
  Check(response.status >= 200 && response.status < 600);
  if (response.content_type == "application/json") {
    Check(!response.body.empty() && (response.body[0] == '{' || response.body[0] == '['));
  }
  return 0;
}
