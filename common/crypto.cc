#include "common/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdlib>
#include <cstring>

namespace relay::common {
namespace {

std::string ToHex(const unsigned char* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(len * 2, '\0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

// The HMAC implementation is immutable once fetched, so one instance serves every thread.
EVP_MAC* HmacImpl() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) {
    std::abort();  // OpenSSL without HMAC: nothing in Relay can work.
  }
  return mac;
}

std::string Digest(const EVP_MD* md, std::string_view data, bool hex) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
    std::abort();
  }
  if (hex) {
    return ToHex(out.data(), len);
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

}  // namespace

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(HmacImpl());
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                         OSSL_PARAM_construct_end()};
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  size_t len = 0;
  // An empty key is legal for HMAC but OpenSSL wants a non-null pointer.
  static const unsigned char kEmpty = 0;
  const auto* key_ptr = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  bool ok = ctx != nullptr && EVP_MAC_init(ctx, key_ptr, key.size(), params) == 1 &&
            EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(message.data()),
                           message.size()) == 1 &&
            EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) {
    std::abort();
  }
  return ToHex(out.data(), len);
}

std::string Md5Hex(std::string_view data) { return Digest(EVP_md5(), data, true); }

std::string Sha256Hex(std::string_view data) { return Digest(EVP_sha256(), data, true); }

std::string Sha256(std::string_view data) { return Digest(EVP_sha256(), data, false); }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  if (a.empty()) {
    return true;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    std::abort();
  }
  return ToHex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

uint32_t RandomU32() {
  uint32_t v = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof(v)) != 1) {
    std::abort();
  }
  return v;
}

}  // namespace relay::common
