#include "common/pusher_auth.h"

#include <algorithm>

#include "common/crypto.h"
#include "common/strings.h"

namespace relay::common {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

std::string ChannelStringToSign(std::string_view socket_id, std::string_view channel,
                                std::string_view channel_data) {
  if (channel_data.empty()) {
    return common::StrCat(socket_id, ":", channel);
  }
  return common::StrCat(socket_id, ":", channel, ":", channel_data);
}

std::string UserStringToSign(std::string_view socket_id, std::string_view user_data) {
  return common::StrCat(socket_id, "::user::", user_data);
}

std::string SignToken(std::string_view key, std::string_view secret,
                      std::string_view string_to_sign) {
  return common::StrCat(key, ":", HmacSha256Hex(secret, string_to_sign));
}

bool VerifyToken(std::string_view token, std::string_view key,
                 const std::vector<std::string_view>& secrets, std::string_view string_to_sign) {
  size_t colon = token.find(':');
  if (colon == std::string_view::npos) {
    return false;
  }
  if (!ConstantTimeEquals(token.substr(0, colon), key)) {
    return false;
  }
  std::string_view given = token.substr(colon + 1);
  bool ok = false;
  for (std::string_view secret : secrets) {
    // Check every secret so the time does not reveal which one matched.
    ok |= ConstantTimeEquals(given, HmacSha256Hex(secret, string_to_sign));
  }
  return ok;
}

std::string HttpStringToSign(std::string_view method, std::string_view path,
                             const QueryParams& params) {
  std::vector<std::pair<std::string, std::string_view>> sorted;
  sorted.reserve(params.size());
  for (const auto& [k, v] : params) {
    std::string lk = Lower(k);
    if (lk == "auth_signature") continue;
    sorted.emplace_back(std::move(lk), v);
  }
  std::sort(sorted.begin(), sorted.end());
  std::string out = common::StrCat(method, "\n", path, "\n");
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0) out.push_back('&');
    common::StrAppend(&out, sorted[i].first, "=", sorted[i].second);
  }
  return out;
}

bool PercentDecode(std::string_view s, std::string* out) {
  out->clear();
  out->reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return false;
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+') {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool ParseQuery(std::string_view query, QueryParams* out) {
  out->clear();
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string k, v;
    if (!PercentDecode(part.substr(0, eq), &k)) return false;
    if (eq != std::string_view::npos && !PercentDecode(part.substr(eq + 1), &v)) return false;
    out->emplace_back(std::move(k), std::move(v));
  }
  return true;
}

}  // namespace relay::common
