// Fuzzes the signature code every client and API request goes through (common/pusher_auth.h,
// common/crypto.h): token verification with hostile tokens, keys and secrets, the HTTP API's
// query parsing and string to sign, and percent decoding. Checks that a token signed with a
// secret verifies, that nothing else given as the signature does, and that the decoders never
// produce more bytes than they read.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/pusher_auth.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace relay::common;
  FuzzedDataProvider in(data, size);
  std::string token = in.ConsumeRandomLengthString(256);
  std::string key = in.ConsumeRandomLengthString(64);
  std::string secret = in.ConsumeRandomLengthString(64);
  std::string other_secret = in.ConsumeRandomLengthString(64);
  std::string socket_id = in.ConsumeRandomLengthString(32);
  std::string channel = in.ConsumeRandomLengthString(200);
  std::string method = in.ConsumeRandomLengthString(8);
  std::string path = in.ConsumeRandomLengthString(128);
  std::string query = in.ConsumeRemainingBytesAsString();

  // Subscription and sign-in tokens.
  std::string to_sign = ChannelStringToSign(socket_id, channel, query);
  std::vector<std::string_view> secrets{secret, other_secret};
  std::string good = SignToken(key, secret, to_sign);
  // Keys are generated without ':' (the token's separator); one with it can never verify.
  bool plain_key = key.find(':') == std::string::npos;
  Check(VerifyToken(good, key, secrets, to_sign) == plain_key);
  Check(VerifyToken(good, key, {other_secret, secret}, to_sign) == plain_key);
  bool verified = VerifyToken(token, key, secrets, to_sign);
  if (verified) {
    // Only the exact signature of one of the secrets is accepted.
    Check(token == good || token == SignToken(key, other_secret, to_sign));
  }
  Check(!VerifyToken(token, key, {}, to_sign));
  std::string user_to_sign = UserStringToSign(socket_id, channel);
  Check(VerifyToken(SignToken(key, secret, user_to_sign), key, secrets, user_to_sign) == plain_key);

  // Digests and comparison.
  Check(HmacSha256Hex(secret, token).size() == 64);
  Check(Md5Hex(query).size() == 32);
  Check(Sha256Hex(token).size() == 64);
  Check(Sha256(token).size() == 32);
  Check(ConstantTimeEquals(token, key) == (token == key));

  // The HTTP API's query string handling.
  std::string decoded;
  if (PercentDecode(query, &decoded)) Check(decoded.size() <= query.size());
  QueryParams params;
  if (ParseQuery(query, &params)) {
    size_t total = 0;
    for (const auto& [k, v] : params) total += k.size() + v.size();
    Check(total <= query.size());
    std::string http_to_sign = HttpStringToSign(method, path, params);
    Check(http_to_sign.size() >= method.size() + path.size() + 2);
    // The string to sign does not depend on the order of the parameters.
    QueryParams reversed(params.rbegin(), params.rend());
    Check(HttpStringToSign(method, path, reversed) == http_to_sign);
  }
  return 0;
}
