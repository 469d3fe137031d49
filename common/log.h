// File: log.h
// A small leveled logger writing one line per call to stderr. Thread-safe.
// Never pass secrets (app secrets, tokens, signatures) to it.
#pragma once

#include <string_view>

#include "common/strings.h"

namespace relay::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below `level` are dropped. Default kInfo; RELAY_LOG_LEVEL=debug|info|warn|error.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view component, std::string_view message);

}  // namespace relay::common

#define RELAY_LOG(level, component, ...)                                    \
  do {                                                                      \
    if (::relay::common::LogEnabled(::relay::common::LogLevel::level)) {    \
      ::relay::common::LogLine(::relay::common::LogLevel::level, component, \
                               ::relay::common::StrCat(__VA_ARGS__));       \
    }                                                                       \
  } while (0)
