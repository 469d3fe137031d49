// File: node_hub.h
// The control plane end of the data plane link (relay.v1.NodeLink.Attach): one reactor per
// attached data plane, each with a bounded outbox. Incoming messages are handed to the Handler on
// gRPC's threads; Send() may be called from any thread.
// Thread-safe. Owned by ControlPlane.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/ack_wait.h"
#include "controlplane/node_validation.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/node_link.grpc.pb.h"

namespace relay::controlplane {

class NodeStream;

// Who a node authenticated as: the credential its Attach presented, or nullopt.
using NodeAuthenticator =
    std::function<std::optional<relay::v1::NodeToken>(std::string_view bearer_token)>;

struct NodeHubOptions {
  // A node that sends nothing (not even a heartbeat) for this long is cut off and withdrawn.
  std::chrono::milliseconds liveness_timeout{15000};
  // Outbox bounds per node; beyond them the node is cut off with RESOURCE_EXHAUSTED.
  size_t max_outbox_messages = 100000;
  size_t max_outbox_bytes = 256u << 20;
  // Checks the bearer token of every Attach; without one, every Attach is refused.
  NodeAuthenticator authenticate;
  // Whether a credential (by id) is still valid when its stream registers (it may have been
  // revoked since the Attach); unset = always.
  std::function<bool(const std::string& credential_id)> credential_valid;
  // When set, an Attach over a network channel must also present a client certificate that the
  // server's TLS verified (--node-link-client-ca); `credential_exempt` names a credential id that
  // needs none (the in-process data plane of `relay`, which has no TLS channel).
  bool require_client_certificate = false;
  std::string client_certificate_exempt;
  // Called once a stream attached with the credential (records its last use).
  std::function<void(const std::string& credential_id)> attached;
  // Replicas: asked at every Attach (after its credential checks). nullopt: attach here;
  // otherwise this control plane does not lead and the Attach ends UNAVAILABLE with trailing
  // metadata `relay-leader: <the value>` (the leader's address, empty when unknown).
  std::function<std::optional<std::string>()> redirect;
  // What a node may send (node_validation.h).
  NodeLimits limits;
  // How long an event-sending request waits for the nodes' acks, and how many may wait.
  AckTrackerOptions acks;
};

// Counters of refused node link traffic (relaxed atomics).
struct NodeHubCounters {
  std::atomic<uint64_t> auth_failures{0};          // Attach without a valid credential (or cert)
  std::atomic<uint64_t> invalid_messages{0};       // streams ended for breaking the link's rules
  std::atomic<uint64_t> takeovers_refused{0};      // node id held by another credential
  std::atomic<uint64_t> client_events_dropped{0};  // relayed client events that broke the rules
};

class NodeHub final : public relay::v1::NodeLink::CallbackService {
 public:
  // Receives node events. Calls for one node are serialized; never called under the hub's lock.
  class Handler {
   public:
    virtual ~Handler() = default;
    // After hello and snapshot: the node is attached (registered, so Send reaches it). Must
    // Send the node its welcome before returning, ordered with every other command the handler
    // sends (an app change broadcast must not overtake the app list in the welcome).
    virtual void OnAttach(const std::string& node_id, const relay::v1::NodeHello& hello,
                          const relay::v1::NodeSnapshot& snapshot) = 0;
    // Every message after the snapshot.
    virtual void OnNodeMessage(const std::string& node_id, const relay::v1::NodeMessage& msg) = 0;
    // Called just before OnDetach when the node is gone for good rather than cut off for a
    // moment: it said goodbye (shutdown, drain), was silent for longer than the liveness
    // timeout, or its credential was revoked. A break without it (stream reset, overflow,
    // control plane shutdown) is a node that may come back.
    virtual void OnDeparted(const std::string& /*node_id*/) {}
    // The node's stream ended (or it was cut off); withdraw its state.
    virtual void OnDetach(const std::string& node_id) = 0;
  };

  NodeHub(NodeHubOptions options, Handler* handler);
  ~NodeHub() override;

  grpc::ServerBidiReactor<relay::v1::NodeMessage, relay::v1::ControlMessage>* Attach(
      grpc::CallbackServerContext* context) override;

  // Queues a message for a node (seq and ack are filled in). False when it is not attached.
  // With `wait`, the request it belongs to waits until the node acknowledges the message (or
  // fails if the node's stream ends first; see ack_wait.h).
  bool Send(const std::string& node_id, relay::v1::ControlMessage msg,
            const std::shared_ptr<AckWait>& wait = nullptr);
  // The waits of event-sending requests for the nodes' acks.
  AckTracker& acks() { return acks_; }
  // Ids of attached nodes.
  std::vector<std::string> NodeIds() const;
  // Whether the node has a registered stream.
  bool Attached(const std::string& node_id) const;
  // Whether the node's outbox holds more than half of its bounds: a publish to it would add to
  // a backlog that is close to cutting the node off (the API refuses instead).
  bool Backlogged(const std::string& node_id) const;
  std::vector<relay::v1::NodeInfo> Nodes() const;
  // Marks a node draining and sends it the drain command.
  bool Drain(const std::string& node_id, uint32_t window_ms);
  // Ends a drain: the node accepts clients again. False when the node is not attached.
  bool Undrain(const std::string& node_id);
  // Cuts off nodes that have been silent for longer than the liveness timeout.
  void SweepDeadNodes();
  // Finishes every stream (shutdown).
  void CloseAll();
  // Finishes every stream with `status` and keeps serving Attach (a replica that stopped
  // leading: its nodes go to the next leader; redirect refuses them here meanwhile).
  void DetachAll(const grpc::Status& status);
  // Cuts off every node attached with the credential `token_id` (it was revoked).
  void DisconnectCredential(const std::string& token_id);
  uint64_t commands_sent() const;
  const NodeHubCounters& counters() const { return counters_; }

 private:
  // Drain() and Undrain(): marks the node's stream and sends it `command`; false for an unknown
  // node or a full outbox.
  bool SetDraining(const std::string& node_id, bool draining, relay::v1::ControlMessage command);
  friend class NodeStream;
  enum class RegisterResult { kRegistered, kTakenOver, kRevoked };
  // Registers `stream` as the node's stream, replacing an older one, unless the older one was
  // attached with another credential and the new credential is not bound to this node id
  // (kTakenOver: a node id cannot be taken over without its credential), or the credential was
  // revoked meanwhile (kRevoked).
  RegisterResult Register(const std::string& node_id, std::shared_ptr<NodeStream> stream);
  // A stream that never registered ended.
  void ForgetUnattached(const NodeStream* stream);
  // False when `stream` is no longer the node's registered stream (replaced by a newer attach).
  bool Unregister(const std::string& node_id, const NodeStream* stream);

  // Logs refused attaches at most once per interval (a stranger can make many).
  void LogRefused(const char* why);

  NodeHubOptions options_;
  Handler* handler_;
  NodeHubCounters counters_;
  std::atomic<int64_t> last_refusal_log_ms_{0};
  std::atomic<uint64_t> commands_sent_{0};  // commands queued to nodes, for commands_sent()
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<NodeStream>> nodes_ ABSL_GUARDED_BY(mu_);
  // Authenticated streams that have not registered yet (hello or snapshot still to come).
  absl::flat_hash_map<const NodeStream*, std::shared_ptr<NodeStream>> unattached_
      ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  AckTracker acks_;
};

}  // namespace relay::controlplane
