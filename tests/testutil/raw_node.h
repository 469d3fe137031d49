// A hand-driven NodeLink.Attach, as a stranger, a faulty node or a test of the control plane's
// node handling would make it: every message written by hand, nothing validated on this side.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relay/v1/admin.pb.h"
#include "relay/v1/node_link.grpc.pb.h"

namespace relay::testutil {

// For NodeHubOptions::authenticate in tests: every token is the credential "test".
inline std::optional<relay::v1::NodeToken> AcceptAnyNodeToken(std::string_view /*token*/) {
  relay::v1::NodeToken t;
  t.set_id("test");
  return t;
}

class RawNode {
 public:
  // Dials 127.0.0.1:`port`; an empty `token` sends no credential. Snapshots name `app_id`.
  RawNode(int port, const std::string& token, std::string app_id = "app-id")
      : app_id_(std::move(app_id)) {
    stub_ = relay::v1::NodeLink::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                             grpc::InsecureChannelCredentials()));
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (!token.empty()) ctx_.AddMetadata("authorization", "Bearer " + token);
    stream_ = stub_->Attach(&ctx_);
  }
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;
  ~RawNode() {
    if (finished_) return;
    ctx_.TryCancel();
    End();
  }

  bool Write(relay::v1::NodeMessage msg) {
    msg.set_seq(++seq_);
    return stream_->Write(msg);
  }
  bool Hello(const std::string& node_id) {
    relay::v1::NodeMessage m;
    m.mutable_hello()->set_node_id(node_id);
    m.mutable_hello()->set_address("10.0.0.7:8080");
    m.mutable_hello()->set_capacity(1000);
    return Write(std::move(m));
  }
  // A snapshot (or one part of it, with `more`) holding one subscriber of `channel`.
  bool Snapshot(const std::string& channel, bool more = false) {
    relay::v1::NodeMessage m;
    auto* c = m.mutable_snapshot()->add_channels();
    c->set_app_id(app_id_);
    c->set_channel(channel);
    c->set_subscriptions(1);
    m.mutable_snapshot()->set_more(more);
    return Write(std::move(m));
  }
  // Hello, a one-channel snapshot, and the welcome.
  bool Attach(const std::string& node_id, const std::string& channel = "orders") {
    relay::v1::ControlMessage welcome;
    return Hello(node_id) && Snapshot(channel) && Read(&welcome) && welcome.has_welcome();
  }
  bool Heartbeat(uint64_t connections) {
    relay::v1::NodeMessage m;
    m.mutable_heartbeat()->mutable_load()->set_connections(connections);
    return Write(std::move(m));
  }
  bool Read(relay::v1::ControlMessage* m) { return stream_->Read(m); }
  // Reads until the stream ends and returns its status; counts what arrived into `messages`.
  grpc::Status End(int* messages = nullptr) {
    relay::v1::ControlMessage m;
    int n = 0;
    while (stream_->Read(&m)) ++n;
    if (messages != nullptr) *messages = n;
    finished_ = true;
    return stream_->Finish();
  }
  // Half-closes, then waits for the end.
  grpc::Status Close() {
    stream_->WritesDone();
    return End();
  }
  void Cancel() { ctx_.TryCancel(); }

 private:
  std::string app_id_;
  std::unique_ptr<relay::v1::NodeLink::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<relay::v1::NodeMessage, relay::v1::ControlMessage>>
      stream_;
  uint64_t seq_ = 0;
  bool finished_ = false;
};

}  // namespace relay::testutil
