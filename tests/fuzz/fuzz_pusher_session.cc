// Fuzzes the Pusher protocol messages a client session handles (dataplane/ws_session.cc):
// pusher:subscribe / unsubscribe, pusher:signin, pusher:ping / pong, client events and anything
// else, through the smallest real seam there is: an in-process cluster (control plane and one
// data plane, tests/e2e/cluster.h) and a real WebSocket client. Each input is one connection;
// its lines are sent as text messages, in order. Where a message's data.auth is the string
// "SIGN", the harness puts in the valid signature for this connection (subscription: socket
// id, channel and channel_data; sign-in: socket id and user_data), so hostile channel_data and
// user_data reach the code behind authentication. A final pusher:ping waits (bounded) for the
// session to have handled everything before the connection closes.
#include <simdjson.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/pusher_auth.h"
#include "tests/e2e/cluster.h"

namespace {

using relay::testutil::WsClient;

constexpr size_t kMaxMessages = 64;

// The message with "SIGN" replaced by this connection's valid token, when it asks for one.
std::string Signed(std::string message, const std::string& socket_id) {
  size_t at = message.find("\"SIGN\"");
  if (at == std::string::npos) return message;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(message).get(doc)) return message;
  std::string_view event, auth;
  simdjson::dom::object d;
  if (doc["event"].get(event) || doc["data"].get(d) || d["auth"].get(auth) || auth != "SIGN") {
    return message;
  }
  std::string to_sign;
  std::string_view channel, channel_data, user_data;
  if (event == "pusher:subscribe" && d["channel"].get(channel) == simdjson::SUCCESS) {
    if (d["channel_data"].get(channel_data)) channel_data = {};
    to_sign = relay::common::ChannelStringToSign(socket_id, channel, channel_data);
  } else if (event == "pusher:signin" && d["user_data"].get(user_data) == simdjson::SUCCESS) {
    to_sign = relay::common::UserStringToSign(socket_id, user_data);
  } else {
    return message;
  }
  std::string token = relay::common::SignToken("app-key", "app-secret", to_sign);
  return message.replace(at, 6, "\"" + token + "\"");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Never destroyed: libFuzzer exits from wherever it likes.
  static relay::testutil::Cluster* cluster = new relay::testutil::Cluster(1);
  auto client = WsClient::Connect(cluster->port(), "/app/app-key?protocol=7&client=fuzz&version=1");
  if (!client || !client->Established()) std::abort();  // the server must keep serving
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (size_t n = 0; !in.empty() && n < kMaxMessages; ++n) {
    size_t nl = in.find('\n');
    client->Send(Signed(std::string(in.substr(0, nl)), client->socket_id()));
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  }
  client->Send(R"({"event":"pusher:ping","data":{}})");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    auto frame = client->Receive(std::chrono::seconds(5));
    if (!frame || frame->find("\"pusher:pong\"") != std::string::npos) break;
  }
  return 0;
}
