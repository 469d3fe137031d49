// File: ws_session.h
// Starts a Pusher protocol 7 WebSocket session on an upgraded HTTP connection. The session lives
// on the shard that owns the connection's io_context. The WebSocket framing is Relay's own
// (ws_conn.h): Beast parses only the upgrade request.
#pragma once

#include "transport/http_server.h"

namespace relay::dataplane {

class DataPlane;
class Shard;

// Takes over `stream` (already on `shard`'s context) and runs the session until it closes.
void StartWsSession(DataPlane& dp, Shard& shard, transport::ClientStream stream,
                    transport::BeastRequest request, std::string leftover);

}  // namespace relay::dataplane
