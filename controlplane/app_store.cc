#include "controlplane/app_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/strings.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/time.h"
#include "controlplane/node_validation.h"

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

bool ValidCredential(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
  });
}

}  // namespace

App WithDefaults(App app) {
  auto* l = app.mutable_limits();
  if (l->max_event_payload_bytes() == 0) l->set_max_event_payload_bytes(10 * 1024);
  if (l->max_presence_members() == 0) l->set_max_presence_members(100);
  if (l->max_presence_user_info_bytes() == 0) l->set_max_presence_user_info_bytes(1024);
  if (l->max_client_events_per_second() == 0) l->set_max_client_events_per_second(10);
  auto* f = app.mutable_features();
  if (f->cache_ttl_seconds() == 0) f->set_cache_ttl_seconds(1800);
  if (f->user_authentication_timeout_seconds() == 0) f->set_user_authentication_timeout_seconds(30);
  return app;
}

AppStore::AppStore(sqlite3* db) : db_(db) {}

AppStore::~AppStore() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::StatusOr<std::unique_ptr<AppStore>> AppStore::Open(const std::string& data_dir) {
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
      RELAY_LOG(kWarn, "controlplane", "data dir ", data_dir, " is accessible to group or others "
                "(mode ", mode, "); it holds app secrets and the admin token");
    }
  }
  std::string path = data_dir + "/relay.db";
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
  std::unique_ptr<AppStore> store(new AppStore(db));
  if (auto st = store->Migrate(); !st.ok()) return st;
  if (auto st = store->LoadAll(); !st.ok()) return st;
  return store;
}

absl::Status AppStore::Migrate() {
  absl::MutexLock lock(&mu_);
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

absl::Status AppStore::LoadAll() {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT app FROM apps;");
  if (!s.ok()) return SqlError(db_, "loading apps");
  while (s.Step() == SQLITE_ROW) {
    App app;
    if (!app.ParseFromString(s.Text(0))) {
      return absl::DataLossError("an app record in relay.db is corrupt");
    }
    revision_ = std::max(revision_, app.revision());
    key_to_id_[app.key()] = app.id();
    apps_[app.id()] = std::move(app);
  }
  Stmt n(db_, "SELECT id, name, node_id, hash, created_ms FROM node_tokens;");
  if (!n.ok()) return SqlError(db_, "loading node credentials");
  while (n.Step() == SQLITE_ROW) {
    relay::v1::NodeToken t;
    t.set_id(n.Text(0));
    t.set_name(n.Text(1));
    t.set_node_id(n.Text(2));
    t.set_created_unix_ms(n.Int(4));
    node_tokens_[n.Text(3)] = std::move(t);
  }
  return absl::OkStatus();
}

void AppStore::SetListener(Listener listener) { listener_ = std::move(listener); }

void AppStore::Notify(const App& app, bool removed) {
  if (listener_) listener_(app, removed);
}

absl::Status AppStore::Persist(const App& app) {
  Stmt s(db_, "INSERT INTO apps (id, key, app) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET "
              "key = excluded.key, app = excluded.app;");
  std::string blob;
  app.SerializeToString(&blob);
  if (!s.ok() || s.Bind(1, app.id()).Bind(2, app.key()).BindBlob(3, blob).Step() != SQLITE_DONE) {
    return SqlError(db_, "saving app");
  }
  return absl::OkStatus();
}

const App* AppStore::FindLocked(std::string_view id_or_key) const {
  if (auto it = apps_.find(common::AbslView(id_or_key)); it != apps_.end()) return &it->second;
  if (auto it = key_to_id_.find(common::AbslView(id_or_key)); it != key_to_id_.end()) {
    if (auto a = apps_.find(it->second); a != apps_.end()) return &a->second;
  }
  return nullptr;
}

std::vector<App> AppStore::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<App> out;
  out.reserve(apps_.size());
  for (const auto& [id, app] : apps_) out.push_back(app);
  std::sort(out.begin(), out.end(), [](const App& a, const App& b) { return a.id() < b.id(); });
  return out;
}

std::optional<App> AppStore::Find(std::string_view id_or_key) const {
  absl::ReaderMutexLock lock(&mu_);
  const App* app = FindLocked(id_or_key);
  if (app == nullptr) return std::nullopt;
  return *app;
}

std::optional<App> AppStore::FindByKey(std::string_view key) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = key_to_id_.find(common::AbslView(key));
  if (it == key_to_id_.end()) return std::nullopt;
  return apps_.at(it->second);
}

absl::StatusOr<App> AppStore::Create(const relay::v1::CreateAppRequest& request) {
  if (request.name().empty()) return absl::InvalidArgumentError("an app needs a name");
  App app;
  app.set_id(request.id().empty() ? common::StrCat(common::RandomU32() % 900000 + 100000)
                                  : request.id());
  app.set_key(request.key().empty() ? common::RandomHex(10) : request.key());
  app.set_secret(request.secret().empty() ? common::RandomHex(16) : request.secret());
  for (std::string_view v : {app.id(), app.key()}) {
    if (!ValidCredential(v)) {
      return absl::InvalidArgumentError(
          common::StrCat("app id and key must be 1-128 characters of [A-Za-z0-9._-], got '", v,
                       "'"));
    }
  }
  if (app.secret().size() < 8 || app.secret().size() > 256) {
    return absl::InvalidArgumentError("the secret must be 8 to 256 characters");
  }
  app.set_name(request.name());
  app.set_enabled(!request.disabled());
  app.set_plan(request.plan().empty() ? "default" : request.plan());
  *app.mutable_limits() = request.limits();
  *app.mutable_features() = request.features();
  app = WithDefaults(std::move(app));
  {
    absl::MutexLock lock(&mu_);
    if (FindLocked(app.id()) != nullptr || FindLocked(app.key()) != nullptr ||
        key_to_id_.contains(app.id()) || apps_.contains(app.key())) {
      return absl::AlreadyExistsError(
          common::StrCat("an app with id '", app.id(), "' or key '", app.key(), "' exists"));
    }
    app.set_revision(++revision_);
    if (auto st = Persist(app); !st.ok()) return st;
    key_to_id_[app.key()] = app.id();
    apps_[app.id()] = app;
  }
  Notify(app, false);
  return app;
}

absl::StatusOr<App> AppStore::Update(const relay::v1::UpdateAppRequest& request) {
  App updated;
  {
    absl::MutexLock lock(&mu_);
    const App* current = FindLocked(request.app());
    if (current == nullptr) {
      return absl::NotFoundError(common::StrCat("app '", request.app(), "' not found"));
    }
    updated = *current;
    const App& c = request.changes();
    for (const std::string& path : request.update_mask()) {
      if (path == "name") {
        updated.set_name(c.name());
      } else if (path == "enabled") {
        updated.set_enabled(c.enabled());
      } else if (path == "plan") {
        updated.set_plan(c.plan());
      } else if (path == "limits") {
        *updated.mutable_limits() = c.limits();
      } else if (path == "features") {
        *updated.mutable_features() = c.features();
      } else if (path.rfind("limits.", 0) == 0 || path.rfind("features.", 0) == 0) {
        bool is_limits = path[0] == 'l';
        const google::protobuf::Message& src =
            is_limits ? static_cast<const google::protobuf::Message&>(c.limits())
                      : static_cast<const google::protobuf::Message&>(c.features());
        google::protobuf::Message* dst =
            is_limits ? static_cast<google::protobuf::Message*>(updated.mutable_limits())
                      : static_cast<google::protobuf::Message*>(updated.mutable_features());
        const auto* field =
            src.GetDescriptor()->FindFieldByName(path.substr(path.find('.') + 1));
        if (field == nullptr) {
          return absl::InvalidArgumentError(common::StrCat("unknown field '", path, "'"));
        }
        const auto* r = src.GetReflection();
        const auto* w = dst->GetReflection();
        switch (field->cpp_type()) {
          case google::protobuf::FieldDescriptor::CPPTYPE_BOOL:
            w->SetBool(dst, field, r->GetBool(src, field));
            break;
          case google::protobuf::FieldDescriptor::CPPTYPE_UINT32:
            w->SetUInt32(dst, field, r->GetUInt32(src, field));
            break;
          case google::protobuf::FieldDescriptor::CPPTYPE_UINT64:
            w->SetUInt64(dst, field, r->GetUInt64(src, field));
            break;
          default:
            return absl::InvalidArgumentError(common::StrCat("field '", path, "' cannot be set"));
        }
      } else {
        return absl::InvalidArgumentError(common::StrCat(
            "unknown update path '", path,
            "' (use name, enabled, plan, limits, features, limits.<f>, features.<f>)"));
      }
    }
    if (request.update_mask().empty()) {
      return absl::InvalidArgumentError("update_mask names no field to change");
    }
    updated = WithDefaults(std::move(updated));
    updated.set_revision(++revision_);
    if (auto st = Persist(updated); !st.ok()) return st;
    apps_[updated.id()] = updated;
  }
  Notify(updated, false);
  return updated;
}

absl::Status AppStore::Delete(std::string_view id_or_key) {
  App removed;
  {
    absl::MutexLock lock(&mu_);
    const App* app = FindLocked(id_or_key);
    if (app == nullptr) {
      return absl::NotFoundError(common::StrCat("app '", id_or_key, "' not found"));
    }
    removed = *app;
    Stmt s(db_, "DELETE FROM apps WHERE id = ?1;");
    Stmt t(db_, "DELETE FROM tokens WHERE app_id = ?1;");
    if (s.Bind(1, removed.id()).Step() != SQLITE_DONE ||
        t.Bind(1, removed.id()).Step() != SQLITE_DONE) {
      return SqlError(db_, "deleting app");
    }
    key_to_id_.erase(removed.key());
    apps_.erase(removed.id());
  }
  Notify(removed, true);
  return absl::OkStatus();
}

absl::StatusOr<App> AppStore::Change(std::string_view id_or_key,
                                     const std::function<void(App&)>& change) {
  App updated;
  {
    absl::MutexLock lock(&mu_);
    const App* current = FindLocked(id_or_key);
    if (current == nullptr) {
      return absl::NotFoundError(common::StrCat("app '", id_or_key, "' not found"));
    }
    updated = *current;
    change(updated);
    updated.set_revision(++revision_);
    if (auto st = Persist(updated); !st.ok()) return st;
    apps_[updated.id()] = updated;
  }
  Notify(updated, false);
  return updated;
}

absl::StatusOr<App> AppStore::RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds,
                                           std::string new_secret) {
  if (new_secret.empty()) new_secret = common::RandomHex(16);
  if (new_secret.size() < 8 || new_secret.size() > 256) {
    return absl::InvalidArgumentError("the secret must be 8 to 256 characters");
  }
  return Change(id_or_key, [&](App& updated) {
    int64_t now = common::NowUnixMs();
    // Keep only previous secrets that still verify, then add the outgoing one.
    auto* prev = updated.mutable_previous_secrets();
    prev->erase(std::remove_if(prev->begin(), prev->end(),
                               [now](const relay::v1::AppSecret& s) {
                                 return s.expires_unix_ms() != 0 && s.expires_unix_ms() <= now;
                               }),
                prev->end());
    if (overlap_seconds > 0) {
      auto* old = updated.add_previous_secrets();
      old->set_secret(updated.secret());
      old->set_expires_unix_ms(now + static_cast<int64_t>(overlap_seconds) * 1000);
    }
    updated.set_secret(new_secret);
  });
}

absl::StatusOr<App> AppStore::EndSecretOverlap(std::string_view id_or_key) {
  return Change(id_or_key, [](App& updated) { updated.clear_previous_secrets(); });
}

absl::StatusOr<relay::v1::CreateTokenResponse> AppStore::CreateToken(std::string_view app,
                                                                     std::string name,
                                                                     uint64_t expires_in_seconds) {
  absl::MutexLock lock(&mu_);
  const App* a = FindLocked(app);
  if (a == nullptr) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
  relay::v1::CreateTokenResponse out;
  auto* t = out.mutable_token();
  t->set_id(common::StrCat("tok_", common::RandomHex(6)));
  t->set_app_id(a->id());
  t->set_name(std::move(name));
  t->set_created_unix_ms(common::NowUnixMs());
  if (expires_in_seconds > 0) {
    t->set_expires_unix_ms(t->created_unix_ms() + static_cast<int64_t>(expires_in_seconds) * 1000);
  }
  out.set_secret(common::StrCat("rlt_", common::RandomHex(24)));
  Stmt s(db_, "INSERT INTO tokens (id, app_id, name, hash, created_ms, expires_ms) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6);");
  if (s.Bind(1, t->id())
          .Bind(2, t->app_id())
          .Bind(3, t->name())
          .Bind(4, common::Sha256Hex(out.secret()))
          .Bind(5, t->created_unix_ms())
          .Bind(6, t->expires_unix_ms())
          .Step() != SQLITE_DONE) {
    return SqlError(db_, "saving token");
  }
  return out;
}

absl::StatusOr<std::vector<relay::v1::ApiToken>> AppStore::ListTokens(std::string_view app) const {
  absl::ReaderMutexLock lock(&mu_);
  const App* a = FindLocked(app);
  if (a == nullptr) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
  Stmt s(db_, "SELECT id, name, created_ms, expires_ms, last_used_ms FROM tokens "
              "WHERE app_id = ?1 ORDER BY created_ms, id;");
  s.Bind(1, a->id());
  std::vector<relay::v1::ApiToken> out;
  while (s.Step() == SQLITE_ROW) {
    relay::v1::ApiToken t;
    t.set_id(s.Text(0));
    t.set_app_id(a->id());
    t.set_name(s.Text(1));
    t.set_created_unix_ms(s.Int(2));
    t.set_expires_unix_ms(s.Int(3));
    t.set_last_used_unix_ms(s.Int(4));
    out.push_back(std::move(t));
  }
  return out;
}

absl::Status AppStore::RevokeToken(std::string_view token_id) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "DELETE FROM tokens WHERE id = ?1;");
  if (s.Bind(1, token_id).Step() != SQLITE_DONE) return SqlError(db_, "revoking token");
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(common::StrCat("token '", token_id, "' not found"));
  }
  return absl::OkStatus();
}

absl::flat_hash_map<std::string, uint64_t> AppStore::LoadUsage(const std::string& day) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::flat_hash_map<std::string, uint64_t> out;
  Stmt s(db_, "SELECT app_id, messages FROM daily_usage WHERE day = ?1;");
  s.Bind(1, day);
  while (s.Step() == SQLITE_ROW) out[s.Text(0)] = static_cast<uint64_t>(s.Int(1));
  return out;
}

absl::Status AppStore::SaveUsage(const std::string& day, const std::string& app_id,
                                 uint64_t messages) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "INSERT INTO daily_usage (app_id, day, messages) VALUES (?1, ?2, ?3) "
              "ON CONFLICT(app_id, day) DO UPDATE SET messages = "
              "MAX(messages, excluded.messages);");
  if (s.Bind(1, app_id).Bind(2, day).Bind(3, static_cast<int64_t>(messages)).Step() !=
      SQLITE_DONE) {
    return SqlError(db_, "saving daily usage");
  }
  if (day != usage_pruned_day_) {
    // Keep a week of history; older rows serve no quota.
    Stmt d(db_, "DELETE FROM daily_usage WHERE day < date(?1, '-7 days');");
    d.Bind(1, day).Step();
    usage_pruned_day_ = day;
  }
  return absl::OkStatus();
}

std::optional<std::string> AppStore::VerifyToken(std::string_view token) {
  // The hash is the lookup key, so no secret comparison happens in user space.
  std::string hash = common::Sha256Hex(token);
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT id, app_id, expires_ms FROM tokens WHERE hash = ?1;");
  s.Bind(1, hash);
  if (s.Step() != SQLITE_ROW) return std::nullopt;
  int64_t now = common::NowUnixMs();
  int64_t expires = s.Int(2);
  if (expires != 0 && expires <= now) return std::nullopt;
  std::string id = s.Text(0), app_id = s.Text(1);
  Stmt u(db_, "UPDATE tokens SET last_used_ms = ?1 WHERE id = ?2;");
  u.Bind(1, now).Bind(2, id).Step();
  return app_id;
}

absl::StatusOr<relay::v1::CreateNodeTokenResponse> AppStore::CreateNodeToken(
    std::string name, std::string node_id) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError("a node credential needs a name of at most 128 characters");
  }
  if (!node_id.empty() && !IsValidNodeId(node_id, NodeLimits().max_node_id)) {
    return absl::InvalidArgumentError(
        common::StrCat("a node id is 1-128 characters of [A-Za-z0-9._:-], got '", node_id, "'"));
  }
  relay::v1::CreateNodeTokenResponse out;
  auto* t = out.mutable_token();
  t->set_id(common::StrCat("nt_", common::RandomHex(6)));
  t->set_name(std::move(name));
  t->set_node_id(std::move(node_id));
  t->set_created_unix_ms(common::NowUnixMs());
  out.set_secret(common::StrCat("rln_", common::RandomHex(24)));
  std::string hash = common::Sha256Hex(out.secret());
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "INSERT INTO node_tokens (id, name, node_id, hash, created_ms) "
              "VALUES (?1, ?2, ?3, ?4, ?5);");
  if (s.Bind(1, t->id())
          .Bind(2, t->name())
          .Bind(3, t->node_id())
          .Bind(4, hash)
          .Bind(5, t->created_unix_ms())
          .Step() != SQLITE_DONE) {
    return SqlError(db_, "saving node credential");
  }
  node_tokens_[hash] = *t;
  return out;
}

std::vector<relay::v1::NodeToken> AppStore::ListNodeTokens() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::NodeToken> out;
  for (const auto& [hash, t] : node_tokens_) out.push_back(t);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

absl::Status AppStore::RevokeNodeToken(std::string_view token_id) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "DELETE FROM node_tokens WHERE id = ?1;");
  if (s.Bind(1, token_id).Step() != SQLITE_DONE) return SqlError(db_, "revoking node credential");
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(common::StrCat("node credential '", token_id, "' not found"));
  }
  for (auto it = node_tokens_.begin(); it != node_tokens_.end(); ++it) {
    if (it->second.id() == token_id) {
      node_tokens_.erase(it);
      break;
    }
  }
  return absl::OkStatus();
}

std::optional<relay::v1::NodeToken> AppStore::VerifyNodeToken(std::string_view token) const {
  // The hash is the lookup key, so no secret comparison happens in user space; the table is in
  // memory, so an attach never waits for SQLite.
  std::string hash = common::Sha256Hex(token);
  absl::ReaderMutexLock lock(&mu_);
  auto it = node_tokens_.find(hash);
  if (it == node_tokens_.end()) return std::nullopt;
  return it->second;
}

void AppStore::TouchNodeToken(std::string_view token_id) {
  absl::MutexLock lock(&mu_);
  for (auto& [hash, t] : node_tokens_) {
    if (t.id() == token_id) t.set_last_used_unix_ms(common::NowUnixMs());
  }
}

bool AppStore::NodeTokenExists(std::string_view token_id) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [hash, t] : node_tokens_) {
    if (t.id() == token_id) return true;
  }
  return false;
}

}  // namespace relay::controlplane
