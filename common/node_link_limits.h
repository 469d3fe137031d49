// File: node_link_limits.h
// Message size bounds of the node link (relay.v1.NodeLink), shared by both of its ends so they
// cannot disagree. See proto/relay/v1/node_link.proto.
#pragma once

#include <cstddef>

namespace relay::common {

// Largest message either side sends or accepts; set explicitly on the control plane's server and
// the data plane's channel (gRPC's default is 4 MiB receive).
inline constexpr int kNodeLinkMaxMessageBytes = 16 << 20;

// A data plane splits its snapshot into parts of about this size (NodeSnapshot.more), so no
// amount of client state can push a snapshot past kNodeLinkMaxMessageBytes.
inline constexpr size_t kSnapshotPartBytes = 1 << 20;

}  // namespace relay::common
