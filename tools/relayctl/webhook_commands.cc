// relayctl webhooks ...: an app's webhook endpoints over the admin API.
#include <chrono>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "tools/relayctl/cli.h"

namespace relay::relayctl {

namespace {

void AddFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  for (const char* s : {"url", "events", "filter-prefix", "filter-suffix", "batch-window-ms",
                        "batch-max", "delay-ms", "retry-seconds"}) {
    o.settings[s];
  }
  for (auto& [k, v] : o.settings) f.String(k, &v, "See relayctl --help");
  f.List("header", &o.headers, "Extra request header K=V (repeatable)");
}

int Add(Invocation& in) {
  auto& set = in.opt.settings;
  if (in.opt.app.empty() || set["url"].empty()) return Usage("webhooks add needs --app and --url");
  relay::v1::AddWebhookRequest req;
  req.set_app(in.opt.app);
  auto* h = req.mutable_webhook();
  h->set_url(set["url"]);
  for (absl::string_view e : absl::StrSplit(set["events"], ',', absl::SkipWhitespace())) {
    h->add_event_types(std::string(e));
  }
  h->set_filter_prefix(set["filter-prefix"]);
  h->set_filter_suffix(set["filter-suffix"]);
  for (const auto& kv : in.opt.headers) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Usage("--header takes K=V");
    (*h->mutable_headers())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  using Setter = void (relay::v1::Webhook::*)(uint32_t);
  for (const auto& [flag, setter] : std::vector<std::pair<std::string, Setter>>{
           {"batch-window-ms", &relay::v1::Webhook::set_batch_window_ms},
           {"batch-max", &relay::v1::Webhook::set_batch_max_events},
           {"delay-ms", &relay::v1::Webhook::set_delay_ms},
           {"retry-seconds", &relay::v1::Webhook::set_retry_seconds}}) {
    if (set[flag].empty()) continue;
    uint32_t v = 0;
    if (!absl::SimpleAtoi(common::AbslView(set[flag]), &v)) {
      return Usage("--" + flag + " takes a non-negative integer");
    }
    (h->*setter)(v);
  }
  relay::v1::Webhook r;
  auto st = in.client.admin().AddWebhook(in.client.AdminContext().get(), req, &r);
  return Show(st, in.globals, r,
              [&] { std::cout << "Added webhook " << r.id() << " -> " << r.url() << "\n"; });
}

int List(Invocation& in) {
  if (in.opt.app.empty()) return Usage("webhooks list needs --app");
  relay::v1::ListWebhooksRequest req;
  req.set_app(in.opt.app);
  relay::v1::ListWebhooksResponse r;
  auto st = in.client.admin().ListWebhooks(in.client.AdminContext().get(), req, &r);
  return Show(st, in.globals, r, [&] {
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
  });
}

int Remove(Invocation& in) {
  auto ref = in.OnlyPositional();
  if (!ref) return Usage("webhooks remove needs exactly one webhook ID");
  relay::v1::RemoveWebhookRequest req;
  req.set_webhook_id(*ref);
  relay::v1::RemoveWebhookResponse r;
  auto st = in.client.admin().RemoveWebhook(in.client.AdminContext().get(), req, &r);
  return Acknowledge(st, in.globals, "Removed " + *ref);
}

// Exits with kExitError when an endpoint failed the test (in table form).
int Test(Invocation& in) {
  std::string app = in.opt.app;
  if (app.empty()) {
    // The old form, `webhooks test APP`, still works; every other command takes --app.
    auto ref = in.OnlyPositional();
    if (!ref) return Usage("webhooks test needs --app APP");
    std::cerr << "relayctl: 'webhooks test APP' is deprecated; use 'webhooks test --app APP'\n";
    app = *ref;
  } else if (!in.positional.empty()) {
    return Usage("webhooks test takes --app APP and no other argument");
  }
  relay::v1::TestWebhooksRequest req;
  req.set_app(app);
  relay::v1::TestWebhooksResponse r;
  auto ctx = in.client.AdminContext();
  // The server waits for every endpoint's answer: longer than other calls may take.
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto st = in.client.admin().TestWebhooks(ctx.get(), req, &r);
  bool all_ok = true;
  int rc = Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.results()) {
      all_ok &= t.error().empty();
      rows.push_back({t.webhook_id(), t.url(), std::to_string(t.status()),
                      t.error().empty() ? "ok" : t.error()});
    }
    PrintTable({"ID", "URL", "STATUS", "RESULT"}, rows);
  });
  return rc == kExitOk && !all_ok ? kExitError : rc;
}

}  // namespace

std::vector<Command> WebhookCommands() {
  return {
      {"webhooks add", AddFlags, Add},
      {"webhooks list", AppFlag, List},
      {"webhooks remove", nullptr, Remove},
      {"webhooks test", AppFlag, Test},
  };
}

}  // namespace relay::relayctl
