// File: pusher_auth.h
// Pusher signatures: channel subscription tokens ("key:hex"), user sign-in tokens, and the HTTP
// API request signature. Verification always compares in constant time.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relay::common {

// The string a channel subscription signs: "socket:channel" or "socket:channel:channel_data".
std::string ChannelStringToSign(std::string_view socket_id, std::string_view channel,
                                std::string_view channel_data);

// The string a user sign-in signs: "socket::user::user_data".
std::string UserStringToSign(std::string_view socket_id, std::string_view user_data);

// "key:hex(HMAC-SHA256(secret, string_to_sign))".
std::string SignToken(std::string_view key, std::string_view secret,
                      std::string_view string_to_sign);

// True when `token` is "key:<signature of string_to_sign with one of secrets>".
// `secrets` holds every secret currently accepted (the current one and, during a rotation, the
// previous one). Constant time in the signature comparison.
bool VerifyToken(std::string_view token, std::string_view key,
                 const std::vector<std::string_view>& secrets, std::string_view string_to_sign);

// Query parameters as decoded (name, value) pairs, in request order.
using QueryParams = std::vector<std::pair<std::string, std::string>>;

// The Pusher HTTP API string to sign: METHOD\nPATH\ncanonical query (keys lowercased and sorted,
// auth_signature left out, values not re-escaped).
std::string HttpStringToSign(std::string_view method, std::string_view path,
                             const QueryParams& params);

// Percent-decodes `s` ('+' becomes a space, as in form encoding). Returns false on a malformed
// escape.
bool PercentDecode(std::string_view s, std::string* out);

// Splits a raw query string into decoded parameters. Returns false on a malformed escape.
bool ParseQuery(std::string_view query, QueryParams* out);

}  // namespace relay::common
