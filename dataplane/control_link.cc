#include "dataplane/control_link.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <map>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/node_link_limits.h"
#include "common/strings.h"
#include "dataplane/uplink_queue.h"
#include "relay/v1/node_link.grpc.pb.h"

namespace relay::dataplane {

using relay::v1::ControlMessage;
using relay::v1::NodeMessage;

// One attach attempt. Writes may start from any thread (NodeState uplink, heartbeats), so the
// reactor holds the call open (AddHold) until the read side has ended and no write is in flight.
class LinkStream : public grpc::ClientBidiReactor<NodeMessage, ControlMessage> {
 public:
  LinkStream(ControlLink* link, std::string target) : link_(link), target_(std::move(target)) {}

  void Begin(relay::v1::NodeLink::Stub* stub, std::shared_ptr<LinkStream> self) {
    self_ = std::move(self);
    {
      absl::MutexLock lock(&mu_);
      last_read_ = std::chrono::steady_clock::now();
    }
    if (!link_->options_.token.empty()) {
      context_.AddMetadata("authorization", "Bearer " + link_->options_.token);
    }
    stub->async()->Attach(&context_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  // Queues `msg` (a delta may merge into the last queued one); returns the seq of the message
  // that carries it, 0 when the stream is finished. Flush() starts the write.
  uint64_t Push(NodeMessage msg) {
    absl::MutexLock lock(&mu_);
    if (finished_) return 0;
    uint64_t seq = outbox_.Push(std::move(msg), in_seq_);
    if (seq == 0) {
      // The control plane is not reading: give up on this stream; the next attach resends the
      // whole state.
      RELAY_LOG(kWarn, "control-link", "outbox to the control plane is full (", outbox_.messages(),
                " messages, ", outbox_.bytes(), " bytes); re-attaching");
      finished_ = true;
      context_.TryCancel();
    }
    return seq;
  }

  // Starts writing the oldest queued message unless a write is in flight. Called with no lock
  // held: StartWrite may run gRPC's transport work inline.
  void Flush() {
    const NodeMessage* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      to_write = NextWrite();
      writing_ = to_write != nullptr;
    }
    if (to_write != nullptr) StartWrite(to_write);
  }

  // Confirms the commands handled so far (NodeMessage.ack): the control plane answers an
  // event-sending request only once every node it was sent to has confirmed it. The ack rides
  // on the next message written; when there is nothing to write, a message of its own (no
  // body) carries it. Coalesced by the write pipeline: while a write is in flight, the commands
  // handled meanwhile are all confirmed by the next write, so a burst of N commands costs far
  // fewer than N ack writes, and an idle link still confirms each command at once.
  void Ack() {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_ || ack_written_ >= in_seq_) return;
    }
    Flush();
  }

  // The next message to write, carrying the latest ack; an ack of its own when nothing is
  // queued but commands handled since the last write are unconfirmed.
  const NodeMessage* NextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (outbox_.messages() == 0 && ack_written_ < in_seq_ && !outbox_.in_flight()) {
      if (outbox_.Push(NodeMessage(), in_seq_) == 0) return nullptr;
    }
    const NodeMessage* next = outbox_.StartWrite(in_seq_);
    if (next != nullptr) ack_written_ = next->ack();
    return next;
  }

  uint64_t Enqueue(NodeMessage msg) {
    uint64_t seq = Push(std::move(msg));
    Flush();
    return seq;
  }

  void OnWriteDone(bool ok) override {
    const NodeMessage* next = nullptr;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      outbox_.WriteDone();
      if (!ok) finished_ = true;
      // Everything queued meanwhile (merged into one delta where possible) goes out next, and
      // with it the ack of the commands handled meanwhile.
      if (!finished_) next = NextWrite();
      if (next == nullptr) {
        writing_ = false;
        release = finished_ && read_done_ && !hold_released_;
        if (release) hold_released_ = true;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (release) RemoveHold();
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      {
        absl::MutexLock lock(&mu_);
        last_read_ = std::chrono::steady_clock::now();
      }
      // The handler applies the welcome (the app table) before the attach is counted, so that
      // whoever waits for attaches() sees the apps too.
      link_->handler_(in_);
      if (in_.has_welcome()) {
        welcomed_ = true;
        link_->OnWelcome(in_.welcome());
      }
      // Handled (handed to the shards): only now may an ack confirm it.
      {
        absl::MutexLock lock(&mu_);
        in_seq_ = in_.seq();
      }
      Ack();
      ReadNext();
      return;
    }
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      read_done_ = true;
      release = !writing_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) RemoveHold();
  }

  // After a command: reads the next one, unless the handler's queues are full; then the read
  // waits for them (ResumeRead). Until the read ends the call is held, so the stream outlives
  // the wait.
  void ReadNext() {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      paused_ = true;
      stopping = cancelled_ || finished_;
    }
    std::weak_ptr<LinkStream> weak = self_;
    bool wait = !stopping && link_->wait_for_room_ && link_->wait_for_room_([weak] {
      if (auto self = weak.lock()) self->ResumeRead();
    });
    if (!wait) ResumeRead();
  }

  // Whether nothing came from the control plane for longer than `limit` while this end was
  // reading (a read held back for room does not count).
  bool SilentFor(std::chrono::milliseconds limit) {
    absl::MutexLock lock(&mu_);
    return !paused_ && std::chrono::steady_clock::now() - last_read_ > limit;
  }

  // Starts the read that ReadNext() held back, once.
  void ResumeRead() {
    {
      absl::MutexLock lock(&mu_);
      if (!paused_) return;
      paused_ = false;
      last_read_ = std::chrono::steady_clock::now();
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    if (welcomed_ && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      RELAY_LOG(kWarn, "control-link",
                "stream to the control plane ended: ", status.error_message());
    }
    // Our reference goes first, and it is never the last one: ControlLink::current_ keeps the
    // stream until Run() sees the end signalled below. Destroying the stream destroys its
    // ClientContext, which may drop the last reference to the channel; a channel released on
    // this gRPC callback thread would tear down gRPC's callback threads from one of them (the
    // thread cannot join itself, and its completion queue is freed under it).
    std::optional<std::string> leader;
    const auto& trailers = context_.GetServerTrailingMetadata();
    if (auto it = trailers.find("relay-leader"); it != trailers.end()) {
      leader.emplace(it->second.data(), it->second.size());
    }
    ControlLink* link = link_;
    bool welcomed = welcomed_;
    std::string target = target_;
    self_.reset();
    link->OnStreamDone(welcomed, status, std::move(leader), target);
  }

  void Cancel() {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    context_.TryCancel();
    // A paused stream must read to see its end (the read fails); its queues no longer matter.
    ResumeRead();
  }

 private:
  static constexpr size_t kMaxOutboxMessages = 200000;
  static constexpr size_t kMaxOutboxBytes = 128u << 20;

  ControlLink* link_;
  const std::string target_;
  std::shared_ptr<LinkStream> self_;
  grpc::ClientContext context_;
  ControlMessage in_;
  bool welcomed_ = false;
  absl::Mutex mu_;
  UplinkQueue outbox_ ABSL_GUARDED_BY(mu_){kMaxOutboxMessages, kMaxOutboxBytes};
  uint64_t in_seq_ ABSL_GUARDED_BY(mu_) = 0;       // the last command handled
  uint64_t ack_written_ ABSL_GUARDED_BY(mu_) = 0;  // the ack of the last message written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;  // a read is held back (ReadNext)
  std::chrono::steady_clock::time_point last_read_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;  // Cancel() was called: never hold reads back
};

ControlLink::ControlLink(ControlLinkOptions options, NodeState& state, CommandHandler handler,
                         LoadFn load, std::function<void()> on_detach, WaitForRoomFn wait_for_room)
    : options_(std::move(options)),
      state_(state),
      handler_(std::move(handler)),
      load_(std::move(load)),
      on_detach_(std::move(on_detach)),
      wait_for_room_(std::move(wait_for_room)),
      heartbeat_interval_(options_.heartbeat_interval) {
  for (absl::string_view t : absl::StrSplit(options_.target, ',', absl::SkipWhitespace())) {
    targets_.emplace_back(absl::StripAsciiWhitespace(t));
  }
  if (targets_.empty()) targets_.push_back(options_.target);
}

ControlLink::~ControlLink() { Stop(); }

void ControlLink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ControlLink::Stop() {
  SayGoodbye();
  if (!stop_.HasBeenNotified()) stop_.Notify();
  CancelCurrent();
  if (thread_.joinable()) thread_.join();
}

void ControlLink::SayGoodbye() {
  if (stop_.HasBeenNotified() || leaving_.exchange(true)) return;
  std::shared_ptr<LinkStream> current;
  {
    absl::MutexLock lock(&mu_);
    if (!welcomed_ || stream_done_) return;
    current = current_;
  }
  if (!current) return;
  // Tells the control plane this node leaves on purpose, so it does not wait for it to come
  // back (a restarted control plane would refuse events until it did or timed out). The
  // control plane ends the stream in answer; bounded, since it may be gone or hung.
  NodeMessage goodbye;
  goodbye.mutable_goodbye();
  current->Enqueue(std::move(goodbye));
  current.reset();
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stream_done_; };
  mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(1));
}

void ControlLink::CancelCurrent() {
  // Outside mu_: a cancelled stream may end inline, and its end takes mu_ (OnStreamDone).
  std::shared_ptr<LinkStream> current;
  {
    absl::MutexLock lock(&mu_);
    current = current_;
  }
  if (current) current->Cancel();
}

uint64_t ControlLink::attaches() const {
  absl::MutexLock lock(&mu_);
  return attaches_;
}

bool ControlLink::welcomed() const {
  absl::MutexLock lock(&mu_);
  return welcomed_ && !stream_done_;
}

void ControlLink::OnWelcome(const relay::v1::Welcome& welcome) {
  absl::MutexLock lock(&mu_);
  ++attaches_;
  welcomed_ = true;
  silence_timeout_ = std::chrono::milliseconds(welcome.silence_timeout_ms());
  if (welcome.heartbeat_interval_ms() > 0) {
    heartbeat_interval_ = std::min(options_.heartbeat_interval,
                                   std::chrono::milliseconds(welcome.heartbeat_interval_ms()));
  }
}

void ControlLink::OnStreamDone(bool welcomed, const grpc::Status& status,
                               std::optional<std::string> leader, const std::string& target) {
  state_.Detach();
  if (on_detach_) on_detach_();
  absl::MutexLock lock(&mu_);
  stream_done_ = true;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && leader) {
    // A follower replica: the next attempt goes to the leader it named (none known yet: on
    // round the list, with backoff).
    if (!leader->empty() && *leader != target) redirect_ = *leader;
    follower_answered_ = true;
    std::string note = leader->empty()
                           ? common::StrCat(target, " is a follower; no leader yet")
                           : common::StrCat(target, " is a follower; the leader is ", *leader);
    if (note != last_refusal_) {
      RELAY_LOG(kInfo, "control-link", "control plane at ", note);
      last_refusal_ = std::move(note);
    }
    return;
  }
  // Refusals say what the operator must fix (credential, node id, a rule this node broke);
  // each distinct one is logged once, not on every retry.
  auto code = status.error_code();
  bool refused =
      code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::PERMISSION_DENIED ||
      code == grpc::StatusCode::ALREADY_EXISTS || code == grpc::StatusCode::INVALID_ARGUMENT;
  if (refused && status.error_message() != last_refusal_) {
    last_refusal_ = status.error_message();
    RELAY_LOG(kError, "control-link", "the control plane at ", target,
              " refused this node: ", status.error_message(),
              code == grpc::StatusCode::UNAUTHENTICATED &&
                      status.error_message().find("certificate") == std::string::npos
                  ? " (give a node credential with --node-token-file or --node-token)"
                  : "");
  } else if (welcomed) {
    last_refusal_.clear();
  }
}

namespace {

// The channel to the control plane: the one given (in-process), or one dialled to `target`.
std::shared_ptr<grpc::Channel> ControlPlaneChannel(const ControlLinkOptions& options,
                                                   const std::string& target) {
  if (options.channel) return options.channel;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.max_backoff.count()));
  // A replica that was down is tried again on our own backoff, not gRPC's 1 s minimum.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(options.min_backoff.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.min_backoff.count()));
  // Explicit on both ends of the node link (node_link.proto).
  args.SetMaxReceiveMessageSize(common::kNodeLinkMaxMessageBytes);
  args.SetMaxSendMessageSize(common::kNodeLinkMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (options.tls || !options.tls_ca.empty() || !options.tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto read = [](const std::string& path, std::string* out) {
      std::ifstream in(path);
      out->assign(std::istreambuf_iterator<char>(in), {});
    };
    if (!options.tls_ca.empty()) read(options.tls_ca, &ssl.pem_root_certs);
    if (!options.tls_cert.empty()) {
      read(options.tls_cert, &ssl.pem_cert_chain);
      read(options.tls_key, &ssl.pem_private_key);
    }
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(target, creds, args);
}

}  // namespace

std::string ControlLink::NextTarget() {
  const auto now = std::chrono::steady_clock::now();
  // A replica just left for silence is likely paused: followers may name it as the leader
  // until its lease expires, so it is skipped for a while (unless it is the only one).
  auto suspect = [&](const std::string& t) { return t == suspect_ && now < suspect_until_; };
  std::string redirect;
  {
    absl::MutexLock lock(&mu_);
    redirect = std::exchange(redirect_, std::string());
  }
  if (!redirect.empty() && !suspect(redirect)) return redirect;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const std::string& t = targets_[next_target_++ % targets_.size()];
    if (!suspect(t)) return t;
  }
  return targets_[next_target_++ % targets_.size()];
}

void ControlLink::Suspect(const std::string& target) {
  suspect_ = target;
  suspect_until_ = std::chrono::steady_clock::now() + kSuspectFor;
}

namespace {
// Snapshots of a large node take a while to apply; a replica silent for this long is not busy
// but gone or paused.
constexpr std::chrono::milliseconds kReplicaAttachTimeout{3000};
// The longest wait between attach rounds while follower replicas answer (none leads yet).
constexpr std::chrono::milliseconds kFollowerBackoff{400};
}  // namespace

void ControlLink::Run() {
  // One stub per address (the replicas of the list, and leaders they named); bounded, since a
  // follower may name any address.
  std::map<std::string, std::unique_ptr<relay::v1::NodeLink::Stub>> stubs;
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.min_backoff;
  bool logged_unreachable = false;
  size_t failed_in_round = 0;  // the backoff grows once per round of the replica list
  size_t redirects = 0;        // followed without waiting since the last wait

  while (!stop_.HasBeenNotified()) {
    const std::string target = NextTarget();
    if (!stubs.contains(target) && stubs.size() >= targets_.size() + 8) stubs.clear();
    auto& stub = stubs[target];
    if (!stub) stub = relay::v1::NodeLink::NewStub(ControlPlaneChannel(options_, target));
    auto stream = std::make_shared<LinkStream>(this, target);
    {
      absl::MutexLock lock(&mu_);
      stream_done_ = false;
      welcomed_ = false;
      silence_timeout_ = std::chrono::milliseconds(0);
      current_ = stream;
    }
    stream->Begin(stub.get(), stream);
    NodeMessage hello;
    *hello.mutable_hello() = options_.hello;
    stream->Enqueue(std::move(hello));
    std::weak_ptr<LinkStream> weak = stream;
    NodeState::Uplink uplink;
    uplink.push = [weak](NodeMessage msg) -> uint64_t {
      auto s = weak.lock();
      return s ? s->Push(std::move(msg)) : 0;
    };
    uplink.flush = [weak] {
      if (auto s = weak.lock()) s->Flush();
    };
    state_.Attach(std::move(uplink), load_());
    stream.reset();
    // Heartbeats until the stream ends or we stop.
    auto interval = [this] {
      absl::MutexLock lock(&mu_);
      return heartbeat_interval_;
    };
    auto last_heartbeat = std::chrono::steady_clock::now();
    const auto attempt_started = last_heartbeat;
    bool cancelled_unwelcomed = false;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stream_done_; };
        mu_.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(100));
        if (stream_done_) break;
      }
      if (stop_.HasBeenNotified()) {
        CancelCurrent();
        continue;
      }
      // A replicated leader that stopped speaking (paused, or cut off from us) is left for the
      // next one; the clients stay connected meanwhile.
      // Likewise an attach to a replica that does not answer at all (a paused one, which a
      // follower may still name as the leader until its lease expires): with a list of
      // replicas, an attach not welcomed within kReplicaAttachTimeout moves on to the next.
      std::shared_ptr<LinkStream> current;
      std::chrono::milliseconds silence{0};
      bool unwelcomed_too_long = false;
      {
        absl::MutexLock lock(&mu_);
        if (welcomed_) {
          current = current_;
          silence = silence_timeout_;
        } else if (targets_.size() > 1 && !cancelled_unwelcomed &&
                   std::chrono::steady_clock::now() - attempt_started > kReplicaAttachTimeout) {
          current = current_;
          unwelcomed_too_long = true;
        }
      }
      if (unwelcomed_too_long && current) {
        RELAY_LOG(kWarn, "control-link", "the control plane at ", target, " did not welcome this ",
                  "node within ", kReplicaAttachTimeout.count(), " ms; trying the next replica");
        cancelled_unwelcomed = true;
        Suspect(target);
        current->Cancel();
        continue;
      }
      if (current && silence.count() > 0 && current->SilentFor(silence)) {
        RELAY_LOG(kWarn, "control-link", "the control plane at ", target, " said nothing for ",
                  silence.count(), " ms; attaching to the leader again");
        Suspect(target);
        current->Cancel();
        continue;
      }
      current.reset();
      // The interval can shrink when the welcome arrives, so compare against it every time.
      if (std::chrono::steady_clock::now() - last_heartbeat >= interval()) {
        NodeMessage hb;
        *hb.mutable_heartbeat()->mutable_load() = load_();
        state_.SendUp(std::move(hb));
        last_heartbeat = std::chrono::steady_clock::now();
      }
    }
    bool welcomed;
    bool redirected;
    bool follower_answered;
    {
      absl::MutexLock lock(&mu_);
      welcomed = welcomed_;
      redirected = !redirect_.empty();
      follower_answered = follower_answered_;
      current_.reset();
    }
    if (stop_.HasBeenNotified() || leaving_.load()) break;
    if (welcomed) {
      backoff = options_.min_backoff;  // a healthy attach resets the backoff
      failed_in_round = 0;
      redirects = 0;
      logged_unreachable = false;
      RELAY_LOG(kWarn, "control-link", "lost the control plane at ", target,
                "; re-attaching (clients stay connected)");
    } else if (redirected && redirects < targets_.size() + 1) {
      // A follower named the leader: go there now (bounded, should followers disagree).
      ++redirects;
      continue;
    } else if (!logged_unreachable) {
      RELAY_LOG(kWarn, "control-link", "control plane at ", target,
                " unreachable or not leading; retrying with backoff");
      logged_unreachable = true;
    }
    redirects = 0;
    // A follower answered in this round: the replicas are alive and a leader is being elected
    // (or etcd lost quorum), which ends within about a lease. Growing the backoff to seconds
    // would add up to that much to the failover; a follower's refusal is cheap, so the next
    // round comes within kFollowerBackoff (docs/scaling.md).
    if (follower_answered)
      backoff = std::min(backoff, std::max(options_.min_backoff, kFollowerBackoff));
    {
      absl::MutexLock lock(&mu_);
      follower_answered_ = false;
    }
    // "Equal jitter": wait a random time in [backoff/2, backoff], so nodes cut off together do
    // not all come back at once, and none waits less than half the backoff.
    std::uniform_int_distribution<int64_t> dist(backoff.count() / 2, backoff.count());
    stop_.WaitForNotificationWithTimeout(absl::Milliseconds(dist(rng)));
    if (welcomed || ++failed_in_round >= targets_.size()) {
      failed_in_round = 0;
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
}

}  // namespace relay::dataplane
