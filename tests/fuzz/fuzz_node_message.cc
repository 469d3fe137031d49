// Fuzzes what a data plane can send the control plane over the NodeLink: the input is a series
// of length-delimited relay.v1.NodeMessage (protobuf's delimited format), handled as NodeHub
// hands them to the control plane (controlplane/node_hub.cc, NodeStream::Handle): a valid
// hello, then the snapshot (its parts assembled) -> OnAttach, each later valid message ->
// OnNodeMessage, the stream ended at the first message node_validation.h refuses, and OnDetach
// at the end. The control plane is real (SQLite store in a temp dir with the
// default app, gRPC on a free loopback port). The node id is fixed so the control plane's
// per-node state stays bounded over a run; after the first input every attach is a re-attach,
// which applies the snapshot's effects (member events, counts) like a returning node.
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/node_validation.h"
#include "relay/v1/node_link.pb.h"
#include "tests/fuzz/fuzz_control_plane.h"

namespace {

using relay::controlplane::NodeHub;

constexpr size_t kMaxMessages = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // ControlPlane implements NodeHub::Handler privately (only the hub calls it); this is the
  // hub's own view of it. A C-style cast is the one cast that may name a private base.
  static NodeHub::Handler* handler =
      (NodeHub::Handler*)&relay::fuzz::FuzzControlPlane();  // NOLINT(google-readability-casting)
  // Invalid UTF-8 in string fields fails the parse (as in gRPC) after a log line per field.
  static bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  google::protobuf::io::ArrayInputStream stream(data, static_cast<int>(size));
  std::vector<relay::v1::NodeMessage> messages;
  while (messages.size() < kMaxMessages) {
    relay::v1::NodeMessage m;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&m, &stream, &clean_eof)) break;
    messages.push_back(std::move(m));
  }
  // What the hub does (node_hub.cc, NodeStream::Handle): validate each message, assemble
  // snapshot parts, attach after the first whole snapshot, end the stream at the first message
  // that breaks the rules.
  const relay::controlplane::NodeLimits limits;
  if (messages.empty() || !messages[0].has_hello() ||
      !relay::controlplane::ValidateHello(messages[0].hello(), limits).ok()) {
    return 0;
  }
  const std::string node_id = "fuzz-node";
  bool attached = false;
  std::optional<relay::v1::NodeSnapshot> pending;
  for (size_t i = 1; i < messages.size(); ++i) {
    relay::v1::NodeMessage& m = messages[i];
    if (!relay::controlplane::ValidateNodeMessage(m, limits).ok()) break;
    if (m.has_snapshot()) {
      if (!pending) pending.emplace();
      pending->MergeFrom(m.snapshot());
      if (m.snapshot().more()) continue;
      pending->set_more(false);
      *m.mutable_snapshot() = std::move(*pending);
      pending.reset();
    } else if (pending) {
      break;
    }
    if (!attached) {
      if (!m.has_snapshot()) break;
      handler->OnAttach(node_id, messages[0].hello(), m.snapshot());
      attached = true;
    } else {
      handler->OnNodeMessage(node_id, m);
    }
  }
  if (attached) handler->OnDetach(node_id);
  return 0;
}
