#include "controlplane/app_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "common/crypto.h"
#include "common/log.h"
#include "common/strings.h"
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

bool ValidCredential(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

}  // namespace

absl::Status AwaitStatus(const std::function<void(std::function<void(absl::Status)>)>& start) {
  absl::Notification done;
  absl::Status result;
  start([&](absl::Status st) {
    result = std::move(st);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

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

// --- StoreWriter -----------------------------------------------------------------------------

StoreWriter::StoreWriter(size_t capacity) : capacity_(capacity) {
  thread_ = std::thread([this] { Run(); });
}

StoreWriter::~StoreWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void StoreWriter::Submit(Job job) { Enqueue(std::move(job), true); }

void StoreWriter::Enqueue(Job job, bool bounded) {
  if (OnWriterThread()) {
    job(absl::OkStatus());  // part of the job running now
    return;
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("the store is shutting down");
    } else if (bounded && queue_.size() >= capacity_) {
      refused = absl::UnavailableError(common::StrCat("the store's write queue is full (",
                                                      capacity_, " writes waiting); retry later"));
    } else {
      queue_.push_back(std::move(job));
      return;
    }
  }
  job(refused);
}

void StoreWriter::Flush() {
  absl::Notification done;
  Enqueue([&done](absl::Status) { done.Notify(); }, false);
  done.WaitForNotification();
}

size_t StoreWriter::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void StoreWriter::Run() {
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, and everything queued has run
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job(absl::OkStatus());
  }
}

// --- AppStore ------------------------------------------------------------------------------

AppStore::AppStore(sqlite3* db, const common::Clock& clock, size_t max_queued_writes)
    : clock_(clock), db_(db), writer_(std::make_unique<StoreWriter>(max_queued_writes)) {}

AppStore::~AppStore() {
  writer_.reset();  // runs what is queued, then joins: db_ is this thread's from here on
  WriteBehind();    // counts and stamps a full queue refused
  sqlite3_close(db_);
}

template <typename T>
void AppStore::OnWriter(std::function<absl::StatusOr<T>()> body, Done<T> done) const {
  writer_->Submit([body = std::move(body), done = std::move(done)](absl::Status admitted) {
    if (!admitted.ok()) {
      done(std::move(admitted));
      return;
    }
    done(body());
  });
}

void AppStore::OnWriter(std::function<absl::Status()> body, DoneStatus done) const {
  writer_->Submit([body = std::move(body), done = std::move(done)](absl::Status admitted) {
    done(admitted.ok() ? body() : admitted);
  });
}

absl::StatusOr<std::unique_ptr<AppStore>> AppStore::Open(const std::string& data_dir,
                                                         const common::Clock& clock,
                                                         size_t max_queued_writes) {
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
  std::unique_ptr<AppStore> store(new AppStore(db, clock, max_queued_writes));
  if (auto st = store->Migrate(); !st.ok()) return st;
  if (auto st = store->LoadAll(); !st.ok()) return st;
  return store;
}

absl::Status AppStore::Migrate() {
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
    tokens_[t.Text(3)] = std::move(token);
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

void AppStore::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

void AppStore::Notify(const App& app, bool removed) {
  Listener listener;
  {
    absl::ReaderMutexLock lock(&mu_);
    listener = listener_;
  }
  if (listener) listener(app, removed);
}

absl::Status AppStore::Persist(const App& app) {
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

void AppStore::Create(const relay::v1::CreateAppRequest& request, Done<App> done) {
  if (request.name().empty()) return done(absl::InvalidArgumentError("an app needs a name"));
  App app;
  app.set_id(request.id().empty() ? common::StrCat(common::RandomU32() % 900000 + 100000)
                                  : request.id());
  app.set_key(request.key().empty() ? common::RandomHex(10) : request.key());
  app.set_secret(request.secret().empty() ? common::RandomHex(16) : request.secret());
  for (std::string_view v : {app.id(), app.key()}) {
    if (!ValidCredential(v)) {
      return done(absl::InvalidArgumentError(common::StrCat(
          "app id and key must be 1-128 characters of [A-Za-z0-9._-], got '", v, "'")));
    }
  }
  if (app.secret().size() < 8 || app.secret().size() > 256) {
    return done(absl::InvalidArgumentError("the secret must be 8 to 256 characters"));
  }
  app.set_name(request.name());
  app.set_enabled(!request.disabled());
  app.set_plan(request.plan().empty() ? "default" : request.plan());
  *app.mutable_limits() = request.limits();
  *app.mutable_features() = request.features();
  app = WithDefaults(std::move(app));
  // Decided on the writer, which alone changes apps_: nothing can slip in between the check and
  // the commit, and the lock is not held while SQLite writes.
  OnWriter<App>(
      [this, app = std::move(app)]() mutable -> absl::StatusOr<App> {
        {
          absl::ReaderMutexLock lock(&mu_);
          if (FindLocked(app.id()) != nullptr || FindLocked(app.key()) != nullptr ||
              key_to_id_.contains(app.id()) || apps_.contains(app.key())) {
            return absl::AlreadyExistsError(
                common::StrCat("an app with id '", app.id(), "' or key '", app.key(), "' exists"));
          }
          app.set_revision(revision_ + 1);
        }
        if (auto st = Persist(app); !st.ok()) return st;
        {
          absl::MutexLock lock(&mu_);
          revision_ = app.revision();
          key_to_id_[app.key()] = app.id();
          apps_[app.id()] = app;
        }
        Notify(app, false);
        return app;
      },
      std::move(done));
}

absl::StatusOr<App> AppStore::Create(const relay::v1::CreateAppRequest& request) {
  return AwaitResult<App>([&](Done<App> d) { Create(request, std::move(d)); });
}

namespace {

// Applies an UpdateAppRequest's mask to `updated`.
absl::Status ApplyMask(const relay::v1::UpdateAppRequest& request, App& updated) {
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
      const auto* field = src.GetDescriptor()->FindFieldByName(path.substr(path.find('.') + 1));
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
  return absl::OkStatus();
}

}  // namespace

void AppStore::Update(const relay::v1::UpdateAppRequest& request, Done<App> done) {
  OnWriter<App>(
      [this, request]() {
        return ChangeOnWriter(request.app(),
                              [&](App& updated) { return ApplyMask(request, updated); });
      },
      std::move(done));
}

absl::StatusOr<App> AppStore::Update(const relay::v1::UpdateAppRequest& request) {
  return AwaitResult<App>([&](Done<App> d) { Update(request, std::move(d)); });
}

void AppStore::Delete(std::string_view id_or_key, DoneStatus done) {
  OnWriter(
      [this, id_or_key = std::string(id_or_key)]() -> absl::Status {
        App removed;
        {
          absl::ReaderMutexLock lock(&mu_);
          const App* app = FindLocked(id_or_key);
          if (app == nullptr) {
            return absl::NotFoundError(common::StrCat("app '", id_or_key, "' not found"));
          }
          removed = *app;
        }
        auto st = InTransaction(db_, "deleting app", [&] {
          Stmt s(db_, "DELETE FROM apps WHERE id = ?1;");
          Stmt t(db_, "DELETE FROM tokens WHERE app_id = ?1;");
          return s.Bind(1, removed.id()).Step() == SQLITE_DONE &&
                 t.Bind(1, removed.id()).Step() == SQLITE_DONE;
        });
        if (!st.ok()) return st;
        {
          absl::MutexLock lock(&mu_);
          key_to_id_.erase(removed.key());
          apps_.erase(removed.id());
          absl::erase_if(tokens_, [&](const auto& t) { return t.second.app_id() == removed.id(); });
        }
        Notify(removed, true);
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status AppStore::Delete(std::string_view id_or_key) {
  return AwaitStatus([&](DoneStatus d) { Delete(id_or_key, std::move(d)); });
}

absl::StatusOr<App> AppStore::ChangeOnWriter(std::string_view id_or_key,
                                             const std::function<absl::Status(App&)>& change) {
  App updated;
  {
    absl::ReaderMutexLock lock(&mu_);
    const App* current = FindLocked(id_or_key);
    if (current == nullptr) {
      return absl::NotFoundError(common::StrCat("app '", id_or_key, "' not found"));
    }
    updated = *current;
    updated.set_revision(revision_ + 1);
  }
  if (auto st = change(updated); !st.ok()) return st;
  if (auto st = Persist(updated); !st.ok()) return st;
  {
    absl::MutexLock lock(&mu_);
    revision_ = updated.revision();
    apps_[updated.id()] = updated;
  }
  Notify(updated, false);
  return updated;
}

void AppStore::RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds,
                            std::string new_secret, Done<App> done) {
  if (new_secret.empty()) new_secret = common::RandomHex(16);
  if (new_secret.size() < 8 || new_secret.size() > 256) {
    return done(absl::InvalidArgumentError("the secret must be 8 to 256 characters"));
  }
  OnWriter<App>(
      [this, id_or_key = std::string(id_or_key), overlap_seconds,
       new_secret = std::move(new_secret)]() {
        return ChangeOnWriter(id_or_key, [&](App& updated) {
          int64_t now = clock_.NowUnixMs();
          // Keep only previous secrets that still verify, then add the outgoing one.
          auto* prev = updated.mutable_previous_secrets();
          prev->erase(std::remove_if(prev->begin(), prev->end(),
                                     [now](const relay::v1::AppSecret& s) {
                                       return s.expires_unix_ms() != 0 &&
                                              s.expires_unix_ms() <= now;
                                     }),
                      prev->end());
          if (overlap_seconds > 0) {
            auto* old = updated.add_previous_secrets();
            old->set_secret(updated.secret());
            old->set_expires_unix_ms(now + static_cast<int64_t>(overlap_seconds) * 1000);
          }
          updated.set_secret(new_secret);
          return absl::OkStatus();
        });
      },
      std::move(done));
}

absl::StatusOr<App> AppStore::RotateSecret(std::string_view id_or_key, uint32_t overlap_seconds,
                                           std::string new_secret) {
  return AwaitResult<App>([&](Done<App> d) {
    RotateSecret(id_or_key, overlap_seconds, std::move(new_secret), std::move(d));
  });
}

void AppStore::EndSecretOverlap(std::string_view id_or_key, Done<App> done) {
  OnWriter<App>(
      [this, id_or_key = std::string(id_or_key)]() {
        return ChangeOnWriter(id_or_key, [](App& updated) {
          updated.clear_previous_secrets();
          return absl::OkStatus();
        });
      },
      std::move(done));
}

absl::StatusOr<App> AppStore::EndSecretOverlap(std::string_view id_or_key) {
  return AwaitResult<App>([&](Done<App> d) { EndSecretOverlap(id_or_key, std::move(d)); });
}

void AppStore::CreateToken(std::string_view app, std::string name, uint64_t expires_in_seconds,
                           Done<relay::v1::CreateTokenResponse> done) {
  OnWriter<relay::v1::CreateTokenResponse>(
      [this, app = std::string(app), name = std::move(name),
       expires_in_seconds]() mutable -> absl::StatusOr<relay::v1::CreateTokenResponse> {
        relay::v1::CreateTokenResponse out;
        auto* t = out.mutable_token();
        {
          absl::ReaderMutexLock lock(&mu_);
          const App* a = FindLocked(app);
          if (a == nullptr) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
          t->set_app_id(a->id());
        }
        t->set_id(common::StrCat("tok_", common::RandomHex(6)));
        t->set_name(std::move(name));
        t->set_created_unix_ms(clock_.NowUnixMs());
        if (expires_in_seconds > 0) {
          t->set_expires_unix_ms(t->created_unix_ms() +
                                 static_cast<int64_t>(expires_in_seconds) * 1000);
        }
        out.set_secret(common::StrCat("rlt_", common::RandomHex(24)));
        std::string hash = common::Sha256Hex(out.secret());
        Stmt s(db_,
               "INSERT INTO tokens (id, app_id, name, hash, created_ms, expires_ms) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6);");
        if (s.Bind(1, t->id())
                .Bind(2, t->app_id())
                .Bind(3, t->name())
                .Bind(4, hash)
                .Bind(5, t->created_unix_ms())
                .Bind(6, t->expires_unix_ms())
                .Step() != SQLITE_DONE) {
          return SqlError(db_, "saving token");
        }
        absl::MutexLock lock(&mu_);
        tokens_[hash] = *t;
        return out;
      },
      std::move(done));
}

absl::StatusOr<relay::v1::CreateTokenResponse> AppStore::CreateToken(std::string_view app,
                                                                     std::string name,
                                                                     uint64_t expires_in_seconds) {
  return AwaitResult<relay::v1::CreateTokenResponse>([&](Done<relay::v1::CreateTokenResponse> d) {
    CreateToken(app, std::move(name), expires_in_seconds, std::move(d));
  });
}

absl::StatusOr<std::vector<relay::v1::ApiToken>> AppStore::ListTokens(std::string_view app) const {
  absl::ReaderMutexLock lock(&mu_);
  const App* a = FindLocked(app);
  if (a == nullptr) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
  std::vector<relay::v1::ApiToken> out;
  for (const auto& [hash, t] : tokens_) {
    if (t.app_id() == a->id()) out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) {
    return std::make_pair(x.created_unix_ms(), x.id()) <
           std::make_pair(y.created_unix_ms(), y.id());
  });
  return out;
}

void AppStore::RevokeToken(std::string_view token_id, DoneStatus done) {
  OnWriter(
      [this, token_id = std::string(token_id)]() -> absl::Status {
        std::string hash;
        {
          absl::ReaderMutexLock lock(&mu_);
          for (const auto& [h, t] : tokens_) {
            if (t.id() == token_id) hash = h;
          }
        }
        if (hash.empty()) {
          return absl::NotFoundError(common::StrCat("token '", token_id, "' not found"));
        }
        Stmt s(db_, "DELETE FROM tokens WHERE id = ?1;");
        if (s.Bind(1, token_id).Step() != SQLITE_DONE) return SqlError(db_, "revoking token");
        absl::MutexLock lock(&mu_);
        tokens_.erase(hash);
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status AppStore::RevokeToken(std::string_view token_id) {
  return AwaitStatus([&](DoneStatus d) { RevokeToken(token_id, std::move(d)); });
}

absl::flat_hash_map<std::string, uint64_t> AppStore::LoadUsage(const std::string& day) const {
  absl::flat_hash_map<std::string, uint64_t> out;
  // Read on the writer, after every write queued before; counts still waiting to be written
  // are at least the stored ones.
  (void)AwaitStatus([&](DoneStatus d) {
    OnWriter(
        [&]() {
          Stmt s(db_, "SELECT app_id, messages FROM daily_usage WHERE day = ?1;");
          s.Bind(1, day);
          while (s.Step() == SQLITE_ROW) out[s.Text(0)] = static_cast<uint64_t>(s.Int(1));
          return absl::OkStatus();
        },
        std::move(d));
  });
  absl::MutexLock lock(&pending_mu_);
  for (const auto& [key, messages] : pending_usage_) {
    if (key.first == day) out[key.second] = std::max(out[key.second], messages);
  }
  return out;
}

absl::Status AppStore::SaveUsage(const std::string& day, const std::string& app_id,
                                 uint64_t messages) {
  {
    absl::MutexLock lock(&pending_mu_);
    uint64_t& pending = pending_usage_[{day, app_id}];
    pending = std::max(pending, messages);
  }
  if (!ScheduleWriteBehind()) {
    return absl::UnavailableError(
        "the store's write queue is full; the count is kept and written with the next one");
  }
  return absl::OkStatus();
}

bool AppStore::ScheduleWriteBehind() {
  {
    absl::MutexLock lock(&pending_mu_);
    if (write_behind_scheduled_) return true;
    write_behind_scheduled_ = true;
  }
  bool admitted = true;
  writer_->Submit([this, &admitted](absl::Status st) {
    if (st.ok()) {
      WriteBehind();
      return;
    }
    admitted = false;  // refusals run on the calling thread, before Submit returns
    absl::MutexLock lock(&pending_mu_);
    write_behind_scheduled_ = false;
  });
  return admitted;
}

void AppStore::WriteBehind() {
  std::map<std::pair<std::string, std::string>, uint64_t> usage;
  absl::flat_hash_map<std::string, int64_t> last_used;
  {
    absl::MutexLock lock(&pending_mu_);
    usage.swap(pending_usage_);
    last_used.swap(pending_last_used_);
    write_behind_scheduled_ = false;  // what comes from now on needs another run
  }
  if (usage.empty() && last_used.empty()) return;
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
  if (!st.ok()) {
    RELAY_LOG(kWarn, "controlplane", "cannot persist daily usage and token use: ", st.message());
    return;
  }
  if (!latest_day.empty() && latest_day != usage_pruned_day_) {
    // Keep a week of history; older rows serve no quota.
    Stmt d(db_, "DELETE FROM daily_usage WHERE day < date(?1, '-7 days');");
    d.Bind(1, latest_day).Step();
    usage_pruned_day_ = latest_day;
  }
}

std::optional<std::string> AppStore::VerifyToken(std::string_view token) {
  // The hash is the lookup key, so no secret comparison happens in user space.
  std::string hash = common::Sha256Hex(token);
  int64_t now = clock_.NowUnixMs();
  std::string id, app_id;
  {
    absl::MutexLock lock(&mu_);
    auto it = tokens_.find(hash);
    if (it == tokens_.end()) return std::nullopt;
    int64_t expires = it->second.expires_unix_ms();
    if (expires != 0 && expires <= now) return std::nullopt;
    it->second.set_last_used_unix_ms(now);
    id = it->second.id();
    app_id = it->second.app_id();
  }
  {
    absl::MutexLock lock(&pending_mu_);
    pending_last_used_[id] = now;
  }
  ScheduleWriteBehind();  // a refused stamp is written with the next one
  return app_id;
}

void AppStore::CreateNodeToken(std::string name, std::string node_id,
                               Done<relay::v1::CreateNodeTokenResponse> done) {
  if (name.empty() || name.size() > 128) {
    return done(
        absl::InvalidArgumentError("a node credential needs a name of at most 128 characters"));
  }
  if (!node_id.empty() && !IsValidNodeId(node_id, NodeLimits().max_node_id)) {
    return done(absl::InvalidArgumentError(
        common::StrCat("a node id is 1-128 characters of [A-Za-z0-9._:-], got '", node_id, "'")));
  }
  relay::v1::CreateNodeTokenResponse out;
  auto* t = out.mutable_token();
  t->set_id(common::StrCat("nt_", common::RandomHex(6)));
  t->set_name(std::move(name));
  t->set_node_id(std::move(node_id));
  t->set_created_unix_ms(clock_.NowUnixMs());
  out.set_secret(common::StrCat("rln_", common::RandomHex(24)));
  OnWriter<relay::v1::CreateNodeTokenResponse>(
      [this, out = std::move(out)]() -> absl::StatusOr<relay::v1::CreateNodeTokenResponse> {
        const auto& t = out.token();
        std::string hash = common::Sha256Hex(out.secret());
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
        absl::MutexLock lock(&mu_);
        node_tokens_[hash] = t;
        return out;
      },
      std::move(done));
}

absl::StatusOr<relay::v1::CreateNodeTokenResponse> AppStore::CreateNodeToken(std::string name,
                                                                             std::string node_id) {
  return AwaitResult<relay::v1::CreateNodeTokenResponse>(
      [&](Done<relay::v1::CreateNodeTokenResponse> d) {
        CreateNodeToken(std::move(name), std::move(node_id), std::move(d));
      });
}

std::vector<relay::v1::NodeToken> AppStore::ListNodeTokens() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::NodeToken> out;
  for (const auto& [hash, t] : node_tokens_) out.push_back(t);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

void AppStore::RevokeNodeToken(std::string_view token_id, DoneStatus done) {
  OnWriter(
      [this, token_id = std::string(token_id)]() -> absl::Status {
        if (!NodeTokenExists(token_id)) {
          return absl::NotFoundError(common::StrCat("node credential '", token_id, "' not found"));
        }
        Stmt s(db_, "DELETE FROM node_tokens WHERE id = ?1;");
        if (s.Bind(1, token_id).Step() != SQLITE_DONE) {
          return SqlError(db_, "revoking node credential");
        }
        absl::MutexLock lock(&mu_);
        absl::erase_if(node_tokens_, [&](const auto& t) { return t.second.id() == token_id; });
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status AppStore::RevokeNodeToken(std::string_view token_id) {
  return AwaitStatus([&](DoneStatus d) { RevokeNodeToken(token_id, std::move(d)); });
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
  int64_t now = clock_.NowUnixMs();
  absl::MutexLock lock(&mu_);
  for (auto& [hash, t] : node_tokens_) {
    if (t.id() == token_id) t.set_last_used_unix_ms(now);
  }
}

bool AppStore::NodeTokenExists(std::string_view token_id) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [hash, t] : node_tokens_) {
    if (t.id() == token_id) return true;
  }
  return false;
}

std::vector<std::string> AppStore::LoadKnownNodes() const {
  std::vector<std::string> out;
  (void)AwaitStatus([&](DoneStatus d) {
    OnWriter(
        [&]() {
          Stmt s(db_, "SELECT node_id FROM known_nodes ORDER BY node_id;");
          while (s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
          return absl::OkStatus();
        },
        std::move(d));
  });
  return out;
}

void AppStore::RememberNode(const std::string& node_id) {
  int64_t now = clock_.NowUnixMs();
  OnWriter(
      [this, node_id, now]() -> absl::Status {
        Stmt s(db_, "INSERT OR REPLACE INTO known_nodes (node_id, attached_ms) VALUES (?1, ?2);");
        if (s.Bind(1, node_id).Bind(2, now).Step() != SQLITE_DONE) {
          return SqlError(db_, "recording an attached node");
        }
        return absl::OkStatus();
      },
      [node_id](absl::Status st) {
        if (!st.ok()) {
          RELAY_LOG(kWarn, "app-store", "cannot record node ", node_id,
                    " in the node registry: ", st.message());
        }
      });
}

void AppStore::ForgetNode(const std::string& node_id) {
  OnWriter(
      [this, node_id]() -> absl::Status {
        Stmt s(db_, "DELETE FROM known_nodes WHERE node_id = ?1;");
        if (s.Bind(1, node_id).Step() != SQLITE_DONE) {
          return SqlError(db_, "forgetting a node");
        }
        return absl::OkStatus();
      },
      [node_id](absl::Status st) {
        if (!st.ok()) {
          RELAY_LOG(kWarn, "app-store", "cannot remove node ", node_id,
                    " from the node registry: ", st.message());
        }
      });
}

}  // namespace relay::controlplane
