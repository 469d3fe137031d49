// File: etcd_client.h
// A small client of etcd's v3 gRPC API (the stubs proto/etcd generates from etcd's own protos):
// KV (range, put, delete, transactions with compares) and leases, over one or more endpoints.
//
// Every call has a deadline (the call's `timeout`, else ClientOptions::call_timeout) and never
// blocks past it. A call goes to the endpoint that answered last; when that one fails it moves
// on to the next, within the same deadline:
//   - idempotent calls (Range, Put, Delete, Compact, lease revoke and time-to-live) retry on any
//     endpoint failure, each attempt getting a share of the time left, so a member that stopped
//     answering, or a request lost with a dying raft leader, costs part of the deadline only.
//     (A Put retried after it was applied writes the same value again: one more revision.)
//   - transactions and lease grants retry only when etcd surely did not apply them (the
//     endpoint could not be reached, or its member had no leader). One that timed out or lost
//     its connection mid-flight may or may not have been applied: the caller gets UNAVAILABLE
//     saying so, and the next call starts on another endpoint.
// When no endpoint answers in time the status is UNAVAILABLE ("no etcd endpoint answered ...").
//
// Thread-safe. Watch, LeaseKeeper and Election objects made from a Client must be destroyed
// before it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace grpc {
class ClientContext;
class Status;
}  // namespace grpc

namespace relay::controlplane::etcd {

using Duration = std::chrono::milliseconds;

struct ClientOptions {
  // host:port of each member's client URL ("http://" is accepted and ignored).
  std::vector<std::string> endpoints;
  // Deadline of a call that names none.
  Duration call_timeout{2000};
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeOptions {
  // Empty: just `key`. PrefixEnd(key): every key starting with `key`.
  std::string range_end;
  int64_t limit = 0;     // 0 = no limit
  int64_t revision = 0;  // 0 = the newest
  enum class Sort { kNone, kKeyAscend, kCreateAscend, kCreateDescend };
  Sort sort = Sort::kNone;
  int64_t max_create_revision = 0;  // 0 = no bound
  bool count_only = false;
};

struct RangeResult {
  int64_t revision = 0;  // the store's revision when the range was read
  std::vector<KeyValue> kvs;
  int64_t count = 0;  // keys in the range (kvs may hold fewer: limit)
  bool more = false;
};

// One condition of a transaction: `target` of `key` compared with `number` (revisions, version,
// lease) or `value`.
struct Compare {
  enum class Target { kCreateRevision, kModRevision, kVersion, kValue, kLease };
  enum class Op { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kCreateRevision;
  Op op = Op::kEqual;
  int64_t number = 0;
  std::string value;

  // The usual ones.
  static Compare Absent(std::string key);  // create_revision == 0
  static Compare CreateRevision(std::string key, int64_t rev);
  static Compare ModRevision(std::string key, int64_t rev);
  static Compare Value(std::string key, std::string value);
};

struct TxnOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;      // kPut
  int64_t lease = 0;      // kPut
  std::string range_end;  // kDelete, kGet

  static TxnOp Put(std::string key, std::string value, int64_t lease = 0);
  static TxnOp Delete(std::string key, std::string range_end = "");
  static TxnOp Get(std::string key, std::string range_end = "");
};

struct Txn {
  std::vector<Compare> compares;  // all must hold for `success` to run
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

struct TxnResult {
  bool succeeded = false;  // whether the compares held (so `success` ran)
  int64_t revision = 0;
  // One per kGet op of the branch that ran, in order.
  std::vector<RangeResult> gets;
};

struct Lease {
  int64_t id = 0;
  int64_t ttl_seconds = 0;  // as granted (etcd may raise a short TTL to its minimum)
};

// The key just past every key that starts with `prefix`, for range_end.
std::string PrefixEnd(std::string_view prefix);

struct Endpoint;

class Client {
 public:
  // InvalidArgument for no endpoint, or one that is not host:port (or uses https://, which this
  // client does not speak yet).
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<RangeResult> Range(std::string_view key, const RangeOptions& options = {},
                                    Duration timeout = Duration::zero());
  // The key's value, or nullopt when it does not exist.
  absl::StatusOr<std::optional<KeyValue>> Get(std::string_view key,
                                              Duration timeout = Duration::zero());
  // Returns the revision of the write.
  absl::StatusOr<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0,
                              Duration timeout = Duration::zero());
  // Deletes `key` (or [key, range_end)); returns how many keys went.
  absl::StatusOr<int64_t> Delete(std::string_view key, std::string_view range_end = "",
                                 Duration timeout = Duration::zero());
  absl::StatusOr<TxnResult> Commit(const Txn& txn, Duration timeout = Duration::zero());
  // `txn` only if every `guard` compare holds (as one etcd transaction, `txn` nested in it):
  // nullopt when a guard failed (then nothing of `txn` ran). Fencing is built on it.
  absl::StatusOr<std::optional<TxnResult>> CommitIf(const std::vector<Compare>& guard,
                                                    const Txn& txn,
                                                    Duration timeout = Duration::zero());

  // Drops the history before `revision` (watches from earlier revisions then fail).
  absl::Status Compact(int64_t revision, Duration timeout = Duration::zero());

  absl::StatusOr<Lease> GrantLease(int64_t ttl_seconds, Duration timeout = Duration::zero());
  // Deletes every key attached to the lease. NotFound when the lease is already gone.
  absl::Status RevokeLease(int64_t id, Duration timeout = Duration::zero());
  // Seconds left, or NotFound when the lease expired or was revoked.
  absl::StatusOr<int64_t> LeaseTimeToLive(int64_t id, Duration timeout = Duration::zero());

  const ClientOptions& options() const { return options_; }

  // For Watch and LeaseKeeper: the endpoint to use for a new stream (the one that answered
  // last), and moving on from one that failed.
  size_t endpoint_count() const { return endpoints_.size(); }
  Endpoint& endpoint(size_t index) { return *endpoints_[index]; }
  size_t preferred_endpoint() const { return preferred_.load(std::memory_order_relaxed); }
  void EndpointFailed(size_t index);

 private:
  explicit Client(ClientOptions options);
  // Starts one attempt of a unary call on `ep`; `done` runs once with its status.
  using StartFn = std::function<void(Endpoint& ep, grpc::ClientContext* ctx,
                                     std::function<void(grpc::Status)>)>;
  absl::Status Unary(std::string_view what, bool idempotent, Duration timeout,
                     const StartFn& start);

  ClientOptions options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::atomic<size_t> preferred_{0};
};

// gRPC status -> absl::Status, prefixed with what was asked (codes map one to one).
absl::Status FromGrpc(std::string_view what, const grpc::Status& status);

}  // namespace relay::controlplane::etcd
