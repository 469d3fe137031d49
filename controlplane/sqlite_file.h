// File: sqlite_file.h
// Opens one of the control plane's SQLite files (relay.db, webhooks.db) the one way they all
// need: created if missing, mode 0600 (it holds hashed credentials and webhook payloads), a 5 s
// busy timeout, WAL journal with synchronous=NORMAL.
#pragma once

#include <sqlite3.h>

#include <string>

#include "absl/status/statusor.h"

namespace relay::controlplane {

// The open handle (the caller closes it), or FAILED_PRECONDITION "cannot open PATH: why".
absl::StatusOr<sqlite3*> OpenSqliteFile(const std::string& path);

}  // namespace relay::controlplane
