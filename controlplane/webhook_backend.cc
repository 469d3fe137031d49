#include "controlplane/webhook_backend.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "absl/strings/numbers.h"
#include "common/log.h"
#include "common/strings.h"
#include "controlplane/sqlite_file.h"
#include "relay/v1/webhook_outbox.pb.h"

namespace relay::controlplane {
namespace {

// ---- SQLite -------------------------------------------------------------------------------

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, app_id TEXT NOT NULL,"
    " config BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox (row INTEGER PRIMARY KEY AUTOINCREMENT,"
    " endpoint TEXT NOT NULL, name TEXT NOT NULL, channel TEXT NOT NULL, user_id TEXT NOT NULL,"
    " json TEXT NOT NULL, created_ms INTEGER NOT NULL, not_before_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS outbox_endpoint ON outbox(endpoint, row);";

class SqliteBackend : public WebhookBackend {
 public:
  explicit SqliteBackend(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  ~SqliteBackend() override {
    if (db_ != nullptr) sqlite3_close(db_);
  }

  std::string Describe() const override { return "webhooks.db"; }

  absl::StatusOr<WebhookStoreContents> Load() override {
    auto db = OpenSqliteFile(data_dir_ + "/webhooks.db");
    if (!db.ok()) return db.status();
    db_ = *db;
    if (sqlite3_exec(db_, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return absl::InternalError(common::StrCat("webhooks.db: ", sqlite3_errmsg(db_)));
    }
    WebhookStoreContents out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT config FROM webhooks;", -1, &st, nullptr);
    while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
      relay::v1::Webhook hook;
      hook.ParseFromArray(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
      out.endpoints.push_back(std::move(hook));
    }
    sqlite3_finalize(st);
    st = nullptr;
    sqlite3_prepare_v2(db_,
                       "SELECT row, endpoint, name, channel, user_id, json, created_ms, "
                       "not_before_ms FROM outbox ORDER BY row;",
                       -1, &st, nullptr);
    if (st == nullptr) {
      return absl::InternalError(common::StrCat("webhooks.db: ", sqlite3_errmsg(db_)));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto text = [st](int c) {
        const auto* p = sqlite3_column_text(st, c);
        return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
      };
      out.outbox.emplace_back(
          text(1),
          WebhookOutboxEntry{sqlite3_column_int64(st, 0), text(2), text(3), text(4), text(5),
                             sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 7)});
    }
    sqlite3_finalize(st);
    // Rows are numbered by Webhooks (the writer inserts them later, in this order), never
    // reusing one: AUTOINCREMENT's sequence remembers deleted ones.
    st = nullptr;
    sqlite3_prepare_v2(
        db_,
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'),"
        " 0), COALESCE((SELECT MAX(row) FROM outbox), 0));",
        -1, &st, nullptr);
    if (st != nullptr && sqlite3_step(st) == SQLITE_ROW) out.max_row = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return out;
  }

  absl::Status AddEndpoint(const relay::v1::Webhook& hook) override {
    std::string blob;
    hook.SerializeToString(&blob);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "INSERT INTO webhooks (id, app_id, config) VALUES (?1, ?2, ?3);", -1,
                       &st, nullptr);
    sqlite3_bind_text(st, 1, hook.id().c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, hook.app_id().c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return absl::InternalError("cannot save the webhook");
    return absl::OkStatus();
  }

  absl::Status RemoveEndpoint(const std::string& webhook_id) override {
    for (const char* sql :
         {"DELETE FROM webhooks WHERE id = ?1;", "DELETE FROM outbox WHERE endpoint = ?1;"}) {
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(db_, sql, -1, &st, nullptr);
      sqlite3_bind_text(st, 1, webhook_id.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_step(st);
      sqlite3_finalize(st);
    }
    return absl::OkStatus();
  }

  WebhookCommitResult Commit(const std::deque<WebhookOutboxWrite>& writes) override {
    sqlite3_exec(db_, "BEGIN;", nullptr, nullptr, nullptr);
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db_,
                       "INSERT INTO outbox (row, endpoint, name, channel, user_id, json,"
                       " created_ms, not_before_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8);",
                       -1, &ins, nullptr);
    sqlite3_stmt* del = nullptr;
    sqlite3_prepare_v2(db_, "DELETE FROM outbox WHERE row = ?1;", -1, &del, nullptr);
    for (const auto& w : writes) {
      sqlite3_stmt* st = w.entry ? ins : del;
      sqlite3_bind_int64(st, 1, w.row);
      if (w.entry) {
        const WebhookOutboxEntry& e = *w.entry;
        sqlite3_bind_text(st, 2, w.endpoint.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, e.name.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, e.channel.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, e.user_id.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, e.json.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 7, e.created_ms);
        sqlite3_bind_int64(st, 8, e.not_before_ms);
      }
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    if (sqlite3_exec(db_, "COMMIT;", nullptr, nullptr, nullptr) != SQLITE_OK) {
      RELAY_LOG(kWarn, "webhooks", "cannot write the outbox: ", sqlite3_errmsg(db_));
      sqlite3_exec(db_, "ROLLBACK;", nullptr, nullptr, nullptr);
      return {0, absl::InternalError("the outbox write failed")};
    }
    return {writes.size(), absl::OkStatus()};
  }

 private:
  std::string data_dir_;
  sqlite3* db_ = nullptr;
};

// ---- etcd ---------------------------------------------------------------------------------

constexpr char kFenced[] =
    "this control plane is no longer the leader (its fence failed): nothing was written";

std::string RowKeyPart(int64_t row) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%020" PRId64, row);
  return buf;
}

class EtcdBackend : public WebhookBackend {
 public:
  EtcdBackend(etcd::Client& client, EtcdWebhookOptions options)
      : client_(client), options_(std::move(options)) {
    while (!options_.prefix.empty() && options_.prefix.back() == '/') options_.prefix.pop_back();
    hooks_ = options_.prefix + "/v1/webhooks/";
    outbox_ = options_.prefix + "/v1/outbox/";
    next_row_key_ = options_.prefix + "/v1/outbox_next_row";
  }

  std::string Describe() const override { return common::StrCat("etcd ", options_.prefix, "/v1/"); }

  void SetFence(std::function<std::vector<etcd::Compare>()> guard) override {
    absl::MutexLock lock(&mu_);
    guard_ = std::move(guard);
  }

  absl::StatusOr<WebhookStoreContents> Load() override {
    WebhookStoreContents out;
    int64_t revision = 0;  // every page read at the first page's revision: one snapshot
    auto st = Scan(hooks_, revision, [&](const etcd::KeyValue& kv) {
      relay::v1::Webhook hook;
      if (!hook.ParseFromString(kv.value)) {
        RELAY_LOG(kWarn, "webhooks", "skipping an unreadable webhook config at ", kv.key);
        return;
      }
      out.endpoints.push_back(std::move(hook));
    });
    if (!st.ok()) return st;
    st = Scan(outbox_, revision, [&](const etcd::KeyValue& kv) {
      // <outbox_><endpoint>/<row>
      size_t slash = kv.key.rfind('/');
      relay::v1::WebhookOutboxEntry pb;
      int64_t row = 0;
      if (slash == std::string::npos || slash < outbox_.size() ||
          !absl::SimpleAtoi(kv.key.substr(slash + 1), &row) || !pb.ParseFromString(kv.value)) {
        RELAY_LOG(kWarn, "webhooks", "skipping an unreadable outbox entry at ", kv.key);
        return;
      }
      out.max_row = std::max(out.max_row, row);
      out.outbox.emplace_back(kv.key.substr(outbox_.size(), slash - outbox_.size()),
                              WebhookOutboxEntry{row, pb.name(), pb.channel(), pb.user_id(),
                                                 pb.json(), pb.created_ms(), pb.not_before_ms()});
    });
    if (!st.ok()) return st;
    auto next = client_.Get(next_row_key_);
    if (!next.ok()) return next.status();
    int64_t mark = 0;
    if (*next && absl::SimpleAtoi((*next)->value, &mark)) out.max_row = std::max(out.max_row, mark);
    high_water_ = out.max_row;
    return out;
  }

  absl::Status AddEndpoint(const relay::v1::Webhook& hook) override {
    etcd::Txn txn;
    txn.success.push_back(etcd::TxnOp::Put(hooks_ + hook.id(), hook.SerializeAsString()));
    return Write(txn, Guard(), "cannot save the webhook");
  }

  absl::Status RemoveEndpoint(const std::string& webhook_id) override {
    etcd::Txn txn;
    txn.success.push_back(etcd::TxnOp::Delete(hooks_ + webhook_id));
    std::string events = outbox_ + webhook_id + "/";
    txn.success.push_back(etcd::TxnOp::Delete(events, etcd::PrefixEnd(events)));
    return Write(txn, Guard(), "cannot remove the webhook");
  }

  WebhookCommitResult Commit(const std::deque<WebhookOutboxWrite>& writes) override {
    size_t written = 0;
    while (written < writes.size()) {
      // The next transaction: as many writes as fit, in order, each key once (etcd refuses a
      // transaction that names a key twice: an insert and its delete go in two).
      auto guard = Guard();
      // etcd gives a transaction nested under a guard the limit less the guard's size
      // (max(compares, 1)); one operation is kept for the row mark.
      size_t reserved = 1 + (guard ? std::max<size_t>(guard->size(), 1) : 0);
      size_t max_ops = options_.max_txn_ops > reserved ? options_.max_txn_ops - reserved : 1;
      etcd::Txn txn;
      std::set<std::string> keys;
      size_t bytes = 0, end = written;
      int64_t max_row = 0;
      for (; end < writes.size() && txn.success.size() < max_ops; ++end) {
        const WebhookOutboxWrite& w = writes[end];
        std::string key = outbox_ + w.endpoint + "/" + RowKeyPart(w.row);
        std::string value;
        if (w.entry) {
          relay::v1::WebhookOutboxEntry pb;
          pb.set_name(w.entry->name);
          pb.set_channel(w.entry->channel);
          pb.set_user_id(w.entry->user_id);
          pb.set_json(w.entry->json);
          pb.set_created_ms(w.entry->created_ms);
          pb.set_not_before_ms(w.entry->not_before_ms);
          value = pb.SerializeAsString();
        }
        size_t size = key.size() + value.size() + 16;
        if (!txn.success.empty() && (bytes + size > options_.max_txn_bytes || keys.contains(key))) {
          break;
        }
        bytes += size;
        keys.insert(key);
        if (w.entry) {
          max_row = std::max(max_row, w.row);
          txn.success.push_back(etcd::TxnOp::Put(std::move(key), std::move(value)));
        } else {
          txn.success.push_back(etcd::TxnOp::Delete(std::move(key)));
        }
      }
      // Rows stay unique across leaders even once every row is delivered and deleted.
      if (max_row > high_water_) {
        txn.success.push_back(etcd::TxnOp::Put(next_row_key_, std::to_string(max_row)));
      }
      absl::Status st = Write(txn, guard, "cannot write the outbox");
      if (st.code() == absl::StatusCode::kInvalidArgument) {
        // Refused for what it is (an event over etcd's request size), not for etcd's state:
        // writing it again would fail the same way and hold back every write after it.
        RELAY_LOG(
            kWarn, "webhooks", "etcd refused ", end - written,
            " outbox writes, skipped (their events are delivered but not stored): ", st.message());
        written = end;
        continue;
      }
      if (!st.ok()) {
        if (st.code() != absl::StatusCode::kFailedPrecondition) {
          // Retried by the caller (the writes are idempotent): whatever the cause, as UNAVAILABLE.
          st = absl::UnavailableError(st.message());
        }
        return {written, st};
      }
      high_water_ = std::max(high_water_, max_row);
      written = end;
    }
    return {written, absl::OkStatus()};
  }

 private:
  // Every key under `prefix`, page by page, at one revision (0: the first page's, set here).
  absl::Status Scan(const std::string& prefix, int64_t& revision,
                    const std::function<void(const etcd::KeyValue&)>& each) {
    std::string from = prefix;
    std::string end = etcd::PrefixEnd(prefix);
    int64_t limit = options_.load_page;
    while (true) {
      etcd::RangeOptions ro;
      ro.range_end = end;
      ro.limit = limit;
      ro.revision = revision;
      auto page = client_.Range(from, ro);
      if (!page.ok() && limit > 1) {
        // Perhaps entries larger than the page size assumes: a page over gRPC's 4 MiB message
        // limit fails like an endpoint that does not answer (retried until the deadline, the
        // last error not always naming the size). Smaller pages until one fits, or one entry
        // per page fails too (etcd is down).
        limit = std::max<int64_t>(1, limit / 4);
        continue;
      }
      if (!page.ok()) return page.status();
      if (revision == 0) revision = page->revision;
      for (const auto& kv : page->kvs) each(kv);
      if (!page->more || page->kvs.empty()) return absl::OkStatus();
      from = page->kvs.back().key + std::string(1, '\0');
    }
  }

  // The fence's compares now, or nullopt without a fence.
  std::optional<std::vector<etcd::Compare>> Guard() {
    std::function<std::vector<etcd::Compare>()> guard;
    {
      absl::MutexLock lock(&mu_);
      guard = guard_;
    }
    if (!guard) return std::nullopt;
    return guard();
  }

  // Commits `txn`, under `guard` when there is one. FAILED_PRECONDITION when the guard failed
  // (logged: the caller is no longer the leader); UNAVAILABLE when etcd did not answer or
  // refused the transaction.
  absl::Status Write(const etcd::Txn& txn, const std::optional<std::vector<etcd::Compare>>& guard,
                     std::string_view what) {
    auto failed = [&](const absl::Status& st) {
      std::string message = common::StrCat(what, ": ", st.message());
      return st.code() == absl::StatusCode::kInvalidArgument ? absl::InvalidArgumentError(message)
                                                             : absl::UnavailableError(message);
    };
    if (!guard) {
      auto r = client_.Commit(txn);
      return r.ok() ? absl::OkStatus() : failed(r.status());
    }
    auto r = client_.CommitIf(*guard, txn);
    if (!r.ok()) return failed(r.status());
    if (!r->has_value()) {
      RELAY_LOG(kWarn, "webhooks", what, ": ", kFenced);
      return absl::FailedPreconditionError(kFenced);
    }
    return absl::OkStatus();
  }

  etcd::Client& client_;
  EtcdWebhookOptions options_;
  std::string hooks_, outbox_, next_row_key_;
  int64_t high_water_ = 0;  // the row last written to next_row_key_ (writer thread)
  absl::Mutex mu_;
  std::function<std::vector<etcd::Compare>()> guard_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<WebhookBackend> MakeSqliteWebhookBackend(std::string data_dir) {
  return std::make_unique<SqliteBackend>(std::move(data_dir));
}

std::unique_ptr<WebhookBackend> MakeEtcdWebhookBackend(etcd::Client& client,
                                                       EtcdWebhookOptions options) {
  return std::make_unique<EtcdBackend>(client, std::move(options));
}

}  // namespace relay::controlplane
