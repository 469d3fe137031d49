// relayctl publish, channels, channel, users, send-to-user, terminate: the public API, called
// with the app's own key and secret.
#include <ctime>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/channel.h"
#include "common/json.h"
#include "common/strings.h"
#include "tools/relayctl/cli.h"

namespace relay::relayctl {

namespace {

using Body = int (*)(Invocation&, grpc::ClientContext*);

// Every command here needs --app, then acts as that app (whose key and secret are fetched
// first, so an unknown app or an unreachable server is reported before the other flags are
// checked). `stream`: the call has no deadline.
int AsApp(Invocation& in, Body body, bool stream = false) {
  if (in.opt.app.empty()) return Usage(in.command + " needs --app");
  std::unique_ptr<grpc::ClientContext> ctx;
  auto st = in.client.AppContext(in.opt.app, &ctx, stream);
  if (!st.ok()) return Fail(st, in.globals);
  return body(in, ctx.get());
}

void EventFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.List("channel", &o.channels, "Target channel (repeatable)");
  f.String("event", &o.event, "Event name");
  f.String("data", &o.data, "Event data (sent as a string; usually JSON)");
  f.String("exclude", &o.exclude, "Socket id to leave out");
  f.String("user", &o.user, "User id");
}

int Publish(Invocation& in, grpc::ClientContext* ctx) {
  const Options& o = in.opt;
  if (o.channels.empty() || o.event.empty()) return Usage("publish needs --channel and --event");
  relay::v1::TriggerRequest req;
  req.set_app(o.app);
  for (const auto& ch : o.channels) req.add_channels(ch);
  req.set_name(o.event);
  req.set_data(o.data);
  req.set_socket_id(o.exclude);
  relay::v1::TriggerResponse r;
  auto st = in.client.pub().Trigger(ctx, req, &r);
  return Acknowledge(
      st, in.globals,
      "Published " + o.event + " to " + std::to_string(o.channels.size()) + " channel(s)");
}

int ListChannels(Invocation& in, grpc::ClientContext* ctx) {
  relay::v1::ListChannelsRequest req;
  req.set_app(in.opt.app);
  req.set_filter_by_prefix(in.opt.prefix);
  req.set_info("subscription_count");
  relay::v1::ListChannelsResponse r;
  auto st = in.client.pub().ListChannels(ctx, req, &r);
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& ch : r.channels()) {
      rows.push_back({ch.name(), std::to_string(ch.subscription_count())});
    }
    PrintTable({"CHANNEL", "SUBSCRIPTIONS"}, rows);
  });
}

int GetChannel(Invocation& in, grpc::ClientContext* ctx) {
  auto ch = in.OnlyPositional();
  if (!ch) return Usage("channel needs exactly one channel NAME");
  relay::v1::GetChannelRequest req;
  req.set_app(in.opt.app);
  req.set_channel(*ch);
  std::string info = "subscription_count";
  common::ChannelKind kind = common::ClassifyChannel(*ch);
  if (kind.is_presence) info += ",user_count";
  if (kind.is_cache) info += ",cache";
  req.set_info(info);
  relay::v1::ChannelInfo r;
  auto st = in.client.pub().GetChannel(ctx, req, &r);
  return Show(st, in.globals, r, [&] {
    std::cout << "channel:        " << *ch << "\noccupied:       " << (r.occupied() ? "yes" : "no")
              << "\nsubscriptions:  " << r.subscription_count() << "\n";
    if (kind.is_presence) std::cout << "users:          " << r.user_count() << "\n";
    if (r.has_cache()) {
      std::cout << "cached event:   " << r.cache().event() << " (ttl " << r.cache().ttl_seconds()
                << "s)\n";
    }
  });
}

int ListUsers(Invocation& in, grpc::ClientContext* ctx) {
  auto ch = in.OnlyPositional();
  if (!ch) return Usage("users needs exactly one presence CHANNEL");
  relay::v1::ListPresenceUsersRequest req;
  req.set_app(in.opt.app);
  req.set_channel(*ch);
  relay::v1::ListPresenceUsersResponse r;
  auto st = in.client.pub().ListPresenceUsers(ctx, req, &r);
  return Show(st, in.globals, r, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& u : r.users()) rows.push_back({u.user_id(), u.user_info_json()});
    PrintTable({"USER", "INFO"}, rows);
  });
}

int SendToUser(Invocation& in, grpc::ClientContext* ctx) {
  const Options& o = in.opt;
  if (o.user.empty()) return Usage(in.command + " needs --user");
  if (o.event.empty()) return Usage("send-to-user needs --event");
  relay::v1::SendToUserRequest req;
  req.set_app(o.app);
  req.set_user_id(o.user);
  req.set_name(o.event);
  req.set_data(o.data);
  relay::v1::SendToUserResponse r;
  auto st = in.client.pub().SendToUser(ctx, req, &r);
  return Acknowledge(st, in.globals, "Sent " + o.event + " to user " + o.user);
}

int Terminate(Invocation& in, grpc::ClientContext* ctx) {
  const Options& o = in.opt;
  if (o.user.empty()) return Usage(in.command + " needs --user");
  relay::v1::TerminateUserConnectionsRequest req;
  req.set_app(o.app);
  req.set_user_id(o.user);
  relay::v1::TerminateUserConnectionsResponse r;
  auto st = in.client.pub().TerminateUserConnections(ctx, req, &r);
  return Acknowledge(st, in.globals, "Closing the connections of user " + o.user);
}

void WatchFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.List("channel", &o.channels, "Watch this channel (repeatable)");
  f.String("prefix", &o.prefix, "Watch every channel whose name starts with this");
  f.Bool("lifecycle", &o.lifecycle,
         "Lifecycle events (occupied/vacated, members, client events, cache misses, counts) from "
         "the durable log, with their cursors");
  f.String("since", &o.since,
           "With --lifecycle: resume after this cursor (0 = from the oldest event kept)");
  f.String(
      "events", &o.events,
      "With --lifecycle: only these types (comma separated, e.g. member_added,member_removed)");
}

// RFC 3339 UTC with milliseconds.
std::string FormatMicros(int64_t unix_us) {
  time_t t = static_cast<time_t>(unix_us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03dZ", static_cast<int>((unix_us / 1000) % 1000));
  return std::string(buf) + ms;
}

// `data` on one line (control characters as spaces), cut to about a terminal line.
std::string OneLine(const std::string& data) {
  constexpr size_t kMax = 120;
  size_t cut = data.size();
  if (cut > kMax) {
    cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(data[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
  }
  std::string out = data.substr(0, cut);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (cut < data.size()) common::StrAppend(&out, "... (", data.size(), " bytes)");
  return out;
}

void PrintEvent(const relay::v1::ChannelEvent& e, bool json) {
  bool client = e.source() == relay::v1::ChannelEvent::SOURCE_CLIENT;
  if (json) {
    common::JsonWriter w;
    w.BeginObject()
        .Key("time")
        .String(FormatMicros(e.accepted_unix_us()))
        .Key("accepted_unix_us")
        .Int(e.accepted_unix_us())
        .Key("channel")
        .String(e.channel())
        .Key("event")
        .String(e.event())
        .Key("data")
        .String(e.data())
        .Key("source")
        .String(client ? "client" : "api");
    if (!e.socket_id().empty()) w.Key("socket_id").String(e.socket_id());
    if (!e.user_id().empty()) w.Key("user_id").String(e.user_id());
    w.EndObject();
    std::cout << w.str() << std::endl;  // flushed: a pipe sees each event as it comes
    return;
  }
  std::string from;
  if (client) {
    from = common::StrCat("  (client ", e.socket_id(), e.user_id().empty() ? "" : " user ",
                          e.user_id(), ")");
  }
  std::cout << FormatMicros(e.accepted_unix_us()) << "  " << e.channel() << "  " << e.event()
            << "  " << OneLine(e.data()) << from << std::endl;
}

void PrintLifecycle(const relay::v1::LifecycleEvent& e, bool json) {
  int64_t us = e.time_ms() * 1000;
  if (json) {
    common::JsonWriter w;
    w.BeginObject().Key("cursor").Uint(e.cursor()).Key("time").String(FormatMicros(us));
    w.Key("time_ms").Int(e.time_ms()).Key("name").String(e.name());
    w.Key("channel").String(e.channel());
    if (!e.user_id().empty()) w.Key("user_id").String(e.user_id());
    if (e.name() == "client_event") {
      w.Key("event").String(e.event()).Key("data").String(e.data());
      w.Key("socket_id").String(e.socket_id());
    }
    if (e.name() == "subscription_count") w.Key("subscription_count").Uint(e.subscription_count());
    w.EndObject();
    std::cout << w.str() << std::endl;
    return;
  }
  std::string detail;
  if (!e.user_id().empty()) detail = common::StrCat("  user ", e.user_id());
  if (e.name() == "client_event") {
    detail = common::StrCat("  ", e.event(), "  ", OneLine(e.data()), "  (client ", e.socket_id(),
                            e.user_id().empty() ? "" : " user ", e.user_id(), ")");
  }
  if (e.name() == "subscription_count") detail = common::StrCat("  ", e.subscription_count());
  std::cout << "#" << e.cursor() << "  " << FormatMicros(us) << "  " << e.name() << "  "
            << e.channel() << detail << std::endl;
}

// Prints how a watch ended; the exit code.
int WatchEnded(const grpc::Status& st, Invocation& in) {
  if (st.ok()) return kExitOk;
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    // The server's own reason (shutting down, too many watchers) or the transport's.
    std::cerr << "relayctl: watch ended: " << st.error_message() << " (control plane at "
              << in.globals.server << ")\n";
    return kExitUnavailable;
  }
  return Fail(st, in.globals);
}

int WatchLifecycle(Invocation& in, grpc::ClientContext* ctx) {
  const Options& o = in.opt;
  if (!o.channels.empty()) return Usage("--lifecycle takes --prefix P, not --channel");
  relay::v1::WatchLifecycleEventsRequest req;
  req.set_app(o.app);
  req.set_prefix(o.prefix);
  if (!o.since.empty()) {
    uint64_t since = 0;
    if (!absl::SimpleAtoi(common::AbslView(o.since), &since)) {
      return Usage("--since takes a cursor (a number that watch --lifecycle printed)");
    }
    req.set_since_cursor(since);
  }
  for (absl::string_view t : absl::StrSplit(o.events, ',', absl::SkipWhitespace())) {
    req.add_events(std::string(t));
  }
  auto reader = in.client.pub().WatchLifecycleEvents(ctx, req);
  relay::v1::LifecycleEvent e;
  while (reader->Read(&e)) PrintLifecycle(e, in.globals.json);
  return WatchEnded(reader->Finish(), in);
}

// Streams until interrupted (Ctrl-C) or until the server ends the watch.
int Watch(Invocation& in, grpc::ClientContext* ctx) {
  if (!in.positional.empty()) return Usage("watch takes no arguments (--channel NAME, --prefix P)");
  if (in.opt.lifecycle) return WatchLifecycle(in, ctx);
  if (!in.opt.since.empty() || !in.opt.events.empty()) {
    return Usage("--since and --events need --lifecycle");
  }
  relay::v1::WatchChannelEventsRequest req;
  req.set_app(in.opt.app);
  for (const auto& ch : in.opt.channels) req.add_channels(ch);
  req.set_prefix(in.opt.prefix);
  auto reader = in.client.pub().WatchChannelEvents(ctx, req);
  relay::v1::ChannelEvent e;
  while (reader->Read(&e)) PrintEvent(e, in.globals.json);
  return WatchEnded(reader->Finish(), in);
}

}  // namespace

std::vector<Command> ChannelCommands() {
  return {
      {"publish", EventFlags, [](Invocation& in) { return AsApp(in, Publish); }},
      {"channels", AppAndPrefixFlags, [](Invocation& in) { return AsApp(in, ListChannels); }},
      {"channel", AppAndPrefixFlags, [](Invocation& in) { return AsApp(in, GetChannel); }},
      {"users", AppAndPrefixFlags, [](Invocation& in) { return AsApp(in, ListUsers); }},
      {"send-to-user", EventFlags, [](Invocation& in) { return AsApp(in, SendToUser); }},
      {"terminate", EventFlags, [](Invocation& in) { return AsApp(in, Terminate); }},
      {"watch", WatchFlags, [](Invocation& in) { return AsApp(in, Watch, true); }},
  };
}

}  // namespace relay::relayctl
