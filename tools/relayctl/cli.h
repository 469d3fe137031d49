// What every relayctl command shares: the global flags, the gRPC client, the exit codes and the
// output conventions (a table or text by default, the response as JSON under --json).
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/flags.h"
#include "relay/v1/admin.grpc.pb.h"
#include "relay/v1/public.grpc.pb.h"

namespace relay::relayctl {

// Exit codes scripts can rely on.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;        // the server refused the request (other reasons)
constexpr int kExitUsage = 2;        // invalid command line
constexpr int kExitUnavailable = 3;  // server unreachable
constexpr int kExitAuth = 4;         // missing or bad admin credential (UNAUTHENTICATED)
constexpr int kExitNotFound = 5;     // unknown app, node, token...
constexpr int kExitInvalid = 6;      // the server rejected the arguments (INVALID_ARGUMENT)
// The credential is fine but the server's policy refuses the request: a disabled app, a quota
// or rate limit, webhooks not enabled (PERMISSION_DENIED, FAILED_PRECONDITION,
// RESOURCE_EXHAUSTED).
constexpr int kExitRefused = 7;

struct Globals {
  std::string server = "127.0.0.1:50051";
  std::string admin_token;
  std::string data_dir = "./relay-data";
  std::string ca;
  bool json = false;
  bool tls = false;
};

void AddGlobals(common::FlagSet& f, Globals& g);

// Prints the server's refusal (with a hint for the usual causes) and returns its exit code.
int Fail(const grpc::Status& st, const Globals& g);
// Prints a command line error and returns kExitUsage.
int Usage(const std::string& msg);

// `m` as JSON with proto field names; 64-bit integers are JSON numbers (not strings, as the
// proto3 JSON mapping has them), fields at their default value are left out.
std::string ToJson(const google::protobuf::Message& m);
// `a` without its secrets (current and previous): what every command but apps create,
// apps rotate-secret and apps show --show-secret prints.
relay::v1::App WithoutSecrets(relay::v1::App a);
// Parses "90", "90s", "15m", "2h", "30d" into seconds.
bool ParseDuration(const std::string& text, uint64_t* seconds);
// RFC 3339 UTC, or "-" for 0 (never).
std::string FormatTime(int64_t unix_ms);
// A plain aligned table.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

class Client {
 public:
  explicit Client(const Globals& g);

  std::unique_ptr<grpc::ClientContext> AdminContext();
  // Public API calls act for an app with its own key and secret, fetched over the admin API.
  // `stream`: a call that lasts until it is interrupted (no deadline).
  grpc::Status AppContext(const std::string& app, std::unique_ptr<grpc::ClientContext>* out,
                          bool stream = false);

  relay::v1::Admin::Stub& admin() { return *admin_; }
  relay::v1::Channels::Stub& pub() { return *public_; }

 private:
  std::unique_ptr<grpc::ClientContext> Context(bool deadline = true);

  const Globals& g_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<relay::v1::Admin::Stub> admin_;
  std::unique_ptr<relay::v1::Channels::Stub> public_;
};

// The values of every command's flags; each command registers only the flags it reads (a flag a
// command does not register is refused on its command line and not read from the environment).
struct Options {
  std::string app, name, id, key, secret, plan, event, data, exclude, prefix, user, overlap,
      expires, window, interval = "2s";
  std::vector<std::string> channels, headers;
  bool yes = false, watch = false, end_overlap = false, show_secret = false;
  // watch --lifecycle [--since CURSOR] [--events a,b]
  bool lifecycle = false;
  std::string since, events;
  // String flags kept by name (apps update, webhooks add).
  std::map<std::string, std::string> settings;
};

// One parsed command line, handed to the command's handler.
struct Invocation {
  const std::string& command;  // "apps show", "publish"...
  const Globals& globals;
  Options& opt;
  const common::FlagSet& flags;
  const std::vector<std::string>& positional;
  Client& client;

  // The one positional argument; nullopt when there are none or several.
  std::optional<std::string> OnlyPositional() const {
    if (positional.size() != 1) return std::nullopt;
    return positional[0];
  }
};

struct Command {
  const char* name;                               // "group verb" or a single word
  void (*add_flags)(common::FlagSet&, Options&);  // nullptr: the global flags only
  int (*run)(Invocation&);
};

// Flags several commands share.
void AppFlag(common::FlagSet& f, Options& o);            // --app
void AppAndPrefixFlags(common::FlagSet& f, Options& o);  // --app --prefix

// The commands of each group (apps_commands.cc, channel_commands.cc, ...).
std::vector<Command> AppCommands();
std::vector<Command> ChannelCommands();
std::vector<Command> ClusterCommands();
std::vector<Command> WebhookCommands();

// The ways a command ends after its call. Each returns the exit code.
// A response shown as JSON under --json, otherwise by `text` (which prints it).
template <typename Response, typename Text>
int Show(const grpc::Status& st, const Globals& g, const Response& r, Text text) {
  if (!st.ok()) return Fail(st, g);
  if (g.json) {
    std::cout << ToJson(r) << "\n";
    return kExitOk;
  }
  text();
  return kExitOk;
}
// A response with nothing to show: "{}" under --json, otherwise `done`.
int Acknowledge(const grpc::Status& st, const Globals& g, const std::string& done);

}  // namespace relay::relayctl
