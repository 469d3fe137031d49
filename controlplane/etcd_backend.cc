#include "controlplane/etcd_backend.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/time/civil_time.h"
#include "common/log.h"
#include "common/strings.h"
#include "relay/v1/store.pb.h"

namespace relay::controlplane {
namespace {

using relay::v1::App;

constexpr std::string_view kApps = "apps";
constexpr std::string_view kAppKeys = "app-keys";
constexpr std::string_view kTokens = "tokens";
constexpr std::string_view kNodeTokens = "node-tokens";
constexpr std::string_view kUsage = "usage";
constexpr std::string_view kNodes = "nodes";

// `key` exists (any create revision).
etcd::Compare Exists(std::string key) {
  etcd::Compare c;
  c.key = std::move(key);
  c.target = etcd::Compare::Target::kCreateRevision;
  c.op = etcd::Compare::Op::kGreater;
  c.number = 0;
  return c;
}

std::string Serialize(const google::protobuf::Message& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

// The day seven days before `day` (YYYY-MM-DD); empty when `day` is not a date.
std::string WeekBefore(const std::string& day) {
  absl::CivilDay d;
  if (!absl::ParseCivilTime(day, &d)) return "";
  return absl::FormatCivilTime(d - 7);
}

}  // namespace

EtcdBackend::EtcdBackend(etcd::Client& client, std::string prefix)
    : client_(client), prefix_(std::move(prefix)), root_(common::StrCat(prefix_, "/v1/")) {}

EtcdBackend::~EtcdBackend() { StopFollowing(); }

absl::StatusOr<std::unique_ptr<EtcdBackend>> EtcdBackend::Open(etcd::Client& client,
                                                               std::string prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  std::unique_ptr<EtcdBackend> backend(new EtcdBackend(client, std::move(prefix)));
  const std::string schema_key = backend->root_ + "meta/schema";
  etcd::Txn txn;
  txn.compares.push_back(etcd::Compare::Absent(schema_key));
  txn.success.push_back(etcd::TxnOp::Put(schema_key, std::to_string(kSchema)));
  txn.failure.push_back(etcd::TxnOp::Get(schema_key));
  auto result = client.Commit(txn);
  if (!result.ok()) return result.status();
  if (!result->succeeded && !result->gets.empty() && !result->gets[0].kvs.empty()) {
    int64_t stored = 0;
    const std::string& value = result->gets[0].kvs[0].value;
    if (!absl::SimpleAtoi(value, &stored) || stored > kSchema) {
      return absl::FailedPreconditionError(common::StrCat(
          "the etcd prefix ", backend->prefix_, " was written by a newer Relay (schema '", value,
          "', this one knows ", kSchema, ")"));
    }
  }
  return backend;
}

std::string EtcdBackend::Describe() const { return common::StrCat("etcd prefix ", prefix_); }

std::string EtcdBackend::Key(std::string_view kind, std::string_view name) const {
  return common::StrCat(root_, kind, "/", name);
}

bool EtcdBackend::SetFence(Fence guard) {
  absl::MutexLock lock(&fence_mu_);
  fence_ = std::move(guard);
  return true;
}

absl::StatusOr<etcd::TxnResult> EtcdBackend::Commit(const etcd::Txn& txn) {
  Fence fence;
  {
    absl::MutexLock lock(&fence_mu_);
    fence = fence_;
  }
  if (!fence) return client_.Commit(txn);
  auto result = client_.CommitIf(fence(), txn);
  if (!result.ok()) return result.status();
  if (!result->has_value()) {
    return absl::FailedPreconditionError(
        "not the leader (the store's fence no longer holds in etcd); nothing was written");
  }
  return std::move(**result);
}

void EtcdBackend::Saw(const std::string& key, int64_t revision, bool present) {
  Seen& s = seen_[key];
  if (revision >= s.revision) s = Seen{revision, present};
}

absl::StatusOr<StoreSnapshot> EtcdBackend::LoadAll() { return Load(&loaded_revision_); }

absl::StatusOr<StoreSnapshot> EtcdBackend::Load(int64_t* revision) {
  auto range = client_.Range(root_, etcd::RangeOptions{.range_end = etcd::PrefixEnd(root_)});
  if (!range.ok()) return range.status();
  StoreSnapshot out;
  seen_.clear();
  for (const auto& kv : range->kvs) {
    std::string_view rest(kv.key);
    rest.remove_prefix(root_.size());
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) continue;
    std::string_view kind = rest.substr(0, slash);
    if (kind == kApps) {
      App app;
      if (!app.ParseFromString(kv.value)) {
        return absl::DataLossError(common::StrCat("the app record ", kv.key, " is corrupt"));
      }
      out.apps.push_back(std::move(app));
    } else if (kind == kTokens) {
      relay::v1::StoredApiToken t;
      if (!t.ParseFromString(kv.value)) {
        return absl::DataLossError(common::StrCat("the token record ", kv.key, " is corrupt"));
      }
      out.tokens.emplace_back(t.secret_sha256(), t.token());
    } else if (kind == kNodeTokens) {
      relay::v1::StoredNodeToken t;
      if (!t.ParseFromString(kv.value)) {
        return absl::DataLossError(
            common::StrCat("the node credential record ", kv.key, " is corrupt"));
      }
      out.node_tokens.emplace_back(t.secret_sha256(), t.token());
    } else {
      continue;
    }
    Saw(kv.key, kv.mod_revision, true);
  }
  *revision = range->revision;
  return out;
}

absl::Status EtcdBackend::CreateApp(const App& app) {
  etcd::Txn txn;
  // An id or key is unique among both ids and keys (the store finds an app by either).
  for (const auto& name : {app.id(), app.key()}) {
    txn.compares.push_back(etcd::Compare::Absent(Key(kApps, name)));
    txn.compares.push_back(etcd::Compare::Absent(Key(kAppKeys, name)));
  }
  txn.success.push_back(etcd::TxnOp::Put(Key(kApps, app.id()), Serialize(app)));
  txn.success.push_back(etcd::TxnOp::Put(Key(kAppKeys, app.key()), app.id()));
  auto result = Commit(txn);
  if (!result.ok()) return result.status();
  if (!result->succeeded) {
    return absl::AlreadyExistsError(
        common::StrCat("an app with id '", app.id(), "' or key '", app.key(), "' exists"));
  }
  Saw(Key(kApps, app.id()), result->revision, true);
  return absl::OkStatus();
}

absl::Status EtcdBackend::UpdateApp(const App& app) {
  const std::string key = Key(kApps, app.id());
  etcd::Txn txn;
  txn.compares.push_back(etcd::Compare::ModRevision(key, seen_[key].revision));
  txn.success.push_back(etcd::TxnOp::Put(key, Serialize(app)));
  auto result = Commit(txn);
  if (!result.ok()) return result.status();
  if (!result->succeeded) {
    return absl::AbortedError(common::StrCat(
        "app '", app.id(), "' was changed by another control plane at the same time; retry"));
  }
  Saw(key, result->revision, true);
  return absl::OkStatus();
}

absl::Status EtcdBackend::DeleteApp(const App& app, const std::vector<std::string>& token_ids) {
  const std::string key = Key(kApps, app.id());
  etcd::Txn txn;
  txn.compares.push_back(etcd::Compare::ModRevision(key, seen_[key].revision));
  txn.success.push_back(etcd::TxnOp::Delete(key));
  txn.success.push_back(etcd::TxnOp::Delete(Key(kAppKeys, app.key())));
  for (const auto& id : token_ids) txn.success.push_back(etcd::TxnOp::Delete(Key(kTokens, id)));
  auto result = Commit(txn);
  if (!result.ok()) return result.status();
  if (!result->succeeded) {
    return absl::AbortedError(common::StrCat(
        "app '", app.id(), "' was changed by another control plane at the same time; retry"));
  }
  Saw(key, result->revision, false);
  for (const auto& id : token_ids) Saw(Key(kTokens, id), result->revision, false);
  return absl::OkStatus();
}

absl::StatusOr<bool> EtcdBackend::PutIfAbsent(const std::string& key, std::string value,
                                              std::vector<etcd::Compare> also) {
  etcd::Txn txn;
  txn.compares = std::move(also);
  txn.compares.push_back(etcd::Compare::Absent(key));
  txn.success.push_back(etcd::TxnOp::Put(key, std::move(value)));
  auto result = Commit(txn);
  if (!result.ok()) return result.status();
  if (result->succeeded) Saw(key, result->revision, true);
  return result->succeeded;
}

absl::Status EtcdBackend::DeleteKey(const std::string& key) {
  etcd::Txn txn;
  txn.success.push_back(etcd::TxnOp::Delete(key));
  auto result = Commit(txn);
  if (!result.ok()) return result.status();
  Saw(key, result->revision, false);
  return absl::OkStatus();
}

absl::Status EtcdBackend::CreateToken(const std::string& hash, const relay::v1::ApiToken& token) {
  relay::v1::StoredApiToken stored;
  *stored.mutable_token() = token;
  stored.set_secret_sha256(hash);
  // Not for an app another control plane deleted meanwhile.
  auto created = PutIfAbsent(Key(kTokens, token.id()), Serialize(stored),
                             {Exists(Key(kApps, token.app_id()))});
  if (!created.ok()) return created.status();
  if (!*created) return absl::NotFoundError(common::StrCat("app '", token.app_id(), "' not found"));
  return absl::OkStatus();
}

absl::Status EtcdBackend::DeleteToken(const std::string& id) { return DeleteKey(Key(kTokens, id)); }

absl::Status EtcdBackend::CreateNodeToken(const std::string& hash,
                                          const relay::v1::NodeToken& token) {
  relay::v1::StoredNodeToken stored;
  *stored.mutable_token() = token;
  stored.mutable_token()->clear_last_used_unix_ms();  // each replica's own, in memory
  stored.set_secret_sha256(hash);
  auto created = PutIfAbsent(Key(kNodeTokens, token.id()), Serialize(stored));
  if (!created.ok()) return created.status();
  if (!*created) {
    return absl::AlreadyExistsError(common::StrCat("node credential '", token.id(), "' exists"));
  }
  return absl::OkStatus();
}

absl::Status EtcdBackend::DeleteNodeToken(const std::string& id) {
  return DeleteKey(Key(kNodeTokens, id));
}

absl::Status EtcdBackend::WriteBehind(const UsageCounts& usage,
                                      const absl::flat_hash_map<std::string, int64_t>& last_used) {
  absl::Status first_error;
  auto note = [&](absl::Status st) {
    if (!st.ok() && first_error.ok()) first_error = std::move(st);
  };
  std::string latest_day;
  for (const auto& [day_app, messages] : usage) {
    latest_day = std::max(latest_day, day_app.first);
    const std::string key = Key(kUsage, common::StrCat(day_app.first, "/", day_app.second));
    // Read, then write only if still what was read: racing writers keep the largest count.
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto current = client_.Get(key);
      if (!current.ok()) {
        note(current.status());
        break;
      }
      uint64_t stored = 0;
      if (current->has_value() && absl::SimpleAtoi((*current)->value, &stored) &&
          stored >= messages) {
        break;
      }
      etcd::Txn txn;
      txn.compares.push_back(current->has_value()
                                 ? etcd::Compare::ModRevision(key, (*current)->mod_revision)
                                 : etcd::Compare::Absent(key));
      txn.success.push_back(etcd::TxnOp::Put(key, std::to_string(messages)));
      auto result = Commit(txn);
      if (!result.ok()) {
        note(result.status());
        break;
      }
      if (result->succeeded) break;
    }
  }
  for (const auto& [id, ms] : last_used) {
    const std::string key = Key(kTokens, id);
    auto current = client_.Get(key);
    if (!current.ok()) {
      note(current.status());
      continue;
    }
    relay::v1::StoredApiToken stored;
    if (!current->has_value() || !stored.ParseFromString((*current)->value)) continue;  // revoked
    if (stored.token().last_used_unix_ms() >= ms) continue;
    stored.mutable_token()->set_last_used_unix_ms(ms);
    etcd::Txn txn;
    // Never brings back a token revoked meanwhile; a stamp lost to a race is best effort.
    txn.compares.push_back(etcd::Compare::ModRevision(key, (*current)->mod_revision));
    txn.success.push_back(etcd::TxnOp::Put(key, Serialize(stored)));
    auto result = Commit(txn);
    if (!result.ok()) {
      note(result.status());
    } else if (result->succeeded) {
      Saw(key, result->revision, true);
    }
  }
  if (!latest_day.empty() && latest_day != usage_pruned_day_) {
    // Keep a week of history; older counts serve no quota.
    if (std::string cutoff = WeekBefore(latest_day); !cutoff.empty()) {
      etcd::Txn txn;
      txn.success.push_back(
          etcd::TxnOp::Delete(Key(kUsage, ""), common::StrCat(root_, kUsage, "/", cutoff)));
      auto result = Commit(txn);
      if (result.ok()) {
        usage_pruned_day_ = latest_day;
      } else {
        note(result.status());
      }
    }
  }
  return first_error;
}

absl::StatusOr<absl::flat_hash_map<std::string, uint64_t>> EtcdBackend::LoadUsage(
    const std::string& day) {
  const std::string prefix = Key(kUsage, common::StrCat(day, "/"));
  auto range = client_.Range(prefix, etcd::RangeOptions{.range_end = etcd::PrefixEnd(prefix)});
  if (!range.ok()) return range.status();
  absl::flat_hash_map<std::string, uint64_t> out;
  for (const auto& kv : range->kvs) {
    uint64_t n = 0;
    if (absl::SimpleAtoi(kv.value, &n)) out[kv.key.substr(prefix.size())] = n;
  }
  return out;
}

absl::StatusOr<UsageCounts> EtcdBackend::LoadAllUsage() {
  const std::string prefix = Key(kUsage, "");
  auto range = client_.Range(prefix, etcd::RangeOptions{.range_end = etcd::PrefixEnd(prefix)});
  if (!range.ok()) return range.status();
  UsageCounts out;
  for (const auto& kv : range->kvs) {
    std::string rest = kv.key.substr(prefix.size());
    size_t slash = rest.find('/');
    uint64_t n = 0;
    if (slash == std::string::npos || !absl::SimpleAtoi(kv.value, &n)) continue;
    out[{rest.substr(0, slash), rest.substr(slash + 1)}] = n;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> EtcdBackend::LoadKnownNodes() {
  const std::string prefix = Key(kNodes, "");
  auto range =
      client_.Range(prefix, etcd::RangeOptions{.range_end = etcd::PrefixEnd(prefix),
                                               .sort = etcd::RangeOptions::Sort::kKeyAscend});
  if (!range.ok()) return range.status();
  std::vector<std::string> out;
  for (const auto& kv : range->kvs) out.push_back(kv.key.substr(prefix.size()));
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status EtcdBackend::RememberNode(const std::string& node_id, int64_t now_ms) {
  etcd::Txn txn;
  txn.success.push_back(etcd::TxnOp::Put(Key(kNodes, node_id), std::to_string(now_ms)));
  return Commit(txn).status();
}

absl::Status EtcdBackend::ForgetNode(const std::string& node_id) {
  etcd::Txn txn;
  txn.success.push_back(etcd::TxnOp::Delete(Key(kNodes, node_id)));
  return Commit(txn).status();
}

// --- Following other replicas' changes -------------------------------------------------------

absl::Status EtcdBackend::Follow(Sink* sink, Schedule schedule) {
  sink_ = sink;
  schedule_ = std::move(schedule);
  absl::MutexLock lock(&watch_mu_);
  StartWatch(loaded_revision_ + 1);
  return absl::OkStatus();
}

void EtcdBackend::StartWatch(int64_t from_revision) {
  if (stopped_) return;
  watch_ = std::make_unique<etcd::Watch>(
      client_,
      etcd::WatchOptions{
          .key = root_, .range_end = etcd::PrefixEnd(root_), .start_revision = from_revision},
      [this](const std::vector<etcd::WatchEvent>& events) {
        schedule_([this, events] { Apply(events); });
      },
      [this](absl::Status why) {
        RELAY_LOG(kWarn, "app-store", "the watch on ", Describe(), " ended (", why.message(),
                  "); reading everything again");
        schedule_([this] { Reload(); });
      });
}

void EtcdBackend::StopFollowing() {
  std::unique_ptr<etcd::Watch> watch;
  bool first;
  {
    absl::MutexLock lock(&watch_mu_);
    first = !stopped_;
    stopped_ = true;
    watch = std::move(watch_);
  }
  if (first) stopping_.Notify();
  watch.reset();  // joins its thread: no callback after this
}

void EtcdBackend::Reload() {
  std::unique_ptr<etcd::Watch> old;
  {
    absl::MutexLock lock(&watch_mu_);
    if (stopped_) return;
    old = std::move(watch_);
  }
  old.reset();  // it ended; its thread is done once this returns
  int64_t revision = 0;
  while (true) {
    auto snapshot = Load(&revision);
    if (snapshot.ok()) {
      loaded_revision_ = revision;
      reloads_.fetch_add(1);
      sink_->RemoteReload(std::move(*snapshot));
      break;
    }
    RELAY_LOG(kWarn, "app-store", "cannot read ", Describe(),
              " again: ", snapshot.status().message(), "; retrying");
    // Bounded by the client's call timeout per attempt; ends when the store closes.
    if (stopping_.WaitForNotificationWithTimeout(absl::Milliseconds(500))) return;
  }
  absl::MutexLock lock(&watch_mu_);
  StartWatch(loaded_revision_ + 1);
}

void EtcdBackend::Apply(const std::vector<etcd::WatchEvent>& events) {
  for (const auto& e : events) {
    std::string_view rest(e.kv.key);
    if (rest.substr(0, root_.size()) != root_) continue;
    rest.remove_prefix(root_.size());
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) continue;
    std::string_view kind = rest.substr(0, slash);
    std::string name(rest.substr(slash + 1));
    if (kind != kApps && kind != kTokens && kind != kNodeTokens) continue;
    const int64_t revision = e.kv.mod_revision;
    Seen& seen = seen_[e.kv.key];
    if (revision <= seen.revision) continue;  // written (or already applied) by this process
    const bool was_present = seen.present;
    const bool put = e.type == etcd::WatchEvent::Type::kPut;
    seen = Seen{revision, put};
    if (!put) {
      if (!was_present) continue;
      if (kind == kApps) {
        sink_->RemoteAppDeleted(name);
      } else if (kind == kTokens) {
        sink_->RemoteTokenDeleted(name);
      } else {
        sink_->RemoteNodeTokenDeleted(name);
      }
      continue;
    }
    if (kind == kApps) {
      App app;
      if (!app.ParseFromString(e.kv.value)) {
        RELAY_LOG(kWarn, "app-store", "ignoring a corrupt app record at ", e.kv.key);
        continue;
      }
      sink_->RemoteAppPut(app);
    } else if (kind == kTokens) {
      relay::v1::StoredApiToken t;
      if (!t.ParseFromString(e.kv.value)) continue;
      sink_->RemoteTokenPut(t.secret_sha256(), t.token());
    } else {
      relay::v1::StoredNodeToken t;
      if (!t.ParseFromString(e.kv.value)) continue;
      sink_->RemoteNodeTokenPut(t.secret_sha256(), t.token());
    }
  }
}

}  // namespace relay::controlplane
