#include "controlplane/app_store.h"

#include <algorithm>
#include <utility>

#include "common/crypto.h"
#include "common/log.h"
#include "common/strings.h"
#include "controlplane/node_validation.h"
#include "controlplane/sqlite_backend.h"

namespace relay::controlplane {
namespace {

using relay::v1::App;

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

AppStore::AppStore(std::unique_ptr<StoreBackend> backend, const common::Clock& clock,
                   size_t max_queued_writes)
    : clock_(clock),
      backend_(std::move(backend)),
      writer_(std::make_unique<StoreWriter>(max_queued_writes)) {}

AppStore::~AppStore() {
  // Remote changes stop first: they are applied on the writer.
  backend_->StopFollowing();
  writer_.reset();  // runs what is queued, then joins: backend_ is this thread's from here on
  WriteBehind();    // counts and stamps a full queue refused
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
  auto backend = SqliteBackend::Open(data_dir);
  if (!backend.ok()) return backend.status();
  return Open(std::move(*backend), clock, max_queued_writes);
}

absl::StatusOr<std::unique_ptr<AppStore>> AppStore::Open(std::unique_ptr<StoreBackend> backend,
                                                         const common::Clock& clock,
                                                         size_t max_queued_writes) {
  auto snapshot = backend->LoadAll();
  if (!snapshot.ok()) return snapshot.status();
  std::unique_ptr<AppStore> store(new AppStore(std::move(backend), clock, max_queued_writes));
  store->Replace(std::move(*snapshot));
  StoreWriter* writer = store->writer_.get();
  auto st = store->backend_->Follow(store.get(), [writer](std::function<void()> job) {
    writer->SubmitUnbounded([job = std::move(job)](absl::Status admitted) {
      if (admitted.ok()) job();
    });
  });
  if (!st.ok()) return st;
  return store;
}

std::vector<relay::v1::App> AppStore::Replace(StoreSnapshot snapshot) {
  absl::MutexLock lock(&mu_);
  std::vector<App> gone;
  for (const auto& [id, app] : apps_) gone.push_back(app);
  apps_.clear();
  key_to_id_.clear();
  tokens_.clear();
  // Last-used stamps of node credentials live in memory only: kept across a reload.
  absl::flat_hash_map<std::string, int64_t> node_last_used;
  for (const auto& [hash, t] : node_tokens_) node_last_used[t.id()] = t.last_used_unix_ms();
  node_tokens_.clear();
  for (auto& app : snapshot.apps) {
    revision_ = std::max(revision_, app.revision());
    key_to_id_[app.key()] = app.id();
    apps_[app.id()] = std::move(app);
  }
  for (auto& [hash, token] : snapshot.tokens) tokens_[hash] = std::move(token);
  for (auto& [hash, token] : snapshot.node_tokens) {
    if (auto it = node_last_used.find(token.id()); it != node_last_used.end()) {
      token.set_last_used_unix_ms(it->second);
    }
    node_tokens_[hash] = std::move(token);
  }
  gone.erase(std::remove_if(gone.begin(), gone.end(),
                            [&](const App& a) { return apps_.contains(a.id()); }),
             gone.end());
  return gone;
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
        if (auto st = backend_->CreateApp(app); !st.ok()) return st;
        {
          absl::MutexLock lock(&mu_);
          revision_ = std::max(revision_, app.revision());
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
        std::vector<std::string> token_ids;
        {
          absl::ReaderMutexLock lock(&mu_);
          const App* app = FindLocked(id_or_key);
          if (app == nullptr) {
            return absl::NotFoundError(common::StrCat("app '", id_or_key, "' not found"));
          }
          removed = *app;
          for (const auto& [hash, t] : tokens_) {
            if (t.app_id() == removed.id()) token_ids.push_back(t.id());
          }
        }
        if (auto st = backend_->DeleteApp(removed, token_ids); !st.ok()) return st;
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
  if (auto st = backend_->UpdateApp(updated); !st.ok()) return st;
  {
    absl::MutexLock lock(&mu_);
    revision_ = std::max(revision_, updated.revision());
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
        if (auto st = backend_->CreateToken(hash, *t); !st.ok()) return st;
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
        if (auto st = backend_->DeleteToken(token_id); !st.ok()) return st;
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
          auto stored = backend_->LoadUsage(day);
          if (!stored.ok()) {
            RELAY_LOG(kWarn, "app-store", "cannot read the daily usage of ", day, " from ",
                      backend_->Describe(), ": ", stored.status().message());
            return stored.status();
          }
          out = std::move(*stored);
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
  if (auto st = backend_->WriteBehind(usage, last_used); !st.ok()) {
    RELAY_LOG(kWarn, "controlplane", "cannot persist daily usage and token use: ", st.message());
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
        if (auto st = backend_->CreateNodeToken(hash, t); !st.ok()) return st;
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
        if (auto st = backend_->DeleteNodeToken(token_id); !st.ok()) return st;
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
          auto stored = backend_->LoadKnownNodes();
          if (!stored.ok()) {
            RELAY_LOG(kWarn, "app-store", "cannot read the node registry from ",
                      backend_->Describe(), ": ", stored.status().message());
            return stored.status();
          }
          out = std::move(*stored);
          return absl::OkStatus();
        },
        std::move(d));
  });
  return out;
}

void AppStore::RememberNode(const std::string& node_id) {
  int64_t now = clock_.NowUnixMs();
  OnWriter([this, node_id, now]() -> absl::Status { return backend_->RememberNode(node_id, now); },
           [node_id](absl::Status st) {
             if (!st.ok()) {
               RELAY_LOG(kWarn, "app-store", "cannot record node ", node_id,
                         " in the node registry: ", st.message());
             }
           });
}

void AppStore::ForgetNode(const std::string& node_id) {
  OnWriter([this, node_id]() -> absl::Status { return backend_->ForgetNode(node_id); },
           [node_id](absl::Status st) {
             if (!st.ok()) {
               RELAY_LOG(kWarn, "app-store", "cannot remove node ", node_id,
                         " from the node registry: ", st.message());
             }
           });
}

// --- Changes another replica made (writer thread) ---------------------------------------------

void AppStore::RemoteAppPut(const App& app) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = apps_.find(app.id()); it != apps_.end() && it->second.key() != app.key()) {
      key_to_id_.erase(it->second.key());
    }
    revision_ = std::max(revision_, app.revision());
    key_to_id_[app.key()] = app.id();
    apps_[app.id()] = app;
  }
  Notify(app, false);
}

void AppStore::RemoteAppDeleted(const std::string& id) {
  App removed;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(id);
    if (it == apps_.end()) return;
    removed = std::move(it->second);
    apps_.erase(it);
    key_to_id_.erase(removed.key());
    absl::erase_if(tokens_, [&](const auto& t) { return t.second.app_id() == id; });
  }
  Notify(removed, true);
}

void AppStore::RemoteTokenPut(const std::string& hash, const relay::v1::ApiToken& token) {
  absl::MutexLock lock(&mu_);
  tokens_[hash] = token;
}

void AppStore::RemoteTokenDeleted(const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::erase_if(tokens_, [&](const auto& t) { return t.second.id() == id; });
}

void AppStore::RemoteNodeTokenPut(const std::string& hash, const relay::v1::NodeToken& token) {
  absl::MutexLock lock(&mu_);
  relay::v1::NodeToken& t = node_tokens_[hash];
  int64_t last_used = t.last_used_unix_ms();  // this replica's own attaches (memory only)
  t = token;
  t.set_last_used_unix_ms(std::max(last_used, token.last_used_unix_ms()));
}

void AppStore::RemoteNodeTokenDeleted(const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::erase_if(node_tokens_, [&](const auto& t) { return t.second.id() == id; });
}

void AppStore::RemoteReload(StoreSnapshot snapshot) {
  std::vector<App> gone = Replace(std::move(snapshot));
  // Every app is announced again (data planes ignore a revision they already have), and the
  // ones that went as removed.
  for (const App& app : gone) Notify(app, true);
  for (const App& app : List()) Notify(app, false);
}

}  // namespace relay::controlplane
