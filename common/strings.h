// File: strings.h
// absl::StrCat / StrAppend that also take std::string_view. Debian's abseil is built with
// ABSL_OPTION_USE_STD_STRING_VIEW 0, so absl::string_view is a distinct type and absl::StrCat
// rejects std::string_view arguments; these wrappers convert them.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace relay::common {

// `s` as Debian abseil's string_view.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

namespace strings_internal {
template <typename T>
decltype(auto) Piece(T&& v) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, std::string_view>) {
    return AbslView(v);
  } else {
    return std::forward<T>(v);
  }
}
}  // namespace strings_internal

template <typename... Args>
std::string StrCat(Args&&... args) {
  return absl::StrCat(strings_internal::Piece(std::forward<Args>(args))...);
}

template <typename... Args>
void StrAppend(std::string* out, Args&&... args) {
  absl::StrAppend(out, strings_internal::Piece(std::forward<Args>(args))...);
}

}  // namespace relay::common
