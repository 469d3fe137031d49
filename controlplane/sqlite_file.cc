#include "controlplane/sqlite_file.h"

#include <sys/stat.h>

#include "common/strings.h"

namespace relay::controlplane {

absl::StatusOr<sqlite3*> OpenSqliteFile(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::FailedPreconditionError(common::StrCat("cannot open ", path, ": ", msg));
  }
  ::chmod(path.c_str(), 0600);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
               nullptr);
  return db;
}

}  // namespace relay::controlplane
