#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

#include "common/json.h"

namespace relay::common {
namespace {

LogLevel LevelFromEnv() {
  LogLevel level = LogLevel::kInfo;
  if (const char* v = std::getenv("RELAY_LOG_LEVEL"); v != nullptr) ParseLogLevel(v, &level);
  return level;
}

std::atomic<int>& Threshold() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

// Text lines stay one line: control characters (a newline in a client-supplied name) are
// escaped rather than starting a forged line.
void AppendText(std::string* out, std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
}

// A field value in text form: bare when it is one plain word, quoted JSON otherwise.
void AppendTextValue(std::string* out, std::string_view v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) plain = false;
  }
  if (plain) {
    out->append(v);
  } else {
    AppendJsonString(out, v);
  }
}

void Write(LogLevel level, std::string_view component, std::string_view message,
           std::initializer_list<LogField> fields) {
  static constexpr const char* kText[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  static constexpr const char* kJson[] = {"debug", "info", "warn", "error"};
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[40];
  size_t n = std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(ts + n, sizeof(ts) - n, ".%03dZ", ms);
  int l = static_cast<int>(level);
  std::string line;
  line.reserve(96 + message.size());
  if (g_format.load(std::memory_order_relaxed) == static_cast<int>(LogFormat::kJson)) {
    line.append("{\"time\":\"").append(ts).append("\",\"level\":\"").append(kJson[l]);
    line.append("\",\"component\":");
    AppendJsonString(&line, component);
    line.append(",\"message\":");
    AppendJsonString(&line, message);
    for (const auto& [name, value] : fields) {
      line.push_back(',');
      AppendJsonString(&line, name);
      line.push_back(':');
      AppendJsonString(&line, value);
    }
    line.append("}\n");
  } else {
    char head[64];
    std::snprintf(head, sizeof(head), "%s %-5s [", ts, kText[l]);
    line.append(head);
    AppendText(&line, component);
    line.append("] ");
    AppendText(&line, message);
    for (const auto& [name, value] : fields) {
      line.push_back(' ');
      line.append(name);
      line.push_back('=');
      AppendTextValue(&line, value);
    }
    line.push_back('\n');
  }
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void SetLogLevel(LogLevel level) { Threshold().store(static_cast<int>(level)); }

void SetLogFormat(LogFormat format) { g_format.store(static_cast<int>(format)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= Threshold().load(); }

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  static constexpr std::pair<std::string_view, LogLevel> kLevels[] = {{"debug", LogLevel::kDebug},
                                                                      {"info", LogLevel::kInfo},
                                                                      {"warn", LogLevel::kWarn},
                                                                      {"error", LogLevel::kError}};
  for (const auto& [name, value] : kLevels) {
    if (text == name) {
      *level = value;
      return true;
    }
  }
  return false;
}

bool ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

void LogLine(LogLevel level, std::string_view component, std::string_view message) {
  Write(level, component, message, {});
}

void LogLine(LogLevel level, std::string_view component, std::string_view message,
             std::initializer_list<LogField> fields) {
  Write(level, component, message, fields);
}

}  // namespace relay::common
