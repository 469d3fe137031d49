// relayctl tokens ..., nodes ..., node-tokens ..., stats: credentials and the cluster's state
// over the admin API.
#include <chrono>
#include <iostream>
#include <thread>

#include "common/strings.h"
#include "tools/relayctl/cli.h"

namespace relay::relayctl {

namespace {

void CreateTokenFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.String("name", &o.name, "Token label");
  f.String("expires-in", &o.expires, "Lifetime, e.g. 30d (default: never expires)");
}

int CreateToken(Invocation& in) {
  if (in.opt.app.empty()) return Usage("tokens create needs --app");
  relay::v1::CreateTokenRequest req;
  req.set_app(in.opt.app);
  req.set_name(in.opt.name);
  uint64_t secs = 0;
  if (!in.opt.expires.empty() && !ParseDuration(in.opt.expires, &secs)) {
    return Usage("--expires-in takes a duration such as 12h or 30d");
  }
  req.set_expires_in_seconds(secs);
  relay::v1::CreateTokenResponse r;
  auto st = in.client.admin().CreateToken(in.client.AdminContext().get(), req, &r);
  return Show(st, in.globals, r, [&] {
    std::cout << "Token id: " << r.token().id() << "\nToken:    " << r.secret()
              << "\nExpires:  " << FormatTime(r.token().expires_unix_ms())
              << "\nThe token is shown only now. Use it as 'Authorization: Bearer <token>'.\n";
  });
}

int ListTokens(Invocation& in) {
  if (in.opt.app.empty()) return Usage("tokens list needs --app");
  relay::v1::ListTokensRequest req;
  req.set_app(in.opt.app);
  relay::v1::ListTokensResponse r;
  auto st = in.client.admin().ListTokens(in.client.AdminContext().get(), req, &r);
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.tokens()) {
      rows.push_back({t.id(), t.name(), FormatTime(t.created_unix_ms()),
                      FormatTime(t.expires_unix_ms()), FormatTime(t.last_used_unix_ms())});
    }
    PrintTable({"ID", "NAME", "CREATED", "EXPIRES", "LAST USED"}, rows);
  });
}

int RevokeToken(Invocation& in) {
  auto ref = in.OnlyPositional();
  if (!ref) return Usage("tokens revoke needs exactly one TOKEN_ID");
  relay::v1::RevokeTokenRequest req;
  req.set_token_id(*ref);
  relay::v1::RevokeTokenResponse r;
  auto st = in.client.admin().RevokeToken(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals, "Revoked " + *ref);
}

int ListNodes(Invocation& in) {
  relay::v1::ListNodesResponse r;
  auto st = in.client.admin().ListNodes(in.client.AdminContext().get(), {}, &r);
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : r.nodes()) {
      rows.push_back({n.node_id(), n.address(), std::to_string(n.load().connections()),
                      std::to_string(n.load().channels()),
                      n.capacity() == 0
                          ? "-"
                          : common::StrCat(n.load().connections() * 100 / n.capacity(), "%"),
                      FormatTime(n.attached_unix_ms()), n.draining() ? "draining" : "serving"});
    }
    PrintTable({"NODE", "ADDRESS", "CONNECTIONS", "CHANNELS", "LOAD", "ATTACHED", "STATE"}, rows);
  });
}

void DrainFlags(common::FlagSet& f, Options& o) {
  f.String("window", &o.window, "Window over which clients are closed (e.g. 10s)");
}

int DrainNode(Invocation& in) {
  auto node = in.OnlyPositional();
  if (!node) return Usage("nodes drain needs exactly one NODE id");
  uint64_t secs = 0;
  if (!in.opt.window.empty() && !ParseDuration(in.opt.window, &secs)) {
    return Usage("--window takes e.g. 10s");
  }
  relay::v1::DrainNodeRequest req;
  req.set_node_id(*node);
  req.set_window_ms(static_cast<uint32_t>(secs * 1000));
  relay::v1::DrainNodeResponse r;
  auto st = in.client.admin().DrainNode(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals,
                     "Draining " + *node +
                         ": its clients are closed with 4200 and new ones refused until "
                         "relayctl nodes undrain " +
                         *node);
}

int UndrainNode(Invocation& in) {
  auto node = in.OnlyPositional();
  if (!node) return Usage("nodes undrain needs exactly one NODE id");
  relay::v1::UndrainNodeRequest req;
  req.set_node_id(*node);
  relay::v1::UndrainNodeResponse r;
  auto st = in.client.admin().UndrainNode(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals, "Undrained " + *node + ": it accepts clients again");
}

void CreateNodeTokenFlags(common::FlagSet& f, Options& o) {
  f.String("name", &o.name, "Credential label (required)");
  f.String("node-id", &o.id, "Bind the credential to this node id (recommended)");
}

int CreateNodeToken(Invocation& in) {
  if (in.opt.name.empty()) return Usage("node-tokens create needs --name");
  relay::v1::CreateNodeTokenRequest req;
  req.set_name(in.opt.name);
  req.set_node_id(in.opt.id);
  relay::v1::CreateNodeTokenResponse r;
  auto st = in.client.admin().CreateNodeToken(in.client.AdminContext().get(), req, &r);
  return Show(st, in.globals, r, [&] {
    std::cout << "Credential id: " << r.token().id()
              << "\nNode id:       " << (r.token().node_id().empty() ? "any" : r.token().node_id())
              << "\nToken:         " << r.secret()
              << "\nThe token is shown only now. Give it to the data plane with "
                 "--node-token-file FILE (or RELAY_NODE_TOKEN).\n";
  });
}

int ListNodeTokens(Invocation& in) {
  relay::v1::ListNodeTokensResponse r;
  auto st = in.client.admin().ListNodeTokens(in.client.AdminContext().get(), {}, &r);
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.tokens()) {
      rows.push_back({t.id(), t.name(), t.node_id().empty() ? "any" : t.node_id(),
                      FormatTime(t.created_unix_ms()), FormatTime(t.last_used_unix_ms())});
    }
    PrintTable({"ID", "NAME", "NODE", "CREATED", "LAST ATTACH"}, rows);
  });
}

int RevokeNodeToken(Invocation& in) {
  auto ref = in.OnlyPositional();
  if (!ref) return Usage("node-tokens revoke needs exactly one credential ID");
  relay::v1::RevokeNodeTokenRequest req;
  req.set_token_id(*ref);
  relay::v1::RevokeNodeTokenResponse r;
  auto st = in.client.admin().RevokeNodeToken(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals, "Revoked " + *ref);
}

void StatsFlags(common::FlagSet& f, Options& o) {
  f.String("app", &o.app, "Only this app");
  f.Bool("watch", &o.watch, "Print rates every interval until interrupted");
  f.String("interval", &o.interval, "Interval for --watch (e.g. 2s)");
}

void PrintStats(const relay::v1::Stats& s, const relay::v1::Stats* prev) {
  double dt = prev ? (s.unix_ms() - prev->unix_ms()) / 1000.0 : 0;
  auto rate = [&](uint64_t now, uint64_t before) {
    return prev && dt > 0 ? common::StrCat(static_cast<uint64_t>((now - before) / dt), "/s")
                          : std::string("-");
  };
  relay::v1::Stats none;
  const relay::v1::Stats& before = prev ? *prev : none;
  PrintTable(
      {"NODES", "CONNECTIONS", "CHANNELS", "MSG IN", "MSG OUT", "IN/S", "OUT/S", "PUBLISH CMDS"},
      {{std::to_string(s.nodes()), std::to_string(s.connections()), std::to_string(s.channels()),
        std::to_string(s.messages_in()), std::to_string(s.messages_out()),
        rate(s.messages_in(), before.messages_in()), rate(s.messages_out(), before.messages_out()),
        std::to_string(s.publish_commands())}});
}

// Once, or under --watch every interval (with rates since the previous sample) until killed.
int Stats(Invocation& in) {
  uint64_t every = 2;
  if (!ParseDuration(in.opt.interval, &every) || every == 0) {
    return Usage("--interval takes e.g. 2s");
  }
  relay::v1::GetStatsRequest req;
  req.set_app(in.opt.app);
  std::optional<relay::v1::Stats> prev;
  while (true) {
    relay::v1::Stats s;
    auto st = in.client.admin().GetStats(in.client.AdminContext().get(), req, &s);
    int rc = Show(st, in.globals, s, [&] { PrintStats(s, prev ? &*prev : nullptr); });
    if (rc != kExitOk || !in.opt.watch) return rc;
    prev = s;
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::seconds(every));
  }
}

}  // namespace

std::vector<Command> ClusterCommands() {
  return {
      {"tokens create", CreateTokenFlags, CreateToken},
      {"tokens list", AppAndPrefixFlags, ListTokens},
      {"tokens revoke", nullptr, RevokeToken},
      {"nodes list", nullptr, ListNodes},
      {"nodes drain", DrainFlags, DrainNode},
      {"nodes undrain", nullptr, UndrainNode},
      {"node-tokens create", CreateNodeTokenFlags, CreateNodeToken},
      {"node-tokens list", nullptr, ListNodeTokens},
      {"node-tokens revoke", nullptr, RevokeNodeToken},
      {"stats", StatsFlags, Stats},
  };
}

}  // namespace relay::relayctl
