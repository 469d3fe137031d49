// File: crypto.h
// HMAC-SHA256, MD5 and constant-time comparison over OpenSSL 3's non-deprecated EVP APIs, plus
// the random identifiers Relay generates (app credentials, tokens, socket ids).
// Thread-safe: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace relay::common {

// Lowercase hex HMAC-SHA256 of `message` keyed with `key`.
std::string HmacSha256Hex(std::string_view key, std::string_view message);

// Lowercase hex MD5 of `data` (Pusher's body_md5).
std::string Md5Hex(std::string_view data);

// Lowercase hex SHA-256 of `data` (API token hashes).
std::string Sha256Hex(std::string_view data);

// Raw SHA-256 digest bytes of `data`.
std::string Sha256(std::string_view data);

// True when `a` and `b` are equal; the time taken depends only on the lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// `bytes` bytes from the OS CSPRNG, hex encoded (2 * bytes characters).
std::string RandomHex(size_t bytes);

// A uniformly random 32-bit value from the OS CSPRNG.
uint32_t RandomU32();

}  // namespace relay::common
