// NodeHub alone, behind an in-process gRPC server on loopback, driven by hand-written node
// streams: who may attach, what reaches the handler, what the node receives, and every way a
// stream is cut off (rules broken, takeover, revocation, silence, outbox overflow, shutdown).
#include "controlplane/node_hub.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <future>

#include "controlplane/route_gate.h"
#include "tests/testutil/raw_node.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using namespace std::chrono_literals;
using relay::v1::ControlMessage;
using relay::v1::NodeMessage;
using testutil::WaitFor;

// Records every call; sends the welcome on attach as the Handler contract asks.
class Recorder : public NodeHub::Handler {
 public:
  void OnAttach(const std::string& node_id, const relay::v1::NodeHello& hello,
                const relay::v1::NodeSnapshot& snapshot) override {
    {
      // Recorded before the welcome goes out: a node that read its welcome finds it here.
      absl::MutexLock lock(&mu_);
      attached_.push_back(node_id);
      hellos_.push_back(hello);
      snapshots_.push_back(snapshot);
    }
    ControlMessage welcome;
    welcome.mutable_welcome();
    bool sent = hub->Send(node_id, welcome);
    absl::MutexLock lock(&mu_);
    welcome_refused_ |= !sent;
  }
  void OnNodeMessage(const std::string& node_id, const NodeMessage& msg) override {
    absl::MutexLock lock(&mu_);
    messages_.emplace_back(node_id, msg);
  }
  void OnDetach(const std::string& node_id) override {
    absl::MutexLock lock(&mu_);
    detached_.push_back(node_id);
  }
  void OnDeparted(const std::string& node_id) override {
    absl::MutexLock lock(&mu_);
    departed_.push_back(node_id);
  }
  std::vector<std::string> departed() const {
    absl::MutexLock lock(&mu_);
    return departed_;
  }

  std::vector<std::string> attached() const {
    absl::MutexLock lock(&mu_);
    return attached_;
  }
  std::vector<std::string> detached() const {
    absl::MutexLock lock(&mu_);
    return detached_;
  }
  std::vector<std::pair<std::string, NodeMessage>> messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  relay::v1::NodeSnapshot last_snapshot() const {
    absl::MutexLock lock(&mu_);
    return snapshots_.back();
  }
  bool welcome_refused() const {
    absl::MutexLock lock(&mu_);
    return welcome_refused_;
  }

  NodeHub* hub = nullptr;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> attached_ ABSL_GUARDED_BY(mu_);
  std::vector<relay::v1::NodeHello> hellos_ ABSL_GUARDED_BY(mu_);
  std::vector<relay::v1::NodeSnapshot> snapshots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, NodeMessage>> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> detached_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> departed_ ABSL_GUARDED_BY(mu_);
  bool welcome_refused_ ABSL_GUARDED_BY(mu_) = false;
};

// Credentials: "good" (id t1, any node), "other" (id t3, any node), "bound" (id t2, only
// node edge-1); anything else is refused.
std::optional<relay::v1::NodeToken> Authenticate(std::string_view token) {
  relay::v1::NodeToken t;
  if (token == "good") {
    t.set_id("t1");
  } else if (token == "other") {
    t.set_id("t3");
  } else if (token == "bound") {
    t.set_id("t2");
    t.set_node_id("edge-1");
  } else {
    return std::nullopt;
  }
  return t;
}

class NodeHubTest : public ::testing::Test {
 protected:
  void Start(NodeHubOptions options = {}) {
    options.authenticate = Authenticate;
    options.attached = [this](const std::string& id) {
      absl::MutexLock lock(&mu_);
      attached_credentials_.push_back(id);
    };
    hub_ = std::make_unique<NodeHub>(std::move(options), &handler_);
    handler_.hub = hub_.get();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(hub_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (hub_) hub_->CloseAll();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 5s);
  }

  std::vector<std::string> attached_credentials() {
    absl::MutexLock lock(&mu_);
    return attached_credentials_;
  }

  Recorder handler_;
  std::unique_ptr<NodeHub> hub_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  std::vector<std::string> attached_credentials_ ABSL_GUARDED_BY(mu_);
};

using testutil::RawNode;

NodeMessage BadClientEvent() {
  NodeMessage m;
  auto* e = m.mutable_client_event();
  e->set_app_id("app-1");
  e->set_channel("public-channel");  // client events are for private and presence channels
  e->set_event("client-x");
  e->set_data_json("{}");
  e->set_socket_id("1.2");
  return m;
}

TEST_F(NodeHubTest, AnAttachWithoutAValidCredentialIsRefused) {
  Start();
  RawNode anonymous(port_, "", "app-1");
  anonymous.Hello("n1");
  EXPECT_EQ(anonymous.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  RawNode stranger(port_, "guess", "app-1");
  stranger.Hello("n1");
  EXPECT_EQ(stranger.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(hub_->counters().auth_failures.load(), 2u);
  EXPECT_TRUE(handler_.attached().empty());
  EXPECT_TRUE(hub_->NodeIds().empty());
}

TEST_F(NodeHubTest, AttachedNodeExchangesMessagesAndDetachesWhenItsStreamEnds) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  EXPECT_EQ(handler_.attached(), std::vector<std::string>{"n1"});
  EXPECT_EQ(handler_.last_snapshot().channels(0).channel(), "orders");
  EXPECT_EQ(attached_credentials(), std::vector<std::string>{"t1"});
  EXPECT_EQ(hub_->NodeIds(), std::vector<std::string>{"n1"});
  auto nodes = hub_->Nodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].address(), "10.0.0.7:8080");
  EXPECT_EQ(nodes[0].capacity(), 1000u);
  EXPECT_FALSE(nodes[0].draining());

  // Messages after the snapshot reach the handler; a heartbeat's load shows in Nodes().
  ASSERT_TRUE(node.Heartbeat(42));
  ASSERT_TRUE(WaitFor([&] { return handler_.messages().size() == 1; }));
  EXPECT_EQ(handler_.messages()[0].first, "n1");
  EXPECT_TRUE(handler_.messages()[0].second.has_heartbeat());
  EXPECT_EQ(hub_->Nodes()[0].load().connections(), 42u);

  // Send numbers the messages and acknowledges what the node sent (hello, snapshot, heartbeat).
  ASSERT_TRUE(hub_->Drain("n1", 500));
  ControlMessage got;
  ASSERT_TRUE(node.Read(&got));
  EXPECT_EQ(got.drain().window_ms(), 500u);
  EXPECT_EQ(got.seq(), 2u) << "the welcome was 1";
  EXPECT_EQ(got.ack(), 3u);
  EXPECT_TRUE(hub_->Nodes()[0].draining());
  EXPECT_FALSE(hub_->Send("unknown", ControlMessage()));
  EXPECT_FALSE(hub_->Drain("unknown", 1));

  // Undrain: the node is told, and is listed as serving again.
  ASSERT_TRUE(hub_->Undrain("n1"));
  ASSERT_TRUE(node.Read(&got));
  EXPECT_TRUE(got.has_undrain());
  EXPECT_FALSE(hub_->Nodes()[0].draining());
  EXPECT_FALSE(hub_->Undrain("unknown"));

  EXPECT_TRUE(node.Close().ok());
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_EQ(handler_.detached()[0], "n1");
  EXPECT_TRUE(hub_->NodeIds().empty());
  EXPECT_FALSE(hub_->Send("n1", ControlMessage()));
}

// A request waiting for a command is settled by the node's ack of that command's seq (an
// empty message carries it); an ack of a seq never sent confirms only what was sent.
TEST_F(NodeHubTest, AWaitIsSettledByTheNodesAck) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));  // the welcome is seq 1
  auto wait = hub_->acks().Begin();
  ASSERT_TRUE(hub_->Send("n1", ControlMessage(), wait));
  ASSERT_TRUE(hub_->Send("n1", ControlMessage(), wait));
  ControlMessage got;
  ASSERT_TRUE(node.Read(&got));
  ASSERT_TRUE(node.Read(&got));
  EXPECT_EQ(got.seq(), 3u);
  std::promise<absl::Status> answered;
  EXPECT_FALSE(wait->Seal([&](absl::Status s) { answered.set_value(s); }).has_value());
  auto future = answered.get_future();
  NodeMessage ack;
  ack.set_seq(3);
  ack.set_ack(2);  // the first command only
  ASSERT_TRUE(node.Write(ack));
  // The hub applies an ack before handing the message on: once the handler has it, it counted.
  ASSERT_TRUE(WaitFor([&] { return handler_.messages().size() == 1; }));
  EXPECT_EQ(future.wait_for(0s), std::future_status::timeout);
  EXPECT_EQ(hub_->acks().waiting(), 1u);
  ack.set_seq(4);
  ack.set_ack(3);
  ASSERT_TRUE(node.Write(ack));
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(future.get().ok());
  EXPECT_EQ(hub_->acks().WaitTimes().count, 1u);

  // An ack past what was sent (a buggy node) does not confirm commands sent later.
  ack.set_seq(5);
  ack.set_ack(1000);
  ASSERT_TRUE(node.Write(ack));
  ASSERT_TRUE(WaitFor([&] { return handler_.messages().size() == 3; }));
  auto later = hub_->acks().Begin();
  ASSERT_TRUE(hub_->Send("n1", ControlMessage(), later));
  EXPECT_TRUE(later->Waiting());
}

TEST_F(NodeHubTest, AStreamEndingBeforeItsAckRefusesTheWaitingRequests) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  auto wait = hub_->acks().Begin();
  ASSERT_TRUE(hub_->Send("n1", ControlMessage(), wait));
  std::promise<absl::Status> answered;
  EXPECT_FALSE(wait->Seal([&](absl::Status s) { answered.set_value(s); }).has_value());
  node.Cancel();
  auto future = answered.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  absl::Status st = future.get();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(st), 1);
  EXPECT_EQ(hub_->acks().refused(AckRefusal::kStreamEnded), 1u);
  EXPECT_EQ(hub_->acks().waiting(), 0u);
}

TEST_F(NodeHubTest, TheFirstMessagesMustBeHelloThenSnapshot) {
  Start();
  RawNode no_hello(port_, "good", "app-1");
  no_hello.Heartbeat(1);
  EXPECT_EQ(no_hello.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  RawNode no_snapshot(port_, "good", "app-1");
  no_snapshot.Hello("n1");
  no_snapshot.Heartbeat(1);
  EXPECT_EQ(no_snapshot.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  RawNode bad_id(port_, "good", "app-1");
  bad_id.Hello("no spaces");
  EXPECT_EQ(bad_id.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(hub_->counters().invalid_messages.load(), 3u);
  EXPECT_TRUE(handler_.attached().empty());
  EXPECT_TRUE(handler_.detached().empty()) << "a node that never attached withdraws nothing";
}

TEST_F(NodeHubTest, ABadClientEventIsDroppedAndTheNodeStays) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  ASSERT_TRUE(node.Write(BadClientEvent()));
  ASSERT_TRUE(node.Heartbeat(1));
  ASSERT_TRUE(WaitFor([&] { return !handler_.messages().empty(); }));
  auto messages = handler_.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_TRUE(messages[0].second.has_heartbeat()) << "the bad event never reached the handler";
  EXPECT_EQ(hub_->counters().client_events_dropped.load(), 1u);
  EXPECT_EQ(hub_->counters().invalid_messages.load(), 0u);
  EXPECT_EQ(hub_->NodeIds(), std::vector<std::string>{"n1"});
}

TEST_F(NodeHubTest, AnyOtherBrokenRuleCutsTheNodeOffAndWithdrawsIt) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  NodeMessage delta;
  delta.mutable_delta()->add_channels()->set_app_id("bad app id");
  ASSERT_TRUE(node.Write(delta));
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_EQ(hub_->counters().invalid_messages.load(), 1u);
  EXPECT_TRUE(handler_.messages().empty());
}

TEST_F(NodeHubTest, ASnapshotInPartsReachesTheHandlerWhole) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Hello("n1"));
  ASSERT_TRUE(node.Snapshot("a", /*more=*/true));
  ASSERT_TRUE(node.Snapshot("b", /*more=*/true));
  EXPECT_TRUE(handler_.attached().empty());
  ASSERT_TRUE(node.Snapshot("c"));
  ControlMessage welcome;
  ASSERT_TRUE(node.Read(&welcome));
  auto snap = handler_.last_snapshot();
  ASSERT_EQ(snap.channels_size(), 3);
  EXPECT_EQ(snap.channels(2).channel(), "c");
  EXPECT_FALSE(snap.more());
}

TEST_F(NodeHubTest, ASnapshotPartMustBeFollowedByTheNextPart) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Hello("n1"));
  ASSERT_TRUE(node.Snapshot("a", /*more=*/true));
  ASSERT_TRUE(node.Heartbeat(1));
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(NodeHubTest, AnOversizedSnapshotIsRefused) {
  NodeHubOptions options;
  options.limits.max_snapshot_entries = 2;
  Start(std::move(options));
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Hello("n1"));
  ASSERT_TRUE(node.Snapshot("a", /*more=*/true));
  ASSERT_TRUE(node.Snapshot("b", /*more=*/true));
  node.Snapshot("c", /*more=*/true);
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(handler_.attached().empty());
}

TEST_F(NodeHubTest, ABoundCredentialAttachesOnlyItsNode) {
  Start();
  RawNode wrong(port_, "bound", "app-1");
  wrong.Hello("edge-2");
  EXPECT_EQ(wrong.End().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  RawNode right(port_, "bound", "app-1");
  EXPECT_TRUE(right.Attach("edge-1"));
}

TEST_F(NodeHubTest, ANodeIdIsTakenOverOnlyWithItsCredential) {
  Start();
  RawNode owner(port_, "good", "app-1");
  ASSERT_TRUE(owner.Attach("n1"));

  RawNode thief(port_, "other", "app-1");
  thief.Hello("n1");
  thief.Snapshot("x");
  EXPECT_EQ(thief.End().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(hub_->counters().takeovers_refused.load(), 1u);
  EXPECT_EQ(hub_->NodeIds(), std::vector<std::string>{"n1"});

  // The same credential replaces the stream (a reconnect); the replaced stream withdraws
  // nothing, since the newer snapshot already stands for the node.
  RawNode again(port_, "good", "app-1");
  ASSERT_TRUE(again.Attach("n1"));
  EXPECT_EQ(owner.End().error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(handler_.attached().size(), 2u);
  ASSERT_TRUE(again.Heartbeat(1));
  ASSERT_TRUE(WaitFor([&] { return handler_.messages().size() == 1; }));
  EXPECT_TRUE(handler_.detached().empty());
  EXPECT_EQ(hub_->NodeIds(), std::vector<std::string>{"n1"});
}

TEST_F(NodeHubTest, RevokingACredentialCutsItsNodesOff) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  RawNode other(port_, "other", "app-1");
  ASSERT_TRUE(other.Attach("n2"));
  hub_->DisconnectCredential("t1");
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_EQ(handler_.detached()[0], "n1");
  EXPECT_EQ(hub_->NodeIds(), std::vector<std::string>{"n2"});
}

TEST_F(NodeHubTest, ACredentialRevokedBeforeItsSnapshotNeverRegisters) {
  NodeHubOptions options;
  options.credential_valid = [](const std::string& id) { return id != "t1"; };
  Start(std::move(options));
  RawNode node(port_, "good", "app-1");
  node.Hello("n1");
  node.Snapshot("a");
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(handler_.attached().empty());
}

TEST_F(NodeHubTest, ASilentNodeIsSweptAway) {
  NodeHubOptions options;
  options.liveness_timeout = 1ms;
  Start(std::move(options));
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  RawNode half_open(port_, "good", "app-1");
  ASSERT_TRUE(half_open.Hello("n2"));
  auto node_end = std::async(std::launch::async, [&] { return node.End(); });
  auto half_open_end = std::async(std::launch::async, [&] { return half_open.End(); });
  auto ended = [](std::future<grpc::Status>& f) {
    return f.wait_for(0s) == std::future_status::ready;
  };
  // Sweep until both are cut off (the half-open stream may reach the hub a moment later).
  ASSERT_TRUE(WaitFor([&] {
    hub_->SweepDeadNodes();
    return ended(node_end) && ended(half_open_end);
  }));
  // The hub's status, not the client's own deadline.
  EXPECT_EQ(node_end.get().error_message(), "no heartbeat");
  EXPECT_EQ(half_open_end.get().error_message(), "no heartbeat")
      << "an attach that does not complete is cut off too";
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_TRUE(hub_->NodeIds().empty());
  // Declared dead: gone for good, not a break the control plane waits out.
  EXPECT_EQ(handler_.departed(), std::vector<std::string>{"n1"});
}

// A goodbye ends the stream cleanly and the node departs; a break (cancel) is only a detach.
TEST_F(NodeHubTest, AGoodbyeIsADepartureAndABreakIsNot) {
  Start();
  RawNode leaving(port_, "good", "app-1");
  ASSERT_TRUE(leaving.Attach("n1"));
  NodeMessage bye;
  bye.mutable_goodbye();
  ASSERT_TRUE(leaving.Write(bye));
  EXPECT_TRUE(leaving.End().ok());
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_EQ(handler_.departed(), std::vector<std::string>{"n1"});

  RawNode broken(port_, "good", "app-1");
  ASSERT_TRUE(broken.Attach("n2"));
  ASSERT_TRUE(WaitFor([&] { return hub_->NodeIds().size() == 1; }));
  broken.Cancel();
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 2; }));
  EXPECT_EQ(handler_.departed(), std::vector<std::string>{"n1"});
}

TEST_F(NodeHubTest, AnOutboxOverflowCutsTheNodeOff) {
  NodeHubOptions options;
  options.max_outbox_bytes = 1;  // not even the welcome fits
  Start(std::move(options));
  RawNode node(port_, "good", "app-1");
  node.Hello("n1");
  node.Snapshot("a");
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(WaitFor([&] { return handler_.detached().size() == 1; }));
  EXPECT_TRUE(handler_.welcome_refused());
}

TEST_F(NodeHubTest, CloseAllEndsEveryStream) {
  Start();
  RawNode node(port_, "good", "app-1");
  ASSERT_TRUE(node.Attach("n1"));
  RawNode other(port_, "other", "app-1");
  ASSERT_TRUE(other.Attach("n2"));
  hub_->CloseAll();
  EXPECT_EQ(node.End().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(other.End().error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace relay::controlplane
