#include "controlplane/sqlite_backend.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "common/log.h"
#include "common/strings.h"
#include "controlplane/sqlite_file.h"

namespace relay::controlplane {
namespace {

using relay::v1::App;

// Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
constexpr const char* kMigrations[] = {
    // 1: apps are stored as their serialized relay.v1.App, with id and key indexed.
    "CREATE TABLE apps (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, app BLOB NOT NULL);",
    // 2: API tokens, stored hashed.
    // (Parenthesized: one entry split over lines, which clang's -Wstring-concatenation would
    // otherwise take for a missing comma.)
    ("CREATE TABLE tokens (id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL,"
     " hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
     " last_used_ms INTEGER NOT NULL DEFAULT 0);"
     "CREATE INDEX tokens_app ON tokens(app_id);"),
    // 3: messages per app per UTC day (daily quotas survive restarts).
    ("CREATE TABLE daily_usage (app_id TEXT NOT NULL, day TEXT NOT NULL,"
     " messages INTEGER NOT NULL, PRIMARY KEY (app_id, day));"),
    // 4: node credentials (NodeLink.Attach), stored hashed.
    ("CREATE TABLE node_tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, node_id TEXT NOT NULL,"
     " hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);"),
    // 5: the node registry: data planes attached and not known to be gone, which a restarted
    // control plane waits for before it routes (route_gate.h).
    "CREATE TABLE known_nodes (node_id TEXT PRIMARY KEY, attached_ms INTEGER NOT NULL);",
};

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) {
    const auto* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

absl::Status SqlError(sqlite3* db, std::string_view what) {
  return absl::InternalError(common::StrCat(what, ": ", sqlite3_errmsg(db)));
}

// One transaction around several statements (writer thread).
absl::Status InTransaction(sqlite3* db, std::string_view what,
                           const std::function<bool()>& statements) {
  if (sqlite3_exec(db, "BEGIN;", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(db, what);
  }
  if (!statements()) {
    auto st = SqlError(db, what);
    sqlite3_exec(db, "ROLLBACK;", nullptr, nullptr, nullptr);
    return st;
  }
  if (sqlite3_exec(db, "COMMIT;", nullptr, nullptr, nullptr) != SQLITE_OK) {
    auto st = SqlError(db, what);
    sqlite3_exec(db, "ROLLBACK;", nullptr, nullptr, nullptr);
    return st;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteBackend>> SqliteBackend::Open(const std::string& data_dir) {
  std::error_code ec;
  bool created = std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        common::StrCat("cannot create data dir '", data_dir, "': ", ec.message()));
  }
  if (created) {
    // Our own new directory: private, it holds the app secrets and the admin token.
    ::chmod(data_dir.c_str(), 0700);
  } else {
    // The operator's directory: its mode is theirs to choose (it may be shared on purpose).
    struct stat st {};
    if (::stat(data_dir.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%03o", static_cast<unsigned>(st.st_mode & 0777));
      RELAY_LOG(kWarn, "controlplane", "data dir ", data_dir,
                " is accessible to group or others "
                "(mode ",
                mode, "); it holds app secrets and the admin token");
    }
  }
  return OpenFile(data_dir + "/relay.db");
}

absl::StatusOr<std::unique_ptr<SqliteBackend>> SqliteBackend::OpenExisting(
    const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(common::StrCat("no SQLite store at ", path));
  }
  return OpenFile(path);
}

absl::StatusOr<std::unique_ptr<SqliteBackend>> SqliteBackend::OpenFile(const std::string& path) {
  auto db = OpenSqliteFile(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<SqliteBackend> backend(new SqliteBackend(*db, path));
  if (auto st = backend->Migrate(); !st.ok()) return st;
  return backend;
}

SqliteBackend::~SqliteBackend() { sqlite3_close(db_); }

absl::Status SqliteBackend::Migrate() {
  if (sqlite3_exec(db_, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(db_, "creating schema_version");
  }
  int64_t version = 0;
  {
    Stmt s(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_version;");
    if (s.ok() && s.Step() == SQLITE_ROW) version = s.Int(0);
  }
  constexpr int64_t kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);
  if (version > kLatest) {
    return absl::FailedPreconditionError(common::StrCat(
        "the data dir was written by a newer Relay (schema ", version, " > ", kLatest, ")"));
  }
  for (int64_t v = version; v < kLatest; ++v) {
    std::string sql = common::StrCat("BEGIN;", kMigrations[v],
                                     "INSERT INTO schema_version VALUES (", v + 1, ");COMMIT;");
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      auto st = SqlError(db_, common::StrCat("migration ", v + 1));
      sqlite3_exec(db_, "ROLLBACK;", nullptr, nullptr, nullptr);
      return st;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> SqliteBackend::LoadAll() {
  StoreSnapshot out;
  Stmt s(db_, "SELECT app FROM apps;");
  if (!s.ok()) return SqlError(db_, "loading apps");
  while (s.Step() == SQLITE_ROW) {
    App app;
    if (!app.ParseFromString(s.Text(0))) {
      return absl::DataLossError("an app record in relay.db is corrupt");
    }
    out.apps.push_back(std::move(app));
  }
  Stmt t(db_, "SELECT id, app_id, name, hash, created_ms, expires_ms, last_used_ms FROM tokens;");
  if (!t.ok()) return SqlError(db_, "loading tokens");
  while (t.Step() == SQLITE_ROW) {
    relay::v1::ApiToken token;
    token.set_id(t.Text(0));
    token.set_app_id(t.Text(1));
    token.set_name(t.Text(2));
    token.set_created_unix_ms(t.Int(4));
    token.set_expires_unix_ms(t.Int(5));
    token.set_last_used_unix_ms(t.Int(6));
    out.tokens.emplace_back(t.Text(3), std::move(token));
  }
  Stmt n(db_, "SELECT id, name, node_id, hash, created_ms FROM node_tokens;");
  if (!n.ok()) return SqlError(db_, "loading node credentials");
  while (n.Step() == SQLITE_ROW) {
    relay::v1::NodeToken t;
    t.set_id(n.Text(0));
    t.set_name(n.Text(1));
    t.set_node_id(n.Text(2));
    t.set_created_unix_ms(n.Int(4));
    out.node_tokens.emplace_back(n.Text(3), std::move(t));
  }
  return out;
}

absl::Status SqliteBackend::Persist(const App& app) {
  Stmt s(db_,
         "INSERT INTO apps (id, key, app) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET "
         "key = excluded.key, app = excluded.app;");
  std::string blob;
  app.SerializeToString(&blob);
  if (!s.ok() || s.Bind(1, app.id()).Bind(2, app.key()).BindBlob(3, blob).Step() != SQLITE_DONE) {
    return SqlError(db_, "saving app");
  }
  return absl::OkStatus();
}

// The store checked uniqueness against its cache, which is the whole table (one process).
absl::Status SqliteBackend::CreateApp(const App& app) { return Persist(app); }
absl::Status SqliteBackend::UpdateApp(const App& app) { return Persist(app); }

absl::Status SqliteBackend::DeleteApp(const App& app, const std::vector<std::string>&) {
  return InTransaction(db_, "deleting app", [&] {
    Stmt s(db_, "DELETE FROM apps WHERE id = ?1;");
    Stmt t(db_, "DELETE FROM tokens WHERE app_id = ?1;");
    return s.Bind(1, app.id()).Step() == SQLITE_DONE && t.Bind(1, app.id()).Step() == SQLITE_DONE;
  });
}

absl::Status SqliteBackend::CreateToken(const std::string& hash, const relay::v1::ApiToken& t) {
  Stmt s(db_,
         "INSERT INTO tokens (id, app_id, name, hash, created_ms, expires_ms) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6);");
  if (s.Bind(1, t.id())
          .Bind(2, t.app_id())
          .Bind(3, t.name())
          .Bind(4, hash)
          .Bind(5, t.created_unix_ms())
          .Bind(6, t.expires_unix_ms())
          .Step() != SQLITE_DONE) {
    return SqlError(db_, "saving token");
  }
  return absl::OkStatus();
}

absl::Status SqliteBackend::DeleteToken(const std::string& id) {
  Stmt s(db_, "DELETE FROM tokens WHERE id = ?1;");
  if (s.Bind(1, id).Step() != SQLITE_DONE) return SqlError(db_, "revoking token");
  return absl::OkStatus();
}

absl::Status SqliteBackend::CreateNodeToken(const std::string& hash,
                                            const relay::v1::NodeToken& t) {
  Stmt s(db_,
         "INSERT INTO node_tokens (id, name, node_id, hash, created_ms) "
         "VALUES (?1, ?2, ?3, ?4, ?5);");
  if (s.Bind(1, t.id())
          .Bind(2, t.name())
          .Bind(3, t.node_id())
          .Bind(4, hash)
          .Bind(5, t.created_unix_ms())
          .Step() != SQLITE_DONE) {
    return SqlError(db_, "saving node credential");
  }
  return absl::OkStatus();
}

absl::Status SqliteBackend::DeleteNodeToken(const std::string& id) {
  Stmt s(db_, "DELETE FROM node_tokens WHERE id = ?1;");
  if (s.Bind(1, id).Step() != SQLITE_DONE) return SqlError(db_, "revoking node credential");
  return absl::OkStatus();
}

absl::Status SqliteBackend::WriteBehind(
    const UsageCounts& usage, const absl::flat_hash_map<std::string, int64_t>& last_used) {
  std::string latest_day;
  auto st = InTransaction(db_, "saving daily usage and token use", [&] {
    for (const auto& [key, messages] : usage) {
      Stmt s(db_,
             "INSERT INTO daily_usage (app_id, day, messages) VALUES (?1, ?2, ?3) "
             "ON CONFLICT(app_id, day) DO UPDATE SET messages = "
             "MAX(messages, excluded.messages);");
      if (s.Bind(1, key.second).Bind(2, key.first).Bind(3, static_cast<int64_t>(messages)).Step() !=
          SQLITE_DONE) {
        return false;
      }
      latest_day = std::max(latest_day, key.first);
    }
    for (const auto& [id, ms] : last_used) {
      Stmt u(db_, "UPDATE tokens SET last_used_ms = ?1 WHERE id = ?2;");
      if (u.Bind(1, ms).Bind(2, id).Step() != SQLITE_DONE) return false;
    }
    return true;
  });
  if (!st.ok()) return st;
  if (!latest_day.empty() && latest_day != usage_pruned_day_) {
    // Keep a week of history; older rows serve no quota.
    Stmt d(db_, "DELETE FROM daily_usage WHERE day < date(?1, '-7 days');");
    d.Bind(1, latest_day).Step();
    usage_pruned_day_ = latest_day;
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::flat_hash_map<std::string, uint64_t>> SqliteBackend::LoadUsage(
    const std::string& day) {
  absl::flat_hash_map<std::string, uint64_t> out;
  Stmt s(db_, "SELECT app_id, messages FROM daily_usage WHERE day = ?1;");
  s.Bind(1, day);
  while (s.Step() == SQLITE_ROW) out[s.Text(0)] = static_cast<uint64_t>(s.Int(1));
  return out;
}

absl::StatusOr<UsageCounts> SqliteBackend::LoadAllUsage() {
  UsageCounts out;
  Stmt s(db_, "SELECT day, app_id, messages FROM daily_usage;");
  if (!s.ok()) return SqlError(db_, "loading daily usage");
  while (s.Step() == SQLITE_ROW) out[{s.Text(0), s.Text(1)}] = static_cast<uint64_t>(s.Int(2));
  return out;
}

absl::StatusOr<std::vector<std::string>> SqliteBackend::LoadKnownNodes() {
  std::vector<std::string> out;
  Stmt s(db_, "SELECT node_id FROM known_nodes ORDER BY node_id;");
  while (s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
  return out;
}

absl::Status SqliteBackend::RememberNode(const std::string& node_id, int64_t now_ms) {
  Stmt s(db_, "INSERT OR REPLACE INTO known_nodes (node_id, attached_ms) VALUES (?1, ?2);");
  if (s.Bind(1, node_id).Bind(2, now_ms).Step() != SQLITE_DONE) {
    return SqlError(db_, "recording an attached node");
  }
  return absl::OkStatus();
}

absl::Status SqliteBackend::ForgetNode(const std::string& node_id) {
  Stmt s(db_, "DELETE FROM known_nodes WHERE node_id = ?1;");
  if (s.Bind(1, node_id).Step() != SQLITE_DONE) return SqlError(db_, "forgetting a node");
  return absl::OkStatus();
}

}  // namespace relay::controlplane
