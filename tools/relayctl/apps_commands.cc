// relayctl apps ...: create, inspect, change and delete apps over the admin API.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>

#include "absl/strings/numbers.h"
#include "common/strings.h"
#include "tools/relayctl/cli.h"

namespace relay::relayctl {

namespace {

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

// The app every command but list and create acts on, as `APP` or `--app APP` (the flag every
// other group uses); nullopt (after printing why) when the command line does not name exactly
// one.
std::optional<std::string> TheApp(const Invocation& in, int* exit_code) {
  std::optional<std::string> ref;
  if (!in.opt.app.empty()) {
    if (in.positional.empty()) ref = in.opt.app;
  } else {
    ref = in.OnlyPositional();
  }
  if (!ref) *exit_code = Usage(in.command + " needs exactly one APP (id or key), or --app APP");
  return ref;
}

// The app as the server returned it, without its secrets (shown once at creation, or with
// apps show --show-secret).
int ShowApp(const grpc::Status& st, const Invocation& in, const relay::v1::App& a,
            bool show_secret = false) {
  relay::v1::App shown = show_secret ? a : WithoutSecrets(a);
  return Show(st, in.globals, shown, [&] { PrintApp(shown, show_secret); });
}

int List(Invocation& in) {
  relay::v1::ListAppsResponse r;
  auto st = in.client.admin().ListApps(in.client.AdminContext().get(), {}, &r);
  for (auto& a : *r.mutable_apps()) a = WithoutSecrets(std::move(a));
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : r.apps()) {
      rows.push_back({a.id(), a.key(), a.name(), a.enabled() ? "enabled" : "disabled", a.plan()});
    }
    PrintTable({"ID", "KEY", "NAME", "STATE", "PLAN"}, rows);
  });
}

void CreateFlags(common::FlagSet& f, Options& o) {
  f.String("name", &o.name, "App name (required)");
  f.String("id", &o.id, "App id (generated when absent)");
  f.String("key", &o.key, "App key (generated when absent)");
  f.String("secret", &o.secret, "App secret (generated when absent)");
  f.String("plan", &o.plan, "Plan name");
}

int Create(Invocation& in) {
  if (in.opt.name.empty()) return Usage("apps create needs --name");
  relay::v1::CreateAppRequest req;
  req.set_name(in.opt.name);
  req.set_id(in.opt.id);
  req.set_key(in.opt.key);
  req.set_secret(in.opt.secret);
  req.set_plan(in.opt.plan);
  relay::v1::App a;
  auto st = in.client.admin().CreateApp(in.client.AdminContext().get(), req, &a);
  return Show(st, in.globals, a, [&] {
    PrintApp(a, true);
    std::cout << "\nThe secret is shown only now; store it safely.\n";
  });
}

int ShowOne(Invocation& in) {
  int rc = kExitOk;
  auto ref = TheApp(in, &rc);
  if (!ref) return rc;
  relay::v1::GetAppRequest req;
  req.set_app(*ref);
  relay::v1::App a;
  auto st = in.client.admin().GetApp(in.client.AdminContext().get(), req, &a);
  return ShowApp(st, in, a, in.opt.show_secret);
}

void ShowFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.Bool("show-secret", &o.show_secret,
         "Also print the app's secret (otherwise shown only by apps create and rotate-secret)");
}

// apps enable / apps disable.
int SetEnabled(Invocation& in, bool enabled) {
  int rc = kExitOk;
  auto ref = TheApp(in, &rc);
  if (!ref) return rc;
  relay::v1::UpdateAppRequest req;
  req.set_app(*ref);
  req.mutable_changes()->set_enabled(enabled);
  req.add_update_mask("enabled");
  relay::v1::App a;
  auto st = in.client.admin().UpdateApp(in.client.AdminContext().get(), req, &a);
  return ShowApp(st, in, a);
}

// apps update's flags, each with the field of the update mask it sets.
const std::map<std::string, std::string>& UpdatePaths() {
  static const std::map<std::string, std::string> kPaths = {
      {"name", "name"},
      {"plan", "plan"},
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
  return kPaths;
}

void UpdateFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  for (const auto& [flag, path] : UpdatePaths()) o.settings[flag];
  for (auto& [flag, value] : o.settings) f.String(flag, &value, "New value");
}

// Sets the limit or feature at `path` ("limits.max_connections") from a flag's text; returns
// an exit code when the text does not fit the field.
std::optional<int> SetSetting(relay::v1::App* changes, const std::string& flag,
                              const std::string& path, const std::string& value) {
  bool is_limit = path.rfind("limits.", 0) == 0;
  google::protobuf::Message* msg =
      is_limit ? static_cast<google::protobuf::Message*>(changes->mutable_limits())
               : static_cast<google::protobuf::Message*>(changes->mutable_features());
  const auto* field = msg->GetDescriptor()->FindFieldByName(path.substr(path.find('.') + 1));
  const auto* refl = msg->GetReflection();
  if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
    if (value != "true" && value != "false" && value != "on" && value != "off") {
      return Usage("--" + flag + " takes true or false");
    }
    refl->SetBool(msg, field, value == "true" || value == "on");
    return std::nullopt;
  }
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
  return std::nullopt;
}

int Update(Invocation& in) {
  int rc = kExitOk;
  auto ref = TheApp(in, &rc);
  if (!ref) return rc;
  relay::v1::UpdateAppRequest req;
  req.set_app(*ref);
  auto* changes = req.mutable_changes();
  for (const auto& [flag, value] : in.opt.settings) {
    if (!in.flags.WasSet(flag)) continue;
    const std::string& path = UpdatePaths().at(flag);
    if (path == "name") {
      changes->set_name(value);
    } else if (path == "plan") {
      changes->set_plan(value);
    } else if (auto bad = SetSetting(changes, flag, path, value)) {
      return *bad;
    }
    req.add_update_mask(path);
  }
  if (req.update_mask().empty()) return Usage("apps update needs at least one setting");
  relay::v1::App a;
  auto st = in.client.admin().UpdateApp(in.client.AdminContext().get(), req, &a);
  return ShowApp(st, in, a);
}

void RotateSecretFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.String("overlap", &o.overlap,
           "How long the old secret keeps verifying (e.g. 1h; 0 = it stops at once; default 1h)");
  f.Bool("end-overlap", &o.end_overlap, "Keep the current secret; previous secrets stop now");
}

int RotateSecret(Invocation& in) {
  int rc = kExitOk;
  auto ref = TheApp(in, &rc);
  if (!ref) return rc;
  relay::v1::RotateSecretRequest req;
  req.set_app(*ref);
  if (!in.opt.overlap.empty()) {
    uint64_t secs = 0;
    if (!ParseDuration(in.opt.overlap, &secs) || secs > UINT32_MAX) {
      return Usage("--overlap takes a duration such as 0, 90s, 15m, 1h");
    }
    req.set_overlap_seconds(static_cast<uint32_t>(secs));
  }
  req.set_end_overlap(in.opt.end_overlap);
  relay::v1::App a;
  auto st = in.client.admin().RotateSecret(in.client.AdminContext().get(), req, &a);
  // The new secret is shown (this is where it is created); the previous ones never are.
  relay::v1::App shown = a;
  for (auto& p : *shown.mutable_previous_secrets()) p.clear_secret();
  return Show(st, in.globals, shown, [&] {
    if (!in.opt.end_overlap) std::cout << "New secret: " << a.secret() << "\n";
    // What the server did, from its answer (not from the flag: an older server may differ).
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    int64_t until = 0;
    for (const auto& p : a.previous_secrets()) {
      if (p.expires_unix_ms() > now) until = std::max(until, p.expires_unix_ms());
    }
    if (until == 0) {
      std::cout << "Previous secrets of " << a.id() << " no longer verify.\n";
    } else {
      std::cout << "The previous secret verifies until " << FormatTime(until) << " (about "
                << (until - now + 999) / 1000 << " more seconds).\n";
    }
  });
}

void DeleteFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.Bool("yes", &o.yes, "Do not ask for confirmation");
}

int Delete(Invocation& in) {
  int rc = kExitOk;
  auto ref = TheApp(in, &rc);
  if (!ref) return rc;
  if (!in.opt.yes && !isatty(STDIN_FILENO)) {
    std::cerr << "relayctl: apps delete asks for confirmation on a terminal; pass --yes in "
                 "scripts (nothing deleted)\n";
    return kExitUsage;
  }
  if (!in.opt.yes) {
    std::cerr << "Delete app '" << *ref
              << "' and close its connections? Type the app id or "
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
  auto st = in.client.admin().DeleteApp(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals, "Deleted app " + *ref);
}

}  // namespace

std::vector<Command> AppCommands() {
  return {
      {"apps list", nullptr, List},
      {"apps create", CreateFlags, Create},
      {"apps show", ShowFlags, ShowOne},
      {"apps update", UpdateFlags, Update},
      {"apps enable", AppFlag, [](Invocation& in) { return SetEnabled(in, true); }},
      {"apps disable", AppFlag, [](Invocation& in) { return SetEnabled(in, false); }},
      {"apps rotate-secret", RotateSecretFlags, RotateSecret},
      {"apps delete", DeleteFlags, Delete},
  };
}

}  // namespace relay::relayctl
