// relayctl: the operator's CLI for Relay, over the admin and public gRPC APIs.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <thread>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/channel.h"
#include "common/flags.h"
#include "common/strings.h"
#include "relay/v1/admin.grpc.pb.h"
#include "relay/v1/public.grpc.pb.h"

namespace {

using namespace relay;

// Exit codes scripts can rely on.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;        // the server refused the request (other reasons)
constexpr int kExitUsage = 2;        // invalid command line
constexpr int kExitUnavailable = 3;  // server unreachable
constexpr int kExitAuth = 4;         // missing or bad admin credential
constexpr int kExitNotFound = 5;     // unknown app, node, token...
constexpr int kExitInvalid = 6;      // the server rejected the arguments (INVALID_ARGUMENT)

constexpr const char* kCommands = R"(Commands:
  apps list                                 List apps
  apps create --name NAME [--id --key --secret --plan]
                                            Create an app (credentials generated unless given)
  apps show APP                             Show one app (APP is an id or a key)
  apps update APP [--name --plan --max-connections --client-events true|false ...]
                                            Change an app's settings (see apps update --help)
  apps enable APP | apps disable APP        Enable or disable an app
  apps rotate-secret APP [--overlap 1h]     New secret; the old one verifies during the overlap
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
  nodes list                                Attached data planes
  nodes drain NODE [--window 10s]           Move a node's clients away
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
  webhooks test APP                         Send a signed test event to every endpoint

Global flags (before or after the command):
  --server HOST:PORT   the control plane's gRPC address (default 127.0.0.1:50051) [env RELAY_SERVER]
  --admin-token TOKEN  admin credential [env RELAY_ADMIN_TOKEN]; otherwise read from
                       <data-dir>/admin.token
  --data-dir DIR       a local control plane's data dir (default ./relay-data) [env RELAY_DATA_DIR]
  --json               machine-readable output
  --tls, --ca FILE     use TLS for gRPC (with a CA bundle)

Exit codes: 0 ok, 1 server error, 2 bad command line, 3 server unreachable,
4 bad or missing admin credential, 5 not found, 6 arguments rejected by the server.)";

struct Globals {
  std::string server = "127.0.0.1:50051";
  std::string admin_token;
  std::string data_dir = "./relay-data";
  std::string ca;
  bool json = false;
  bool tls = false;
};

int ExitFor(const grpc::Status& st) {
  switch (st.error_code()) {
    case grpc::StatusCode::OK: return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: return kExitUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return kExitAuth;
    case grpc::StatusCode::NOT_FOUND: return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::ALREADY_EXISTS: return kExitInvalid;
    default: return kExitError;
  }
}

int Fail(const grpc::Status& st, const Globals& g) {
  std::string msg = st.error_message();
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    msg = common::StrCat("cannot reach the control plane at ", g.server, " (", msg,
                         "); is it running? (--server HOST:PORT)");
  } else if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    msg += " (pass --admin-token, set RELAY_ADMIN_TOKEN, or point --data-dir at the control "
           "plane's data dir)";
  }
  std::cerr << "relayctl: " << msg << "\n";
  return ExitFor(st);
}

int Usage(const std::string& msg) {
  std::cerr << "relayctl: " << msg << " (see relayctl --help)\n";
  return kExitUsage;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

// Parses "90", "90s", "15m", "2h", "30d" into seconds.
bool ParseDuration(const std::string& text, uint64_t* seconds) {
  if (text.empty()) return false;
  uint64_t mult = 1;
  std::string num = text;
  switch (text.back()) {
    case 's': mult = 1; num.pop_back(); break;
    case 'm': mult = 60; num.pop_back(); break;
    case 'h': mult = 3600; num.pop_back(); break;
    case 'd': mult = 86400; num.pop_back(); break;
    default: break;
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(common::AbslView(num), &n)) return false;
  *seconds = n * mult;
  return true;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  time_t t = static_cast<time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A plain aligned table.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::cout << r[i];
      if (i + 1 < r.size()) std::cout << std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

class Client {
 public:
  explicit Client(const Globals& g) : g_(g) {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (g.tls || !g.ca.empty()) {
      grpc::SslCredentialsOptions o;
      if (!g.ca.empty()) {
        std::ifstream in(g.ca);
        o.pem_root_certs.assign(std::istreambuf_iterator<char>(in), {});
      }
      creds = grpc::SslCredentials(o);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    channel_ = grpc::CreateChannel(g.server, creds);
    admin_ = relay::v1::Admin::NewStub(channel_);
    public_ = relay::v1::Channels::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> AdminContext() {
    auto ctx = Context();
    std::string token = g_.admin_token;
    if (token.empty()) {
      std::ifstream in(g_.data_dir + "/admin.token");
      std::getline(in, token);
    }
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  // Public API calls act for an app with its own key and secret, fetched over the admin API.
  grpc::Status AppContext(const std::string& app, std::unique_ptr<grpc::ClientContext>* out) {
    relay::v1::GetAppRequest req;
    req.set_app(app);
    relay::v1::App a;
    auto st = admin_->GetApp(AdminContext().get(), req, &a);
    if (!st.ok()) return st;
    *out = Context();
    (*out)->AddMetadata("x-relay-key", a.key());
    (*out)->AddMetadata("x-relay-secret", a.secret());
    return grpc::Status::OK;
  }

  relay::v1::Admin::Stub& admin() { return *admin_; }
  relay::v1::Channels::Stub& pub() { return *public_; }

 private:
  std::unique_ptr<grpc::ClientContext> Context() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }

  const Globals& g_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<relay::v1::Admin::Stub> admin_;
  std::unique_ptr<relay::v1::Channels::Stub> public_;
};

void AddGlobals(common::FlagSet& f, Globals& g) {
  f.String("server", &g.server, "Control plane gRPC address HOST:PORT");
  f.String("admin-token", &g.admin_token, "Admin credential");
  f.String("data-dir", &g.data_dir, "Local control plane data dir (for admin.token)");
  f.String("ca", &g.ca, "CA bundle for TLS");
  f.Bool("json", &g.json, "Machine-readable JSON output");
  f.Bool("tls", &g.tls, "Use TLS");
}

void PrintApp(const relay::v1::App& a, bool show_secret) {
  std::cout << "id:        " << a.id() << "\n"
            << "key:       " << a.key() << "\n";
  if (show_secret) std::cout << "secret:    " << a.secret() << "\n";
  std::cout << "name:      " << a.name() << "\n"
            << "enabled:   " << (a.enabled() ? "yes" : "no") << "\n"
            << "plan:      " << a.plan() << "\n"
            << "limits:    max_connections=" << a.limits().max_connections()
            << " max_event_payload_bytes=" << a.limits().max_event_payload_bytes()
            << " max_presence_members=" << a.limits().max_presence_members()
            << " max_client_events_per_second=" << a.limits().max_client_events_per_second()
            << " max_backend_events_per_second=" << a.limits().max_backend_events_per_second()
            << " max_daily_messages=" << a.limits().max_daily_messages() << "\n"
            << "features:  client_events=" << (a.features().client_events() ? "on" : "off")
            << " subscription_count=" << (a.features().subscription_count() ? "on" : "off")
            << " require_user_authentication="
            << (a.features().require_user_authentication() ? "on" : "off")
            << " cache_ttl_seconds=" << a.features().cache_ttl_seconds() << "\n";
  for (const auto& p : a.previous_secrets()) {
    std::cout << "previous secret valid until " << FormatTime(p.expires_unix_ms()) << "\n";
  }
}

// Every subcommand: (args after the command words) -> exit code.
int RunCommand(const std::vector<std::string>& words, std::vector<std::string> args,
               Globals& g) {
  std::string cmd = words[0];
  std::string sub = words.size() > 1 ? words[1] : "";
  std::string name = cmd + (sub.empty() ? "" : " " + sub);
  common::FlagSet f("relayctl " + name + " [flags]", "See relayctl --help for every command.");
  AddGlobals(f, g);
  std::string app, flag_name, id, key, secret, plan, event, data, exclude, prefix, user, overlap,
      expires, window, interval = "2s";
  std::vector<std::string> channels;
  bool yes = false, watch = false, end_overlap = false;
  std::map<std::string, std::string> setters;
  std::vector<std::string> positional;
  auto need_app = [&] { f.String("app", &app, "App id or key"); };
  if (name == "apps create") {
    f.String("name", &flag_name, "App name (required)");
    f.String("id", &id, "App id (generated when absent)");
    f.String("key", &key, "App key (generated when absent)");
    f.String("secret", &secret, "App secret (generated when absent)");
    f.String("plan", &plan, "Plan name");
  } else if (name == "apps update") {
    for (const char* s : {"name", "plan", "max-connections", "max-event-payload-bytes",
                          "max-presence-members", "max-presence-user-info-bytes",
                          "max-client-events-per-second", "max-backend-events-per-second",
                          "max-daily-messages", "client-events", "subscription-count",
                          "require-user-authentication", "user-authentication-timeout",
                          "cache-ttl"}) {
      setters[s];
    }
    for (auto& [k, v] : setters) f.String(k, &v, "New value");
  } else if (name == "apps rotate-secret") {
    f.String("overlap", &overlap, "How long the old secret keeps verifying (e.g. 1h; default 1h)");
    f.Bool("end-overlap", &end_overlap, "Keep the current secret; previous secrets stop now");
  } else if (name == "apps delete") {
    f.Bool("yes", &yes, "Do not ask for confirmation");
  } else if (name == "tokens create") {
    need_app();
    f.String("name", &flag_name, "Token label");
    f.String("expires-in", &expires, "Lifetime, e.g. 30d (default: never expires)");
  } else if (name == "tokens list" || name == "channels" || name == "channel" || name == "users") {
    need_app();
    f.String("prefix", &prefix, "Only channels starting with this prefix");
  } else if (name == "publish" || name == "send-to-user" || name == "terminate") {
    need_app();
    f.List("channel", &channels, "Target channel (repeatable)");
    f.String("event", &event, "Event name");
    f.String("data", &data, "Event data (sent as a string; usually JSON)");
    f.String("exclude", &exclude, "Socket id to leave out");
    f.String("user", &user, "User id");
  } else if (name == "nodes drain") {
    f.String("window", &window, "Window over which clients are closed (e.g. 10s)");
  } else if (name == "node-tokens create") {
    f.String("name", &flag_name, "Credential label (required)");
    f.String("node-id", &id, "Bind the credential to this node id (recommended)");
  } else if (name == "webhooks add") {
    need_app();
    setters["url"];
    setters["events"];
    setters["filter-prefix"];
    setters["filter-suffix"];
    setters["batch-window-ms"];
    setters["batch-max"];
    setters["delay-ms"];
    setters["retry-seconds"];
    for (auto& [k, v] : setters) f.String(k, &v, "See relayctl --help");
    f.List("header", &channels, "Extra request header K=V (repeatable)");
  } else if (name == "webhooks list") {
    need_app();
  } else if (name == "stats") {
    f.String("app", &app, "Only this app");
    f.Bool("watch", &watch, "Print rates every interval until interrupted");
    f.String("interval", &interval, "Interval for --watch (e.g. 2s)");
  }
  if (auto st = f.Parse(args, &positional); !st.ok()) return Usage(std::string(st.message()));
  if (f.help_requested()) {
    std::cout << f.Usage() << "\n" << kCommands << "\n";
    return kExitOk;
  }
  Client c(g);
  grpc::Status st;
  auto positional_arg = [&](const char* what) -> std::optional<std::string> {
    if (positional.size() != 1) return std::nullopt;
    (void)what;
    return positional[0];
  };

  if (name == "apps list") {
    relay::v1::ListAppsResponse r;
    st = c.admin().ListApps(c.AdminContext().get(), {}, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : r.apps()) {
      rows.push_back({a.id(), a.key(), a.name(), a.enabled() ? "enabled" : "disabled", a.plan()});
    }
    PrintTable({"ID", "KEY", "NAME", "STATE", "PLAN"}, rows);
    return kExitOk;
  }
  if (name == "apps create") {
    if (flag_name.empty()) return Usage("apps create needs --name");
    relay::v1::CreateAppRequest req;
    req.set_name(flag_name);
    req.set_id(id);
    req.set_key(key);
    req.set_secret(secret);
    req.set_plan(plan);
    relay::v1::App a;
    st = c.admin().CreateApp(c.AdminContext().get(), req, &a);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(a) << "\n", kExitOk;
    PrintApp(a, true);
    std::cout << "\nThe secret is shown only now; store it safely.\n";
    return kExitOk;
  }
  if (name == "apps show" || name == "apps enable" || name == "apps disable" ||
      name == "apps update" || name == "apps rotate-secret" || name == "apps delete") {
    auto ref = positional_arg("APP");
    if (!ref) return Usage(name + " needs exactly one APP (id or key)");
    relay::v1::App a;
    if (name == "apps show") {
      relay::v1::GetAppRequest req;
      req.set_app(*ref);
      st = c.admin().GetApp(c.AdminContext().get(), req, &a);
    } else if (name == "apps rotate-secret") {
      relay::v1::RotateSecretRequest req;
      req.set_app(*ref);
      uint64_t secs = 3600;
      if (!overlap.empty() && !ParseDuration(overlap, &secs)) {
        return Usage("--overlap takes a duration such as 90s, 15m, 1h");
      }
      req.set_overlap_seconds(static_cast<uint32_t>(secs));
      req.set_end_overlap(end_overlap);
      st = c.admin().RotateSecret(c.AdminContext().get(), req, &a);
      if (st.ok() && !g.json && end_overlap) {
        std::cout << "Previous secrets of " << a.id() << " no longer verify.\n";
        return kExitOk;
      }
      if (st.ok() && !g.json) {
        std::cout << "New secret: " << a.secret() << "\nThe previous secret verifies for "
                  << secs << " more seconds.\n";
        return kExitOk;
      }
    } else if (name == "apps delete") {
      if (!yes && !isatty(STDIN_FILENO)) {
        std::cerr << "relayctl: apps delete asks for confirmation on a terminal; pass --yes in "
                     "scripts (nothing deleted)\n";
        return kExitUsage;
      }
      if (!yes) {
        std::cerr << "Delete app '" << *ref << "' and close its connections? Type the app id or "
                                               "key to confirm: ";
        std::string answer;
        if (!std::getline(std::cin, answer) || answer != *ref) {
          std::cerr << "relayctl: not confirmed; nothing deleted (use --yes in scripts)\n";
          return kExitUsage;
        }
      }
      relay::v1::DeleteAppRequest req;
      req.set_app(*ref);
      relay::v1::DeleteAppResponse r;
      st = c.admin().DeleteApp(c.AdminContext().get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      if (!g.json) std::cout << "Deleted app " << *ref << "\n";
      else std::cout << "{}\n";
      return kExitOk;
    } else {
      relay::v1::UpdateAppRequest req;
      req.set_app(*ref);
      auto* ch = req.mutable_changes();
      if (name == "apps enable" || name == "apps disable") {
        ch->set_enabled(name == "apps enable");
        req.add_update_mask("enabled");
      } else {
        static const std::map<std::string, std::string> kPaths = {
            {"max-connections", "limits.max_connections"},
            {"max-event-payload-bytes", "limits.max_event_payload_bytes"},
            {"max-presence-members", "limits.max_presence_members"},
            {"max-presence-user-info-bytes", "limits.max_presence_user_info_bytes"},
            {"max-client-events-per-second", "limits.max_client_events_per_second"},
            {"max-backend-events-per-second", "limits.max_backend_events_per_second"},
            {"max-daily-messages", "limits.max_daily_messages"},
            {"client-events", "features.client_events"},
            {"subscription-count", "features.subscription_count"},
            {"require-user-authentication", "features.require_user_authentication"},
            {"user-authentication-timeout", "features.user_authentication_timeout_seconds"},
            {"cache-ttl", "features.cache_ttl_seconds"}};
        for (const auto& [flag, value] : setters) {
          if (!f.WasSet(flag)) continue;
          if (flag == "name") {
            ch->set_name(value);
            req.add_update_mask("name");
            continue;
          }
          if (flag == "plan") {
            ch->set_plan(value);
            req.add_update_mask("plan");
            continue;
          }
          const std::string& path = kPaths.at(flag);
          bool is_limit = path.rfind("limits.", 0) == 0;
          google::protobuf::Message* msg =
              is_limit ? static_cast<google::protobuf::Message*>(ch->mutable_limits())
                       : static_cast<google::protobuf::Message*>(ch->mutable_features());
          const auto* field = msg->GetDescriptor()->FindFieldByName(path.substr(path.find('.') + 1));
          const auto* refl = msg->GetReflection();
          if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
            if (value != "true" && value != "false" && value != "on" && value != "off") {
              return Usage("--" + flag + " takes true or false");
            }
            refl->SetBool(msg, field, value == "true" || value == "on");
          } else {
            uint64_t n = 0;
            if (!absl::SimpleAtoi(common::AbslView(value), &n)) {
              return Usage("--" + flag + " takes a non-negative integer");
            }
            if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT32) {
              if (n > UINT32_MAX) return Usage("--" + flag + " is too large");
              refl->SetUInt32(msg, field, static_cast<uint32_t>(n));
            } else {
              refl->SetUInt64(msg, field, n);
            }
          }
          req.add_update_mask(path);
        }
        if (req.update_mask().empty()) return Usage("apps update needs at least one setting");
      }
      st = c.admin().UpdateApp(c.AdminContext().get(), req, &a);
    }
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(a) << "\n", kExitOk;
    PrintApp(a, false);
    return kExitOk;
  }
  if (name == "tokens create") {
    if (app.empty()) return Usage("tokens create needs --app");
    relay::v1::CreateTokenRequest req;
    req.set_app(app);
    req.set_name(flag_name);
    uint64_t secs = 0;
    if (!expires.empty() && !ParseDuration(expires, &secs)) {
      return Usage("--expires-in takes a duration such as 12h or 30d");
    }
    req.set_expires_in_seconds(secs);
    relay::v1::CreateTokenResponse r;
    st = c.admin().CreateToken(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::cout << "Token id: " << r.token().id() << "\nToken:    " << r.secret()
              << "\nExpires:  " << FormatTime(r.token().expires_unix_ms())
              << "\nThe token is shown only now. Use it as 'Authorization: Bearer <token>'.\n";
    return kExitOk;
  }
  if (name == "tokens list") {
    if (app.empty()) return Usage("tokens list needs --app");
    relay::v1::ListTokensRequest req;
    req.set_app(app);
    relay::v1::ListTokensResponse r;
    st = c.admin().ListTokens(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.tokens()) {
      rows.push_back({t.id(), t.name(), FormatTime(t.created_unix_ms()),
                      FormatTime(t.expires_unix_ms()), FormatTime(t.last_used_unix_ms())});
    }
    PrintTable({"ID", "NAME", "CREATED", "EXPIRES", "LAST USED"}, rows);
    return kExitOk;
  }
  if (name == "tokens revoke") {
    auto ref = positional_arg("TOKEN_ID");
    if (!ref) return Usage("tokens revoke needs exactly one TOKEN_ID");
    relay::v1::RevokeTokenRequest req;
    req.set_token_id(*ref);
    relay::v1::RevokeTokenResponse r;
    st = c.admin().RevokeToken(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    std::cout << (g.json ? "{}" : "Revoked " + *ref) << "\n";
    return kExitOk;
  }
  if (name == "publish" || name == "channels" || name == "channel" || name == "users" ||
      name == "send-to-user" || name == "terminate") {
    if (app.empty()) return Usage(name + " needs --app");
    std::unique_ptr<grpc::ClientContext> ctx;
    st = c.AppContext(app, &ctx);
    if (!st.ok()) return Fail(st, g);
    if (name == "publish") {
      if (channels.empty() || event.empty()) return Usage("publish needs --channel and --event");
      relay::v1::TriggerRequest req;
      req.set_app(app);
      for (const auto& ch : channels) req.add_channels(ch);
      req.set_name(event);
      req.set_data(data);
      req.set_socket_id(exclude);
      relay::v1::TriggerResponse r;
      st = c.pub().Trigger(ctx.get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      std::cout << (g.json ? "{}" : "Published " + event + " to " + std::to_string(channels.size()) +
                                        " channel(s)")
                << "\n";
      return kExitOk;
    }
    if (name == "channels") {
      relay::v1::ListChannelsRequest req;
      req.set_app(app);
      req.set_filter_by_prefix(prefix);
      req.set_info("subscription_count");
      relay::v1::ListChannelsResponse r;
      st = c.pub().ListChannels(ctx.get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
      std::vector<std::vector<std::string>> rows;
      for (const auto& ch : r.channels()) {
        rows.push_back({ch.name(), std::to_string(ch.subscription_count())});
      }
      PrintTable({"CHANNEL", "SUBSCRIPTIONS"}, rows);
      return kExitOk;
    }
    if (name == "channel") {
      auto ch = positional_arg("NAME");
      if (!ch) return Usage("channel needs exactly one channel NAME");
      relay::v1::GetChannelRequest req;
      req.set_app(app);
      req.set_channel(*ch);
      std::string info = "subscription_count";
      common::ChannelKind kind = common::ClassifyChannel(*ch);
      if (kind.is_presence) info += ",user_count";
      if (kind.is_cache) info += ",cache";
      req.set_info(info);
      relay::v1::ChannelInfo r;
      st = c.pub().GetChannel(ctx.get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
      std::cout << "channel:        " << *ch << "\noccupied:       "
                << (r.occupied() ? "yes" : "no")
                << "\nsubscriptions:  " << r.subscription_count() << "\n";
      if (kind.is_presence) std::cout << "users:          " << r.user_count() << "\n";
      if (r.has_cache()) {
        std::cout << "cached event:   " << r.cache().event() << " (ttl " << r.cache().ttl_seconds()
                  << "s)\n";
      }
      return kExitOk;
    }
    if (name == "users") {
      auto ch = positional_arg("CHANNEL");
      if (!ch) return Usage("users needs exactly one presence CHANNEL");
      relay::v1::ListPresenceUsersRequest req;
      req.set_app(app);
      req.set_channel(*ch);
      relay::v1::ListPresenceUsersResponse r;
      st = c.pub().ListPresenceUsers(ctx.get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
      std::vector<std::vector<std::string>> rows;
      for (const auto& u : r.users()) rows.push_back({u.user_id(), u.user_info_json()});
      PrintTable({"USER", "INFO"}, rows);
      return kExitOk;
    }
    if (user.empty()) return Usage(name + " needs --user");
    if (name == "send-to-user") {
      if (event.empty()) return Usage("send-to-user needs --event");
      relay::v1::SendToUserRequest req;
      req.set_app(app);
      req.set_user_id(user);
      req.set_name(event);
      req.set_data(data);
      relay::v1::SendToUserResponse r;
      st = c.pub().SendToUser(ctx.get(), req, &r);
      if (!st.ok()) return Fail(st, g);
      std::cout << (g.json ? "{}" : "Sent " + event + " to user " + user) << "\n";
      return kExitOk;
    }
    relay::v1::TerminateUserConnectionsRequest req;
    req.set_app(app);
    req.set_user_id(user);
    relay::v1::TerminateUserConnectionsResponse r;
    st = c.pub().TerminateUserConnections(ctx.get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    std::cout << (g.json ? "{}" : "Closing the connections of user " + user) << "\n";
    return kExitOk;
  }
  if (name == "webhooks add") {
    if (app.empty() || setters["url"].empty()) return Usage("webhooks add needs --app and --url");
    relay::v1::AddWebhookRequest req;
    req.set_app(app);
    auto* h = req.mutable_webhook();
    h->set_url(setters["url"]);
    for (absl::string_view e : absl::StrSplit(setters["events"], ',', absl::SkipWhitespace())) {
      h->add_event_types(std::string(e));
    }
    h->set_filter_prefix(setters["filter-prefix"]);
    h->set_filter_suffix(setters["filter-suffix"]);
    for (const auto& kv : channels) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return Usage("--header takes K=V");
      (*h->mutable_headers())[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [flag, setter] :
         std::vector<std::pair<std::string, std::function<void(uint32_t)>>>{
             {"batch-window-ms", [h](uint32_t v) { h->set_batch_window_ms(v); }},
             {"batch-max", [h](uint32_t v) { h->set_batch_max_events(v); }},
             {"delay-ms", [h](uint32_t v) { h->set_delay_ms(v); }},
             {"retry-seconds", [h](uint32_t v) { h->set_retry_seconds(v); }}}) {
      if (setters[flag].empty()) continue;
      uint32_t v = 0;
      if (!absl::SimpleAtoi(common::AbslView(setters[flag]), &v)) {
        return Usage("--" + flag + " takes a non-negative integer");
      }
      setter(v);
    }
    relay::v1::Webhook r;
    st = c.admin().AddWebhook(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::cout << "Added webhook " << r.id() << " -> " << r.url() << "\n";
    return kExitOk;
  }
  if (name == "webhooks list") {
    if (app.empty()) return Usage("webhooks list needs --app");
    relay::v1::ListWebhooksRequest req;
    req.set_app(app);
    relay::v1::ListWebhooksResponse r;
    st = c.admin().ListWebhooks(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::vector<std::vector<std::string>> rows;
    for (const auto& h : r.webhooks()) {
      std::string events;
      for (const auto& e : h.event_types()) events += (events.empty() ? "" : ",") + e;
      rows.push_back({h.id(), h.url(), events.empty() ? "all" : events,
                      std::to_string(h.stats().delivered()), std::to_string(h.stats().failed()),
                      std::to_string(h.stats().retrying()), std::to_string(h.stats().dropped()),
                      h.stats().last_error().empty() ? "-" : h.stats().last_error()});
    }
    PrintTable({"ID", "URL", "EVENTS", "DELIVERED", "FAILED", "RETRYING", "DROPPED", "LAST ERROR"},
               rows);
    return kExitOk;
  }
  if (name == "webhooks remove") {
    auto ref = positional_arg("ID");
    if (!ref) return Usage("webhooks remove needs exactly one webhook ID");
    relay::v1::RemoveWebhookRequest req;
    req.set_webhook_id(*ref);
    relay::v1::RemoveWebhookResponse r;
    st = c.admin().RemoveWebhook(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    std::cout << (g.json ? "{}" : "Removed " + *ref) << "\n";
    return kExitOk;
  }
  if (name == "webhooks test") {
    auto ref = positional_arg("APP");
    if (!ref) return Usage("webhooks test needs exactly one APP");
    relay::v1::TestWebhooksRequest req;
    req.set_app(*ref);
    relay::v1::TestWebhooksResponse r;
    auto ctx = c.AdminContext();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    st = c.admin().TestWebhooks(ctx.get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    bool all_ok = true;
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.results()) {
      all_ok &= t.error().empty();
      rows.push_back({t.webhook_id(), t.url(), std::to_string(t.status()),
                      t.error().empty() ? "ok" : t.error()});
    }
    PrintTable({"ID", "URL", "STATUS", "RESULT"}, rows);
    return all_ok ? kExitOk : kExitError;
  }
  if (name == "nodes list") {
    relay::v1::ListNodesResponse r;
    st = c.admin().ListNodes(c.AdminContext().get(), {}, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : r.nodes()) {
      rows.push_back({n.node_id(), n.address(), std::to_string(n.load().connections()),
                      std::to_string(n.load().channels()),
                      n.capacity() == 0 ? "-"
                                        : common::StrCat(n.load().connections() * 100 / n.capacity(), "%"),
                      FormatTime(n.attached_unix_ms()), n.draining() ? "draining" : "serving"});
    }
    PrintTable({"NODE", "ADDRESS", "CONNECTIONS", "CHANNELS", "LOAD", "ATTACHED", "STATE"}, rows);
    return kExitOk;
  }
  if (name == "nodes drain") {
    auto node = positional_arg("NODE");
    if (!node) return Usage("nodes drain needs exactly one NODE id");
    uint64_t secs = 0;
    if (!window.empty() && !ParseDuration(window, &secs)) return Usage("--window takes e.g. 10s");
    relay::v1::DrainNodeRequest req;
    req.set_node_id(*node);
    req.set_window_ms(static_cast<uint32_t>(secs * 1000));
    relay::v1::DrainNodeResponse r;
    st = c.admin().DrainNode(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    std::cout << (g.json ? "{}" : "Draining " + *node) << "\n";
    return kExitOk;
  }
  if (name == "node-tokens create") {
    if (flag_name.empty()) return Usage("node-tokens create needs --name");
    relay::v1::CreateNodeTokenRequest req;
    req.set_name(flag_name);
    req.set_node_id(id);
    relay::v1::CreateNodeTokenResponse r;
    st = c.admin().CreateNodeToken(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::cout << "Credential id: " << r.token().id() << "\nNode id:       "
              << (r.token().node_id().empty() ? "any" : r.token().node_id())
              << "\nToken:         " << r.secret()
              << "\nThe token is shown only now. Give it to the data plane with "
                 "--node-token-file FILE (or RELAY_NODE_TOKEN).\n";
    return kExitOk;
  }
  if (name == "node-tokens list") {
    relay::v1::ListNodeTokensResponse r;
    st = c.admin().ListNodeTokens(c.AdminContext().get(), {}, &r);
    if (!st.ok()) return Fail(st, g);
    if (g.json) return std::cout << ToJson(r) << "\n", kExitOk;
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.tokens()) {
      rows.push_back({t.id(), t.name(), t.node_id().empty() ? "any" : t.node_id(),
                      FormatTime(t.created_unix_ms()), FormatTime(t.last_used_unix_ms())});
    }
    PrintTable({"ID", "NAME", "NODE", "CREATED", "LAST ATTACH"}, rows);
    return kExitOk;
  }
  if (name == "node-tokens revoke") {
    auto ref = positional_arg("ID");
    if (!ref) return Usage("node-tokens revoke needs exactly one credential ID");
    relay::v1::RevokeNodeTokenRequest req;
    req.set_token_id(*ref);
    relay::v1::RevokeNodeTokenResponse r;
    st = c.admin().RevokeNodeToken(c.AdminContext().get(), req, &r);
    if (!st.ok()) return Fail(st, g);
    std::cout << (g.json ? "{}" : "Revoked " + *ref) << "\n";
    return kExitOk;
  }
  if (name == "stats") {
    uint64_t every = 2;
    if (!ParseDuration(interval, &every) || every == 0) return Usage("--interval takes e.g. 2s");
    relay::v1::GetStatsRequest req;
    req.set_app(app);
    relay::v1::Stats prev;
    bool have_prev = false;
    while (true) {
      relay::v1::Stats s;
      st = c.admin().GetStats(c.AdminContext().get(), req, &s);
      if (!st.ok()) return Fail(st, g);
      if (g.json) {
        std::cout << ToJson(s) << "\n";
      } else {
        double dt = have_prev ? (s.unix_ms() - prev.unix_ms()) / 1000.0 : 0;
        auto rate = [&](uint64_t now, uint64_t before) {
          return have_prev && dt > 0 ? common::StrCat(static_cast<uint64_t>((now - before) / dt), "/s")
                                     : std::string("-");
        };
        PrintTable({"NODES", "CONNECTIONS", "CHANNELS", "MSG IN", "MSG OUT", "IN/S", "OUT/S",
                    "PUBLISH CMDS"},
                   {{std::to_string(s.nodes()), std::to_string(s.connections()),
                     std::to_string(s.channels()), std::to_string(s.messages_in()),
                     std::to_string(s.messages_out()), rate(s.messages_in(), prev.messages_in()),
                     rate(s.messages_out(), prev.messages_out()),
                     std::to_string(s.publish_commands())}});
      }
      if (!watch) return kExitOk;
      prev = s;
      have_prev = true;
      std::cout.flush();
      std::this_thread::sleep_for(std::chrono::seconds(every));
    }
  }
  return Usage("unknown command '" + name + "'");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // The command words are the leading non-flag arguments that name a command.
  static const std::map<std::string, std::vector<std::string>> kSub = {
      {"apps", {"list", "create", "show", "update", "enable", "disable", "rotate-secret", "delete"}},
      {"tokens", {"create", "list", "revoke"}},
      {"nodes", {"list", "drain"}},
      {"node-tokens", {"create", "list", "revoke"}},
      {"webhooks", {"add", "list", "remove", "test"}},
      {"publish", {}}, {"channels", {}}, {"channel", {}}, {"users", {}},
      {"send-to-user", {}}, {"terminate", {}}, {"stats", {}}};
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
                << kCommands << "\n";
      return rest.empty() && !f.help_requested() ? kExitUsage : kExitOk;
    }
    return Usage("unknown command '" + (positional.empty() ? rest[0] : positional[0]) + "'");
  }
  if (words.size() == 1 && !kSub.at(words[0]).empty()) {
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end()) {
      std::cout << kCommands << "\n";
      return kExitOk;
    }
    return Usage("'" + words[0] + "' needs a subcommand");
  }
  return RunCommand(words, rest, g);
}
