#include "controlplane/node_hub.h"

#include <atomic>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/time.h"
#include "controlplane/finishing_reactor.h"

namespace relay::controlplane {

using relay::v1::ControlMessage;
using relay::v1::NodeMessage;

// One attached data plane. Lives until OnDone (self_ keeps it alive; the hub holds another
// reference while registered). Reactions run on gRPC threads and never block.
class NodeStream : public FinishingReactor<grpc::ServerBidiReactor<NodeMessage, ControlMessage>> {
 public:
  NodeStream(NodeHub* hub, const NodeHubOptions& options, relay::v1::NodeToken credential)
      : hub_(hub), options_(options), credential_(std::move(credential)) {}

  void Start(std::shared_ptr<NodeStream> self) {
    self_ = std::move(self);
    started_ms_ = common::NowUnixMs();
    last_rx_ms_ = started_ms_;
    StartRead(&in_);
  }

  int64_t started_ms() const { return started_ms_; }

  bool Enqueue(ControlMessage msg, const std::shared_ptr<AckWait>& wait = nullptr) {
    const ControlMessage* to_write = nullptr;
    bool overflow = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished()) return false;
      // Size the message as it will be written (with seq and ack), so that OnWriteDone
      // subtracts exactly what was added.
      msg.set_seq(out_seq_ + 1);
      msg.set_ack(in_seq_.load());
      size_t bytes = msg.ByteSizeLong();
      // Commands awaited and not acknowledged count like queued ones: a node that reads but
      // never acks is cut off at the same bound.
      if (outbox_.size() >= options_.max_outbox_messages ||
          outbox_bytes_ + bytes > options_.max_outbox_bytes ||
          (wait && ledger_.waiting() >= options_.max_outbox_messages)) {
        overflow = true;
      } else {
        ++out_seq_;
        // Here, where seqs are assigned, so that the ledger's seqs stay in order.
        if (wait) ledger_.Watch(out_seq_, wait);
        outbox_bytes_ += bytes;
        outbox_.push_back(std::move(msg));
        if (!writing_ && BeginStart()) {
          writing_ = true;
          to_write = &outbox_.front();
        }
      }
    }
    if (overflow) {
      RELAY_LOG(kWarn, "node-hub", "node ", node_id_, " is not reading; cutting it off");
      FinishOnce(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "node too slow"));
      return false;
    }
    if (to_write != nullptr) {
      StartWrite(to_write);
      EndStart();
    }
    hub_->commands_sent_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void OnWriteDone(bool ok) override {
    const ControlMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      outbox_bytes_ -= outbox_.front().ByteSizeLong();
      outbox_.pop_front();
      if (ok && !outbox_.empty() && BeginStart()) {
        next = &outbox_.front();
      } else {
        writing_ = false;
      }
    }
    if (next != nullptr) {
      StartWrite(next);
      EndStart();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    last_rx_ms_ = common::NowUnixMs();
    in_seq_ = in_.seq();
    if (in_.ack() > 0) {
      // Never beyond what was sent: a node cannot confirm a command it was not given.
      uint64_t sent;
      {
        absl::MutexLock lock(&mu_);
        sent = out_seq_;
      }
      ledger_.Acked(std::min(in_.ack(), sent));
    }
    if (auto st = Handle(); !st.ok()) {
      if (st.code() == absl::StatusCode::kCancelled) {  // a goodbye: the node leaves cleanly
        FinishOnce(grpc::Status::OK);
        return;
      }
      // A node that breaks the link's rules is cut off; its re-attach starts from a snapshot.
      hub_->counters_.invalid_messages.fetch_add(1, std::memory_order_relaxed);
      RELAY_LOG(kWarn, "node-hub", "node ", node_id_.empty() ? "(before hello)" : node_id_, ": ",
                st.message(), "; ending its stream");
      FinishOnce(grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message())));
      return;
    }
    if (!BeginStart()) return;  // the pending Finish ends the call; no new read after it
    StartRead(&in_);
    EndStart();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  // Validates and applies the message just read (in_).
  absl::Status Handle() {
    if (state_ == State::kHello) {
      if (!in_.has_hello()) return absl::InvalidArgumentError("the first message must be hello");
      if (auto st = ValidateHello(in_.hello(), options_.limits); !st.ok()) return st;
      if (!credential_.node_id().empty() && credential_.node_id() != in_.hello().node_id()) {
        return absl::PermissionDeniedError(
            absl::StrCat("credential ", credential_.id(), " may attach node '",
                         credential_.node_id(), "' only, not '", in_.hello().node_id(), "'"));
      }
      hello_ = in_.hello();
      node_id_ = hello_.node_id();
      state_ = State::kSnapshot;
      return absl::OkStatus();
    }
    if (auto st = ValidateNodeMessage(in_, options_.limits); !st.ok()) {
      if (!in_.has_client_event() || state_ != State::kAttached) return st;
      // A client event is one client's doing: it is dropped (and counted), the node stays.
      hub_->counters_.client_events_dropped.fetch_add(1, std::memory_order_relaxed);
      RELAY_LOG(kDebug, "node-hub", "node ", node_id_, ": dropped a client event: ", st.message());
      return absl::OkStatus();
    }
    if (in_.has_snapshot()) {
      // Parts accumulate until the last one; the handler sees the whole snapshot once.
      if (!pending_) {
        pending_.emplace();
        pending_bytes_ = 0;
      }
      pending_bytes_ += in_.snapshot().ByteSizeLong();
      pending_->MergeFrom(in_.snapshot());
      if (auto st = ValidateSnapshotSize(*pending_, pending_bytes_); !st.ok()) return st;
      if (in_.snapshot().more()) return absl::OkStatus();
      pending_->set_more(false);
      *in_.mutable_snapshot() = std::move(*pending_);
      pending_.reset();
    } else if (pending_) {
      return absl::InvalidArgumentError("a snapshot part must be followed by the next part");
    }
    if (state_ == State::kSnapshot) {
      if (!in_.has_snapshot()) {
        return absl::InvalidArgumentError("the second message must be the snapshot");
      }
      SetLoad(in_.snapshot().load());
      attached_ms_ = common::NowUnixMs();
      // Register before the handler runs so that effects of the snapshot can reach this node.
      switch (hub_->Register(node_id_, self_)) {
        case NodeHub::RegisterResult::kRegistered:
          break;
        case NodeHub::RegisterResult::kTakenOver:
          hub_->counters_.takeovers_refused.fetch_add(1, std::memory_order_relaxed);
          return absl::AlreadyExistsError(
              absl::StrCat("node '", node_id_,
                           "' is attached with another credential; a node id can be "
                           "taken over only with the same credential or one bound to that id"));
        case NodeHub::RegisterResult::kRevoked:
          return absl::UnauthenticatedError("node credential revoked");
      }
      if (hub_->options_.attached) hub_->options_.attached(credential_.id());
      registered_ = true;
      hub_->handler_->OnAttach(node_id_, hello_, in_.snapshot());
      state_ = State::kAttached;
      RELAY_LOG(kInfo, "node-hub", "node ", node_id_, " attached from ", hello_.address(),
                " with credential ", credential_.id());
      return absl::OkStatus();
    }
    if (in_.has_heartbeat()) SetLoad(in_.heartbeat().load());
    if (in_.has_goodbye()) {
      departed_ = true;
      RELAY_LOG(kInfo, "node-hub", "node ", node_id_, " said goodbye");
      // Ends the stream: its OnDone withdraws the node (as a departure).
      return absl::CancelledError("goodbye");
    }
    hub_->handler_->OnNodeMessage(node_id_, in_);
    return absl::OkStatus();
  }

  absl::Status ValidateSnapshotSize(const relay::v1::NodeSnapshot& s, size_t bytes) const {
    size_t entries = static_cast<size_t>(s.channels_size()) + s.presence_size() + s.users_size() +
                     s.app_connections_size();
    if (entries > options_.limits.max_snapshot_entries ||
        bytes > options_.limits.max_snapshot_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("node link: snapshot of more than ", options_.limits.max_snapshot_entries,
                       " entries or ", options_.limits.max_snapshot_bytes, " bytes"));
    }
    return absl::OkStatus();
  }

  void OnDone() override {
    // Commands not acknowledged by now never will be: their requests are refused.
    ledger_.End();
    hub_->ForgetUnattached(this);
    // A stream replaced by a newer attach of the same node withdraws nothing: the newer
    // snapshot already replaced what this one reported, and may have been applied before this
    // stream ended (the node saw the link die first, e.g. a partition or a hung control plane).
    if (registered_ && hub_->Unregister(node_id_, this)) {
      if (departed_.load()) hub_->handler_->OnDeparted(node_id_);
      hub_->handler_->OnDetach(node_id_);
      RELAY_LOG(kInfo, "node-hub", "node ", node_id_, " detached");
    } else if (registered_) {
      RELAY_LOG(kInfo, "node-hub", "node ", node_id_, ": replaced stream ended");
    }
    self_.reset();  // may delete this
  }

  relay::v1::NodeInfo Info() const {
    relay::v1::NodeInfo info;
    info.set_node_id(node_id_);
    info.set_address(hello_.address());
    {
      absl::MutexLock lock(&mu_);
      *info.mutable_load() = load_;
    }
    info.set_attached_unix_ms(attached_ms_);
    info.set_capacity(hello_.capacity());
    info.set_draining(draining_);
    info.set_version(hello_.version());
    return info;
  }

  bool Backlogged() const {
    absl::MutexLock lock(&mu_);
    return outbox_.size() > options_.max_outbox_messages / 2 ||
           outbox_bytes_ > options_.max_outbox_bytes / 2;
  }

  void SetLoad(const relay::v1::NodeLoad& load) {
    absl::MutexLock lock(&mu_);
    load_ = load;
  }

  int64_t last_rx_ms() const { return last_rx_ms_; }
  void set_draining(bool draining) { draining_ = draining; }
  void set_departed() { departed_ = true; }
  const relay::v1::NodeToken& credential() const { return credential_; }

 private:
  enum class State { kHello, kSnapshot, kAttached };

  NodeHub* hub_;
  const NodeHubOptions& options_;
  const relay::v1::NodeToken credential_;
  std::shared_ptr<NodeStream> self_;
  NodeMessage in_;
  std::optional<relay::v1::NodeSnapshot> pending_;  // snapshot parts received so far
  size_t pending_bytes_ = 0;
  State state_ = State::kHello;
  relay::v1::NodeHello hello_;
  std::string node_id_;
  std::atomic<int64_t> attached_ms_{0};
  std::atomic<int64_t> last_rx_ms_{0};
  int64_t started_ms_ = 0;
  std::atomic<uint64_t> in_seq_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> departed_{false};  // gone for good (see Handler::OnDeparted)
  bool registered_ = false;

  mutable absl::Mutex mu_;
  relay::v1::NodeLoad load_ ABSL_GUARDED_BY(mu_);
  std::deque<ControlMessage> outbox_ ABSL_GUARDED_BY(mu_);
  size_t outbox_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t out_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Commands requests wait for that the node has not acknowledged yet.
  AckLedger ledger_;
};

NodeHub::NodeHub(NodeHubOptions options, Handler* handler)
    : options_(options), handler_(handler), acks_(options_.acks) {}

NodeHub::~NodeHub() { CloseAll(); }

namespace {

// An Attach refused before anything was read: finishes at once with `status`.
class RefusedStream : public grpc::ServerBidiReactor<NodeMessage, ControlMessage> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

std::string BearerToken(const grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return {};
  std::string_view auth(it->second.data(), it->second.size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (auth.size() <= kPrefix.size() || auth.substr(0, kPrefix.size()) != kPrefix) return {};
  return std::string(auth.substr(kPrefix.size()));
}

}  // namespace

void NodeHub::LogRefused(const char* why) {
  uint64_t n = counters_.auth_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  int64_t now = common::NowUnixMs();
  int64_t last = last_refusal_log_ms_.load();
  if (now - last >= 10000 && last_refusal_log_ms_.compare_exchange_strong(last, now)) {
    RELAY_LOG(kWarn, "node-hub", "refused a data plane attach: ", why, " (", n,
              " refused since start; logged at most every 10 s)");
  }
}

grpc::ServerBidiReactor<NodeMessage, ControlMessage>* NodeHub::Attach(
    grpc::CallbackServerContext* context) {
  // The credential is checked before anything is read from the stream or sent on it.
  std::string token = BearerToken(context);
  if (token.empty()) {
    LogRefused("no node credential");
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     "missing node credential (authorization: Bearer <node token>)"));
  }
  std::optional<relay::v1::NodeToken> credential;
  if (options_.authenticate) credential = options_.authenticate(token);
  if (!credential) {
    LogRefused("invalid or revoked node credential");
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid node credential"));
  }
  if (options_.require_client_certificate &&
      credential->id() != options_.client_certificate_exempt &&
      !context->auth_context()->IsPeerAuthenticated()) {
    LogRefused("no verified client certificate (--node-link-client-ca)");
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     "this control plane requires a client certificate on the node link "
                     "(relay-dataplane --control-plane-tls-cert/--control-plane-tls-key)"));
  }
  if (options_.redirect) {
    if (std::optional<std::string> leader = options_.redirect()) {
      context->AddTrailingMetadata("relay-leader", *leader);
      return new RefusedStream(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          leader->empty() ? "this control plane is a follower and no leader is known yet; retry"
                          : absl::StrCat("this control plane is a follower; attach to the leader "
                                         "at ",
                                         *leader)));
    }
  }
  auto stream = std::make_shared<NodeStream>(this, options_, std::move(*credential));
  {
    absl::MutexLock lock(&mu_);
    unattached_.emplace(stream.get(), stream);
  }
  stream->Start(stream);
  return stream.get();
}

void NodeHub::ForgetUnattached(const NodeStream* stream) {
  absl::MutexLock lock(&mu_);
  unattached_.erase(stream);
}

NodeHub::RegisterResult NodeHub::Register(const std::string& node_id,
                                          std::shared_ptr<NodeStream> stream) {
  std::shared_ptr<NodeStream> replaced;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      replaced = stream;
    } else {
      auto it = nodes_.find(node_id);
      if (it != nodes_.end() && it->second->credential().id() != stream->credential().id() &&
          stream->credential().node_id() != node_id) {
        return RegisterResult::kTakenOver;
      }
      // Revoked since the Attach was accepted: revocation and this check both happen under
      // mu_ (DisconnectCredential), so a revoked credential never registers.
      if (options_.credential_valid && !options_.credential_valid(stream->credential().id())) {
        return RegisterResult::kRevoked;
      }
      unattached_.erase(stream.get());
      auto& slot = nodes_[node_id];
      replaced = std::move(slot);
      slot = std::move(stream);
    }
  }
  if (replaced) {
    replaced->FinishOnce(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer attach"));
  }
  return RegisterResult::kRegistered;
}

void NodeHub::DisconnectCredential(const std::string& token_id) {
  std::vector<std::shared_ptr<NodeStream>> cut;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, s] : nodes_) {
      if (s->credential().id() == token_id) cut.push_back(s);
    }
    for (const auto& [ptr, s] : unattached_) {
      if (s->credential().id() == token_id) cut.push_back(s);
    }
  }
  for (auto& s : cut) {
    s->set_departed();
    s->FinishOnce(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "node credential revoked"));
  }
}

bool NodeHub::Unregister(const std::string& node_id, const NodeStream* stream) {
  absl::MutexLock lock(&mu_);
  if (auto it = nodes_.find(node_id); it != nodes_.end() && it->second.get() == stream) {
    nodes_.erase(it);
    return true;
  }
  return false;
}

bool NodeHub::Send(const std::string& node_id, ControlMessage msg,
                   const std::shared_ptr<AckWait>& wait) {
  std::shared_ptr<NodeStream> stream;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return false;
    stream = it->second;
  }
  return stream->Enqueue(std::move(msg), wait);
}

std::vector<std::string> NodeHub::NodeIds() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, s] : nodes_) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

bool NodeHub::Attached(const std::string& node_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return nodes_.contains(node_id);
}

bool NodeHub::Backlogged(const std::string& node_id) const {
  std::shared_ptr<NodeStream> stream;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return false;
    stream = it->second;
  }
  return stream->Backlogged();
}

std::vector<relay::v1::NodeInfo> NodeHub::Nodes() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<relay::v1::NodeInfo> out;
  for (const auto& [id, s] : nodes_) out.push_back(s->Info());
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.node_id() < b.node_id(); });
  return out;
}

bool NodeHub::Drain(const std::string& node_id, uint32_t window_ms) {
  ControlMessage msg;
  msg.mutable_drain()->set_window_ms(window_ms);
  return SetDraining(node_id, true, std::move(msg));
}

bool NodeHub::Undrain(const std::string& node_id) {
  ControlMessage msg;
  msg.mutable_undrain();
  return SetDraining(node_id, false, std::move(msg));
}

bool NodeHub::SetDraining(const std::string& node_id, bool draining, ControlMessage command) {
  std::shared_ptr<NodeStream> stream;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return false;
    stream = it->second;
  }
  stream->set_draining(draining);
  return stream->Enqueue(std::move(command));
}

void NodeHub::SweepDeadNodes() {
  int64_t now = common::NowUnixMs();
  std::vector<std::shared_ptr<NodeStream>> dead;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, s] : nodes_) {
      if (now - s->last_rx_ms() > options_.liveness_timeout.count()) dead.push_back(s);
    }
    // A stream that has not finished attaching within the timeout is cut off too (an
    // authenticated peer cannot park half-open attaches).
    for (const auto& [ptr, s] : unattached_) {
      if (now - s->started_ms() > options_.liveness_timeout.count()) dead.push_back(s);
    }
  }
  for (auto& s : dead) {
    RELAY_LOG(kWarn, "node-hub", "node ", s->Info().node_id(), " silent for more than ",
              options_.liveness_timeout.count(), " ms; withdrawing it");
    s->set_departed();
    s->FinishOnce(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no heartbeat"));
  }
}

void NodeHub::CloseAll() {
  std::vector<std::shared_ptr<NodeStream>> all;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& [id, s] : nodes_) all.push_back(s);
    for (auto& [ptr, s] : unattached_) all.push_back(s);
  }
  for (auto& s : all) s->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  // Requests waiting for acks are answered now (refused), while the servers that answer them
  // still run; later ones are refused at once.
  acks_.Stop();
}

void NodeHub::DetachAll(const grpc::Status& status) {
  std::vector<std::shared_ptr<NodeStream>> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : nodes_) all.push_back(s);
    for (auto& [ptr, s] : unattached_) all.push_back(s);
  }
  for (auto& s : all) s->FinishOnce(status);
}

uint64_t NodeHub::commands_sent() const { return commands_sent_.load(); }

}  // namespace relay::controlplane
