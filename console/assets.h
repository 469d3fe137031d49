// File: assets.h
// The web console's static files (console/web/), compiled into the binary at build time by
// cmake/EmbedFiles.cmake (console/CMakeLists.txt), so `relay --console` needs nothing on disk.
#pragma once

#include <cstddef>
#include <string_view>

namespace relay::console {

struct EmbeddedFile {
  const char* name;          // "index.html", "console.js", ...
  const char* content_type;  // by extension
  const char* data;
  size_t size;
};

extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

// The file named `name`, or null.
inline const EmbeddedFile* FindEmbeddedFile(std::string_view name) {
  for (size_t i = 0; i < kEmbeddedFileCount; ++i) {
    if (name == kEmbeddedFiles[i].name) return &kEmbeddedFiles[i];
  }
  return nullptr;
}

}  // namespace relay::console
