// relayctl: the operator's CLI for Relay, over the admin and public gRPC APIs. This file reads
// the command words and dispatches; each group's commands live in *_commands.cc, what they share
// in cli.h.
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/version.h"
#include "tools/relayctl/cli.h"

namespace {

using namespace relay;
using namespace relay::relayctl;

constexpr const char* kHelp = R"(Commands:
  apps list                                 List apps
  apps create --name NAME [--id --key --secret --plan]
                                            Create an app (credentials generated unless given)
  apps show APP [--show-secret]             Show one app (APP is an id or a key; the secret
                                            only with --show-secret)
  apps update APP [--name --plan --max-connections --client-events true|false ...]
                                            Change an app's settings (see apps update --help)
  apps enable APP | apps disable APP        Enable or disable an app
  apps rotate-secret APP [--overlap 1h]     New secret; the old one verifies during the overlap
                                            (--overlap 0: the old one stops at once)
  apps rotate-secret APP --end-overlap      Complete a rotation: previous secrets stop now
  apps delete APP [--yes]                   Delete an app (asks unless --yes)
  tokens create --app APP [--name N] [--expires-in 30d]
  tokens list --app APP
  tokens revoke TOKEN_ID
  publish --app APP --channel C [--channel C2...] --event E --data JSON [--exclude SOCKET_ID]
  channels --app APP [--prefix P]           Occupied channels with subscription counts
  channel --app APP NAME                    One channel
  users --app APP CHANNEL                   Members of a presence channel
  send-to-user --app APP --user U --event E --data JSON
  terminate --app APP --user U              Close a user's connections
  watch --app APP [--channel NAME...] [--prefix P]
                                            Print every event published to or sent by a client
                                            on the app's channels (all of them without a
                                            filter) as it happens, until Ctrl-C; --json: one
                                            JSON object per line
  watch --app APP --lifecycle [--since CURSOR] [--prefix P] [--events T1,T2]
                                            Lifecycle events (the webhook types) from the
                                            durable log, each with its cursor; --since resumes
                                            after a cursor (0: the oldest kept)
  nodes list                                Attached data planes
  nodes drain NODE [--window 10s]           Move a node's clients away (closed with 4200 over
                                            the window, new ones refused; HTTP API stays up)
  nodes undrain NODE                        End a drain: the node accepts clients again
  node-tokens create --name N [--node-id ID]
                                            Issue a data plane credential (bound to ID if given)
  node-tokens list                          Node credentials (never their text)
  node-tokens revoke ID                     Revoke one; nodes attached with it are cut off
  stats [--app APP] [--watch] [--interval 2s]
  webhooks add --app APP --url URL [--events channel_occupied,member_added,...]
               [--filter-prefix P] [--filter-suffix S] [--header K=V ...]
               [--batch-window-ms N] [--batch-max N] [--delay-ms N] [--retry-seconds N]
  webhooks list --app APP                   Endpoints with delivered/failed/retrying/dropped
  webhooks remove ID
  webhooks test --app APP                   Send a signed test event to every endpoint

Every apps command takes its APP as the argument or as --app APP, like the other groups.

Global flags (before or after the command); only these are read from the environment:
  --server HOST:PORT   the control plane's gRPC address (default 127.0.0.1:50051) [env RELAY_SERVER]
  --admin-token TOKEN  admin credential [env RELAY_ADMIN_TOKEN]; otherwise read from
                       <data-dir>/admin.token
  --data-dir DIR       a local control plane's data dir (default ./relay-data) [env RELAY_DATA_DIR]
  --json               machine-readable output
  --tls, --ca FILE     use TLS for gRPC (with a CA bundle) [env RELAY_TLS, RELAY_CA]

Exit codes:
  0  ok
  1  the server failed the request for another reason
  2  bad command line (nothing was sent)
  3  server unreachable
  4  missing or bad admin credential
  5  not found (app, node, token, webhook)
  6  arguments rejected by the server
  7  refused by policy: a disabled app, a quota or rate limit, webhooks not enabled)";

// Every command, by its words ("apps show", "publish").
const std::map<std::string, Command>& Commands() {
  static const auto* kAll = [] {
    auto* all = new std::map<std::string, Command>;
    for (auto group : {AppCommands(), ChannelCommands(), ClusterCommands(), WebhookCommands()}) {
      for (const Command& c : group) all->emplace(c.name, c);
    }
    return all;
  }();
  return *kAll;
}

// The words of each command: a group's verbs ("apps" -> list, create...), none for a single word.
std::map<std::string, std::vector<std::string>> CommandWords() {
  std::map<std::string, std::vector<std::string>> words;
  for (const auto& [name, command] : Commands()) {
    size_t space = name.find(' ');
    auto& verbs = words[name.substr(0, space)];
    if (space != std::string::npos) verbs.push_back(name.substr(space + 1));
  }
  return words;
}

// Parses the command's flags (the global ones and its own) and runs it.
int RunCommand(const std::vector<std::string>& words, const std::vector<std::string>& args,
               Globals& g) {
  std::string name = words[0] + (words.size() > 1 ? " " + words[1] : "");
  auto it = Commands().find(name);
  if (it == Commands().end()) return Usage("unknown command '" + name + "'");
  const Command& command = it->second;
  common::FlagSet f("relayctl " + name + " [flags]", "See relayctl --help for every command.");
  AddGlobals(f, g);
  // Only the global flags come from the environment: RELAY_PLAN or RELAY_MAX_CONNECTIONS left
  // in a shell must not silently change what `apps update` sends.
  f.set_env(false);
  Options opt;
  if (command.add_flags) command.add_flags(f, opt);
  std::vector<std::string> positional;
  if (auto st = f.Parse(args, &positional); !st.ok()) return Usage(std::string(st.message()));
  if (f.help_requested()) {
    std::cout << f.Usage() << "\n" << kHelp << "\n";
    return kExitOk;
  }
  Client client(g);
  Invocation in{name, g, opt, f, positional, client};
  return command.run(in);
}

}  // namespace

int main(int argc, char** argv) {
  if (relay::common::VersionRequested(argc, argv)) {
    std::cout << relay::common::VersionLine("relayctl") << "\n";
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // The command words are the leading non-flag arguments that name a command.
  const auto kSub = CommandWords();
  Globals g;
  std::vector<std::string> words, rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (words.empty() && kSub.count(a)) {
      words.push_back(a);
      continue;
    }
    if (words.size() == 1 && !kSub.at(words[0]).empty()) {
      const auto& subs = kSub.at(words[0]);
      if (std::find(subs.begin(), subs.end(), a) != subs.end()) {
        words.push_back(a);
        continue;
      }
    }
    rest.push_back(a);
  }
  if (words.empty()) {
    common::FlagSet f("relayctl COMMAND [flags]", "Operate a Relay cluster over gRPC.");
    AddGlobals(f, g);
    std::vector<std::string> positional;
    auto st = f.Parse(rest, &positional);
    if (!st.ok()) return Usage(std::string(st.message()));
    if (f.help_requested() || rest.empty()) {
      std::cout << "Usage: relayctl COMMAND [flags]\n\nOperate a Relay cluster over gRPC.\n\n"
                << kHelp << "\n";
      return rest.empty() && !f.help_requested() ? kExitUsage : kExitOk;
    }
    return Usage("unknown command '" + (positional.empty() ? rest[0] : positional[0]) + "'");
  }
  if (words.size() == 1 && !kSub.at(words[0]).empty()) {
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end()) {
      std::cout << kHelp << "\n";
      return kExitOk;
    }
    return Usage("'" + words[0] + "' needs a subcommand");
  }
  return RunCommand(words, rest, g);
}
