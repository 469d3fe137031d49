// File: json.h
// Writing JSON: an escaping builder for the fixed-shape frames and API bodies Relay emits.
// Parsing untrusted JSON uses simdjson's DOM API (full validation) through ThreadParser().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace simdjson::dom {
class parser;
}

namespace relay::common {

// Appends `s` to `out` as a quoted JSON string literal.
void AppendJsonString(std::string* out, std::string_view s);

// `s` as a quoted JSON string literal.
std::string JsonQuote(std::string_view s);

// A minimal streaming writer. The caller is responsible for well-formed nesting; the writer
// inserts commas between members and elements.
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  // Object member name; the value must follow.
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // Inserts an already valid JSON text as a value.
  JsonWriter& Raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Separate();

  std::string out_;
  bool need_comma_ = false;
};

// One simdjson DOM parser per thread (parsers are not thread-safe and are costly to create).
simdjson::dom::parser& ThreadParser();

}  // namespace relay::common
