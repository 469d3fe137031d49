#include "controlplane/store_import.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>

#include "common/clock.h"
#include "common/strings.h"
#include "controlplane/etcd_backend.h"
#include "controlplane/sqlite_backend.h"
#include "controlplane/webhook_backend.h"

namespace relay::controlplane {
namespace {

// Apps by id and tokens by id, for comparing two stores.
bool SameAppsAndTokens(const StoreSnapshot& a, const StoreSnapshot& b) {
  using google::protobuf::util::MessageDifferencer;
  if (a.apps.size() != b.apps.size() || a.tokens.size() != b.tokens.size()) return false;
  std::map<std::string, const relay::v1::App*> apps;
  for (const auto& app : b.apps) apps[app.id()] = &app;
  for (const auto& app : a.apps) {
    auto it = apps.find(app.id());
    if (it == apps.end() || !MessageDifferencer::Equals(app, *it->second)) return false;
  }
  std::map<std::string, std::string> tokens;  // id -> hash
  for (const auto& [hash, t] : b.tokens) tokens[t.id()] = hash;
  for (const auto& [hash, t] : a.tokens) {
    auto it = tokens.find(t.id());
    if (it == tokens.end() || it->second != hash) return false;
  }
  return true;
}

// The webhook endpoints and their undelivered events of <dir>/webhooks.db (when there), with
// their ids and row numbers, so the first leader on the prefix delivers what the SQLite control
// plane had not.
absl::Status ImportWebhooks(const std::filesystem::path& dir, etcd::Client& client,
                            const std::string& prefix, ImportSummary& summary) {
  const std::filesystem::path db = (dir.empty() ? "." : dir) / "webhooks.db";
  std::error_code ec;
  if (!std::filesystem::exists(db, ec)) return absl::OkStatus();
  auto from = MakeSqliteWebhookBackend(db.parent_path().string())->Load();
  if (!from.ok()) return from.status();
  auto to = MakeEtcdWebhookBackend(client, EtcdWebhookOptions{.prefix = prefix});
  auto there = to->Load();
  if (!there.ok()) return there.status();
  if (!there->endpoints.empty()) {
    return absl::FailedPreconditionError(
        common::StrCat(to->Describe(), " already has ", there->endpoints.size(),
                       " webhook endpoint(s); refusing to import those of ", db.string()));
  }
  for (const auto& hook : from->endpoints) {
    if (auto st = to->AddEndpoint(hook); !st.ok()) return st;
    ++summary.webhooks;
  }
  std::deque<WebhookOutboxWrite> writes;
  for (const auto& [endpoint, entry] : from->outbox) writes.push_back({entry.row, endpoint, entry});
  if (writes.empty()) return absl::OkStatus();
  WebhookCommitResult result = to->Commit(writes);
  summary.webhook_events = result.written;
  return result.status;
}

}  // namespace

absl::StatusOr<ImportSummary> ImportSqliteStore(const std::string& path, etcd::Client& client,
                                                const std::string& prefix) {
  std::error_code ec;
  std::string file = std::filesystem::is_directory(path, ec) ? path + "/relay.db" : path;
  auto sqlite = SqliteBackend::OpenExisting(file);
  if (!sqlite.ok()) return sqlite.status();
  auto from = (*sqlite)->LoadAll();
  if (!from.ok()) return from.status();
  auto etcd = EtcdBackend::Open(client, prefix);
  if (!etcd.ok()) return etcd.status();
  auto there = (*etcd)->LoadAll();
  if (!there.ok()) return there.status();

  ImportSummary summary;
  if (!there->apps.empty()) {
    if (SameAppsAndTokens(*from, *there)) {
      summary.already_imported = true;
      summary.apps = there->apps.size();
      summary.tokens = there->tokens.size();
      return summary;
    }
    return absl::FailedPreconditionError(common::StrCat(
        "the ", (*etcd)->Describe(), " already has ", there->apps.size(),
        " app(s) that differ from ", file,
        "; refusing to import over them (import into an empty prefix, before any control plane "
        "has started on it, or choose another --etcd-prefix)"));
  }
  // Each record in its own transaction, created only where absent: an interrupted import can
  // be run again into an emptied prefix.
  for (const auto& app : from->apps) {
    if (auto st = (*etcd)->CreateApp(app); !st.ok()) return st;
    ++summary.apps;
  }
  for (const auto& [hash, token] : from->tokens) {
    if (auto st = (*etcd)->CreateToken(hash, token); !st.ok()) return st;
    ++summary.tokens;
  }
  std::map<std::string, bool> node_tokens_there;
  for (const auto& [hash, t] : there->node_tokens) node_tokens_there[t.id()] = true;
  for (const auto& [hash, token] : from->node_tokens) {
    if (node_tokens_there.count(token.id()) > 0) continue;
    if (auto st = (*etcd)->CreateNodeToken(hash, token); !st.ok()) return st;
    ++summary.node_tokens;
  }
  auto usage = (*sqlite)->LoadAllUsage();
  if (!usage.ok()) return usage.status();
  if (auto st = (*etcd)->WriteBehind(*usage, {}); !st.ok()) return st;
  summary.usage_counts = usage->size();
  auto nodes = (*sqlite)->LoadKnownNodes();
  if (!nodes.ok()) return nodes.status();
  const int64_t now = common::Clock::Real().NowUnixMs();
  for (const auto& node : *nodes) {
    if (auto st = (*etcd)->RememberNode(node, now); !st.ok()) return st;
    ++summary.nodes;
  }
  if (auto st = ImportWebhooks(std::filesystem::path(file).parent_path(), client, prefix, summary);
      !st.ok()) {
    return st;
  }
  return summary;
}

}  // namespace relay::controlplane
