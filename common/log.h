// File: log.h
// A small leveled logger writing one line per call to stderr. Thread-safe.
// Never pass secrets (app secrets, tokens, signatures) to it.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "common/strings.h"

namespace relay::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
// kText: "2026-12-03T00:00:00.000Z INFO  [component] message key=value ...";
// kJson: one object per line {"time","level","component","message", then the fields}.
enum class LogFormat { kText = 0, kJson = 1 };

// Lines below `level` are dropped. Default kInfo, or RELAY_LOG_LEVEL=debug|info|warn|error when
// the binary does not set it from its --log-level flag.
void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
bool LogEnabled(LogLevel level);
// "debug", "info", "warn", "error" / "text", "json"; false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);
bool ParseLogFormat(std::string_view text, LogFormat* format);

// A structured field of a log line: a name (a constant) and its value.
using LogField = std::pair<std::string_view, std::string>;

void LogLine(LogLevel level, std::string_view component, std::string_view message);
void LogLine(LogLevel level, std::string_view component, std::string_view message,
             std::initializer_list<LogField> fields);

}  // namespace relay::common

#define RELAY_LOG(level, component, ...)                                    \
  do {                                                                      \
    if (::relay::common::LogEnabled(::relay::common::LogLevel::level)) {    \
      ::relay::common::LogLine(::relay::common::LogLevel::level, component, \
                               ::relay::common::StrCat(__VA_ARGS__));       \
    }                                                                       \
  } while (0)
