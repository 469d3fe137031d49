#include "controlplane/etcd/etcd_client.h"

#include <algorithm>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/strings.h"
#include "controlplane/etcd/endpoint.h"

namespace relay::controlplane::etcd {

using common::StrCat;
using Clock = std::chrono::steady_clock;

namespace {

// A failed attempt's status that proves etcd did not apply the request: the endpoint could not
// be reached at all, or its member knew no raft leader (etcd refuses before proposing).
bool NotApplied(const grpc::Status& st) {
  if (st.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  const std::string& m = st.error_message();
  return m.find("failed to connect") != std::string::npos ||
         m.find("Connection refused") != std::string::npos ||
         m.find("etcdserver: no leader") != std::string::npos ||
         m.find("etcdserver: not capable") != std::string::npos;
}

// Worth another endpoint for a read: anything the endpoint or its member caused.
bool Retryable(const grpc::Status& st) {
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return true;
    default:
      return false;
  }
}

std::chrono::system_clock::time_point ToDeadline(Clock::time_point steady_deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(steady_deadline -
                                                                         Clock::now());
}

KeyValue FromPb(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                  kv.mod_revision(), kv.version(), kv.lease()};
}

RangeResult FromPb(const etcdserverpb::RangeResponse& r) {
  RangeResult out;
  out.revision = r.header().revision();
  out.count = r.count();
  out.more = r.more();
  out.kvs.reserve(r.kvs_size());
  for (const auto& kv : r.kvs()) out.kvs.push_back(FromPb(kv));
  return out;
}

void ToPb(std::string_view key, const RangeOptions& o, etcdserverpb::RangeRequest* req) {
  req->set_key(std::string(key));
  req->set_range_end(o.range_end);
  req->set_limit(o.limit);
  req->set_revision(o.revision);
  req->set_max_create_revision(o.max_create_revision);
  req->set_count_only(o.count_only);
  using S = RangeOptions::Sort;
  switch (o.sort) {
    case S::kNone:
      break;
    case S::kKeyAscend:
      req->set_sort_target(etcdserverpb::RangeRequest::KEY);
      req->set_sort_order(etcdserverpb::RangeRequest::ASCEND);
      break;
    case S::kCreateAscend:
      req->set_sort_target(etcdserverpb::RangeRequest::CREATE);
      req->set_sort_order(etcdserverpb::RangeRequest::ASCEND);
      break;
    case S::kCreateDescend:
      req->set_sort_target(etcdserverpb::RangeRequest::CREATE);
      req->set_sort_order(etcdserverpb::RangeRequest::DESCEND);
      break;
  }
}

void ToPb(const Compare& c, etcdserverpb::Compare* out) {
  out->set_key(c.key);
  using T = Compare::Target;
  switch (c.target) {
    case T::kCreateRevision:
      out->set_target(etcdserverpb::Compare::CREATE);
      out->set_create_revision(c.number);
      break;
    case T::kModRevision:
      out->set_target(etcdserverpb::Compare::MOD);
      out->set_mod_revision(c.number);
      break;
    case T::kVersion:
      out->set_target(etcdserverpb::Compare::VERSION);
      out->set_version(c.number);
      break;
    case T::kValue:
      out->set_target(etcdserverpb::Compare::VALUE);
      out->set_value(c.value);
      break;
    case T::kLease:
      out->set_target(etcdserverpb::Compare::LEASE);
      out->set_lease(c.number);
      break;
  }
  using O = Compare::Op;
  switch (c.op) {
    case O::kEqual:
      out->set_result(etcdserverpb::Compare::EQUAL);
      break;
    case O::kNotEqual:
      out->set_result(etcdserverpb::Compare::NOT_EQUAL);
      break;
    case O::kGreater:
      out->set_result(etcdserverpb::Compare::GREATER);
      break;
    case O::kLess:
      out->set_result(etcdserverpb::Compare::LESS);
      break;
  }
}

void ToPb(const TxnOp& op, etcdserverpb::RequestOp* out) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: {
      auto* p = out->mutable_request_put();
      p->set_key(op.key);
      p->set_value(op.value);
      p->set_lease(op.lease);
      break;
    }
    case TxnOp::Kind::kDelete: {
      auto* d = out->mutable_request_delete_range();
      d->set_key(op.key);
      d->set_range_end(op.range_end);
      break;
    }
    case TxnOp::Kind::kGet: {
      auto* g = out->mutable_request_range();
      g->set_key(op.key);
      g->set_range_end(op.range_end);
      break;
    }
  }
}

// "host:port" from an endpoint as an operator writes it; empty when it is not one.
std::string ParseEndpoint(std::string_view e, std::string* error) {
  if (e.substr(0, 8) == "https://") {
    *error = "TLS to etcd is not supported yet (use http:// endpoints on a trusted network)";
    return "";
  }
  if (e.substr(0, 7) == "http://") e.remove_prefix(7);
  while (!e.empty() && e.back() == '/') e.remove_suffix(1);
  size_t colon = e.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == e.size() ||
      e.find('/') != std::string_view::npos) {
    *error = "expected host:port";
    return "";
  }
  for (char c : e.substr(colon + 1)) {
    if (c < '0' || c > '9') {
      *error = "expected host:port";
      return "";
    }
  }
  return std::string(e);
}

// The Unary start function for `method` of the endpoint's `stub` with `req` and `resp`.
template <typename Service, typename Req, typename Resp>
std::function<void(Endpoint&, grpc::ClientContext*, std::function<void(grpc::Status)>)> Start(
    std::unique_ptr<typename Service::Stub> Endpoint::*stub,
    void (Service::StubInterface::async_interface::*method)(grpc::ClientContext*, const Req*, Resp*,
                                                            std::function<void(grpc::Status)>),
    const Req* req, Resp* resp) {
  return [=](Endpoint& ep, grpc::ClientContext* ctx, std::function<void(grpc::Status)> cb) {
    resp->Clear();
    ((ep.*stub)->async()->*method)(ctx, req, resp, std::move(cb));
  };
}

using KvCalls = etcdserverpb::KV::StubInterface::async_interface;
using LeaseCalls = etcdserverpb::Lease::StubInterface::async_interface;

}  // namespace

Compare Compare::Absent(std::string key) { return CreateRevision(std::move(key), 0); }
Compare Compare::CreateRevision(std::string key, int64_t rev) {
  return Compare{std::move(key), Target::kCreateRevision, Op::kEqual, rev, ""};
}
Compare Compare::ModRevision(std::string key, int64_t rev) {
  return Compare{std::move(key), Target::kModRevision, Op::kEqual, rev, ""};
}
Compare Compare::Value(std::string key, std::string value) {
  return Compare{std::move(key), Target::kValue, Op::kEqual, 0, std::move(value)};
}

TxnOp TxnOp::Put(std::string key, std::string value, int64_t lease) {
  return TxnOp{Kind::kPut, std::move(key), std::move(value), lease, ""};
}
TxnOp TxnOp::Delete(std::string key, std::string range_end) {
  return TxnOp{Kind::kDelete, std::move(key), "", 0, std::move(range_end)};
}
TxnOp TxnOp::Get(std::string key, std::string range_end) {
  return TxnOp{Kind::kGet, std::move(key), "", 0, std::move(range_end)};
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key (etcd's convention)
}

absl::Status FromGrpc(std::string_view what, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      StrCat(what, ": ", status.error_message()));
}

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoint given (expected host:port,...)");
  }
  if (options.call_timeout <= Duration::zero()) {
    return absl::InvalidArgumentError("etcd: the call timeout must be positive");
  }
  std::unique_ptr<Client> client(new Client(options));
  for (const auto& e : options.endpoints) {
    std::string error;
    std::string address = ParseEndpoint(e, &error);
    if (address.empty()) {
      return absl::InvalidArgumentError(StrCat("etcd endpoint \"", e, "\": ", error));
    }
    grpc::ChannelArguments args;
    // A restarted member is found again within a second, not after gRPC's default 2 minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Detects a member that stopped answering on an open connection (etcd's server accepts
    // pings every 5 s, its default --grpc-keepalive-min-time).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // One channel per member, never shared with another Client's: failover is ours.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ep = std::make_unique<Endpoint>();
    ep->address = address;
    ep->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    ep->kv = etcdserverpb::KV::NewStub(ep->channel);
    ep->lease = etcdserverpb::Lease::NewStub(ep->channel);
    ep->watch = etcdserverpb::Watch::NewStub(ep->channel);
    client->endpoints_.push_back(std::move(ep));
  }
  return client;
}

void Client::EndpointFailed(size_t index) {
  size_t next = (index + 1) % endpoints_.size();
  preferred_.compare_exchange_strong(index, next, std::memory_order_relaxed);
}

absl::Status Client::Unary(std::string_view what, bool idempotent, Duration timeout,
                           const StartFn& start) {
  if (timeout <= Duration::zero()) timeout = options_.call_timeout;
  const auto deadline = Clock::now() + timeout;
  const size_t n = endpoints_.size();
  grpc::Status last;
  std::string last_endpoint;
  size_t idx = preferred_.load(std::memory_order_relaxed);
  for (size_t attempt = 0;; ++attempt) {
    auto now = Clock::now();
    if (now >= deadline) break;
    if (attempt > 0 && attempt % n == 0) {
      // Every endpoint failed fast: wait a little before the next round (a member restarting
      // or a quorum coming back), never past the deadline.
      std::this_thread::sleep_until(std::min(deadline, now + Duration(100)));
      now = Clock::now();
      if (now >= deadline) break;
    }
    Endpoint& ep = *endpoints_[idx];
    // Idempotent calls share the time left among the endpoints not yet tried this round, so
    // one member that stopped answering (or lost the raft leader our request was forwarded to)
    // cannot use it all; a transaction gets all of it (it is not retried after a timeout).
    auto attempt_deadline = deadline;
    if (idempotent) {
      size_t left = n - attempt % n;
      attempt_deadline = std::min(
          deadline, now + std::max<Clock::duration>((deadline - now) / left, Duration(250)));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(ToDeadline(attempt_deadline));
    absl::Notification done;
    grpc::Status st;
    start(ep, &ctx, [&](grpc::Status s) {
      st = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();  // bounded by the context's deadline
    if (st.ok()) {
      preferred_.store(idx, std::memory_order_relaxed);
      return absl::OkStatus();
    }
    last = st;
    last_endpoint = ep.address;
    bool retry = idempotent ? Retryable(st) : NotApplied(st);
    if (!retry) {
      if (Retryable(st)) EndpointFailed(idx);  // the next call starts elsewhere
      if (Retryable(st)) {
        return absl::UnavailableError(StrCat(what, " via etcd at ", ep.address,
                                             " failed and may or may not have been "
                                             "applied: ",
                                             st.error_message()));
      }
      return FromGrpc(StrCat(what, " via etcd at ", ep.address), st);
    }
    EndpointFailed(idx);
    idx = (idx + 1) % n;
  }
  return absl::UnavailableError(StrCat(
      what, ": no etcd endpoint answered within ", timeout.count(), " ms",
      last_endpoint.empty() ? std::string()
                            : StrCat(" (last: ", last_endpoint, ": ", last.error_message(), ")")));
}

absl::StatusOr<RangeResult> Client::Range(std::string_view key, const RangeOptions& options,
                                          Duration timeout) {
  etcdserverpb::RangeRequest req;
  ToPb(key, options, &req);
  etcdserverpb::RangeResponse resp;
  absl::Status st = Unary("etcd range", true, timeout,
                          Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::Range, &req, &resp));
  if (!st.ok()) return st;
  return FromPb(resp);
}

absl::StatusOr<std::optional<KeyValue>> Client::Get(std::string_view key, Duration timeout) {
  auto r = Range(key, {}, timeout);
  if (!r.ok()) return r.status();
  if (r->kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(std::move(r->kvs.front()));
}

absl::StatusOr<int64_t> Client::Put(std::string_view key, std::string_view value, int64_t lease,
                                    Duration timeout) {
  etcdserverpb::PutRequest req;
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_lease(lease);
  etcdserverpb::PutResponse resp;
  absl::Status st = Unary("etcd put", true, timeout,
                          Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::Put, &req, &resp));
  if (!st.ok()) return st;
  return resp.header().revision();
}

absl::StatusOr<int64_t> Client::Delete(std::string_view key, std::string_view range_end,
                                       Duration timeout) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(std::string(key));
  req.set_range_end(std::string(range_end));
  etcdserverpb::DeleteRangeResponse resp;
  absl::Status st =
      Unary("etcd delete", true, timeout,
            Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::DeleteRange, &req, &resp));
  if (!st.ok()) return st;
  return resp.deleted();
}

namespace {

void ToPb(const Txn& txn, etcdserverpb::TxnRequest* req) {
  for (const auto& c : txn.compares) ToPb(c, req->add_compare());
  for (const auto& op : txn.success) ToPb(op, req->add_success());
  for (const auto& op : txn.failure) ToPb(op, req->add_failure());
}

TxnResult FromPb(const etcdserverpb::TxnResponse& resp) {
  TxnResult out;
  out.succeeded = resp.succeeded();
  out.revision = resp.header().revision();
  for (const auto& r : resp.responses()) {
    if (r.has_response_range()) out.gets.push_back(FromPb(r.response_range()));
  }
  return out;
}

}  // namespace

absl::StatusOr<TxnResult> Client::Commit(const Txn& txn, Duration timeout) {
  etcdserverpb::TxnRequest req;
  ToPb(txn, &req);
  etcdserverpb::TxnResponse resp;
  absl::Status st = Unary("etcd txn", false, timeout,
                          Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::Txn, &req, &resp));
  if (!st.ok()) return st;
  return FromPb(resp);
}

absl::StatusOr<std::optional<TxnResult>> Client::CommitIf(const std::vector<Compare>& guard,
                                                          const Txn& txn, Duration timeout) {
  etcdserverpb::TxnRequest req;
  for (const auto& c : guard) ToPb(c, req.add_compare());
  ToPb(txn, req.add_success()->mutable_request_txn());
  etcdserverpb::TxnResponse resp;
  absl::Status st = Unary("etcd txn", false, timeout,
                          Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::Txn, &req, &resp));
  if (!st.ok()) return st;
  if (!resp.succeeded()) return std::optional<TxnResult>();
  if (resp.responses_size() != 1 || !resp.responses(0).has_response_txn()) {
    return absl::InternalError("etcd txn: the nested transaction's response is missing");
  }
  TxnResult inner = FromPb(resp.responses(0).response_txn());
  inner.revision = resp.header().revision();
  return std::optional<TxnResult>(std::move(inner));
}

absl::Status Client::Compact(int64_t revision, Duration timeout) {
  etcdserverpb::CompactionRequest req;
  req.set_revision(revision);
  etcdserverpb::CompactionResponse resp;
  return Unary("etcd compact", true, timeout,
               Start<etcdserverpb::KV>(&Endpoint::kv, &KvCalls::Compact, &req, &resp));
}

absl::StatusOr<Lease> Client::GrantLease(int64_t ttl_seconds, Duration timeout) {
  if (ttl_seconds <= 0) return absl::InvalidArgumentError("etcd lease: the TTL must be positive");
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse resp;
  absl::Status st =
      Unary("etcd lease grant", false, timeout,
            Start<etcdserverpb::Lease>(&Endpoint::lease, &LeaseCalls::LeaseGrant, &req, &resp));
  if (!st.ok()) return st;
  if (!resp.error().empty())
    return absl::UnavailableError(StrCat("etcd lease grant: ", resp.error()));
  return Lease{resp.id(), resp.ttl()};
}

absl::Status Client::RevokeLease(int64_t id, Duration timeout) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(id);
  etcdserverpb::LeaseRevokeResponse resp;
  absl::Status st =
      Unary("etcd lease revoke", true, timeout,
            Start<etcdserverpb::Lease>(&Endpoint::lease, &LeaseCalls::LeaseRevoke, &req, &resp));
  return st;
}

absl::StatusOr<int64_t> Client::LeaseTimeToLive(int64_t id, Duration timeout) {
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  absl::Status st = Unary(
      "etcd lease time-to-live", true, timeout,
      Start<etcdserverpb::Lease>(&Endpoint::lease, &LeaseCalls::LeaseTimeToLive, &req, &resp));
  if (!st.ok()) return st;
  if (resp.ttl() <= 0) return absl::NotFoundError(StrCat("etcd lease ", id, " has expired"));
  return resp.ttl();
}

}  // namespace relay::controlplane::etcd
