// The web console's HTTP contract against a real control plane: the admin token before anything
// (401), bad input (400), unknown things (404), methods (405), security headers on every answer,
// the embedded files, other paths passed on untouched; and its live log through the real HTTP
// server as Server-Sent Events: an event published through the API arrives, the watcher limits
// and the slow-consumer cut of WatchChannelEvents apply, and a browser that goes away releases
// its watcher.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/crypto.h"
#include "common/io_pool.h"
#include "common/strings.h"
#include "console/console.h"
#include "controlplane/control_plane.h"
#include "http-bridge/http_api.h"
#include "tests/testutil/raw_socket.h"
#include "tests/testutil/wait_for.h"
#include "transport/http_server.h"

namespace relay::console {
namespace {

using transport::HttpRequest;
using transport::HttpResponse;

std::string Header(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("relay-console-" + common::RandomHex(6));
    controlplane::ControlPlaneOptions o;
    o.grpc_port = 0;
    o.data_dir = dir_.string();
    o.watch.max_watchers_per_app = 2;
    o.watch.buffer_events = 3;
    cp_ = std::make_unique<controlplane::ControlPlane>(o);
    ASSERT_TRUE(cp_->Start().ok());
    console_ = std::make_unique<Console>(*cp_);
  }
  void TearDown() override {
    if (http_) http_->StopAccepting();
    cp_->Stop();
    pool_.Stop();  // before the console: a connection still open ends with its io_context
    http_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  HttpResponse Call(std::string method, std::string path, bool token = true,
                    std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    size_t q = path.find('?');
    r.path = path.substr(0, q);
    if (q != std::string::npos) r.query = path.substr(q + 1);
    if (token) r.headers.emplace_back("Authorization", "Bearer " + cp_->admin_token());
    r.body = std::move(body);
    r.peer_ip = "127.0.0.1";
    return console_->Handle(r);
  }

  // Serves the console (and the Pusher HTTP API behind it) on a real HTTP server.
  uint16_t Serve() {
    http_api_ = std::make_unique<http_bridge::HttpApi>(cp_->api());
    http_ = std::make_unique<transport::HttpServer>(transport::HttpServerOptions{}, pool_,
                                                    console_->Wrap(http_api_->Handler()));
    auto port = http_->Start();
    pool_.Start("console-test");
    return port.ok() ? *port : 0;
  }

  absl::Status Trigger(const std::string& channel, const std::string& event) {
    relay::v1::TriggerRequest t;
    t.add_channels(channel);
    t.set_name(event);
    t.set_data("{}");
    return cp_->api().Trigger(*cp_->store().Find("app-id"), t).status();
  }

  std::filesystem::path dir_;
  std::unique_ptr<controlplane::ControlPlane> cp_;
  std::unique_ptr<Console> console_;
  common::IoPool pool_{1};
  std::unique_ptr<http_bridge::HttpApi> http_api_;
  std::unique_ptr<transport::HttpServer> http_;
};

using Socket = testutil::RawSocket;

std::string StreamRequest(const std::string& token, const std::string& query = "") {
  return common::StrCat("GET /console/api/apps/app-id/stream", query,
                        " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ", token, "\r\n\r\n");
}

TEST_F(ConsoleTest, TheApiTakesOnlyTheAdminToken) {
  HttpResponse none = Call("GET", "/console/api/apps", false);
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.body.find("missing admin token"), std::string::npos);
  EXPECT_EQ(Header(none, "WWW-Authenticate"), "Bearer realm=\"relay\"");
  HttpRequest wrong;
  wrong.method = "GET";
  wrong.path = "/console/api/apps";
  wrong.headers.emplace_back("Authorization", "Bearer " + cp_->admin_token() + "x");
  EXPECT_EQ(console_->Handle(wrong).status, 401);
  // An app's own credentials are not the admin token.
  wrong.headers = {{"Authorization", "Bearer app-secret"}};
  EXPECT_EQ(console_->Handle(wrong).status, 401);
  // Nothing about routes or apps before the token.
  EXPECT_EQ(Call("GET", "/console/api/apps/nope/channels", false).status, 401);
  EXPECT_EQ(Call("GET", "/console/api/nothing", false).status, 401);

  HttpResponse apps = Call("GET", "/console/api/apps");
  ASSERT_EQ(apps.status, 200) << apps.body;
  EXPECT_EQ(apps.body, R"({"apps":[{"id":"app-id","key":"app-key","name":"default","enabled":true,)"
                       R"("connections":0,"channels":0}]})");
  EXPECT_EQ(apps.body.find("app-secret"), std::string::npos);
}

TEST_F(ConsoleTest, BadInputUnknownThingsAndMethods) {
  EXPECT_EQ(Call("GET", "/console/api/apps/nope/channels").status, 404);
  EXPECT_EQ(Call("GET", "/console/api/nothing").status, 404);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/whatever").status, 404);
  HttpResponse bad = Call("GET", "/console/api/apps/app-id/channels/bad%20name");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("invalid channel"), std::string::npos);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/channels/public/users").status, 400);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/channels?x=%zz").status, 400);
  EXPECT_EQ(Call("POST", "/console/api/apps/app-id/events", true, "not json").status, 400);
  EXPECT_EQ(Call("POST", "/console/api/apps/app-id/events", true, R"({"channel":"a"})").status,
            400);
  EXPECT_EQ(Call("POST", "/console/api/apps/app-id/events", true,
                 R"({"channel":"bad name","event":"e","data":"x"})")
                .status,
            400);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/stream?sources=nope").status, 400);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/stream?prefix=bad%20prefix").status, 400);
  HttpResponse method = Call("DELETE", "/console/api/apps");
  EXPECT_EQ(method.status, 405);
  EXPECT_EQ(Header(method, "Allow"), "GET");
  EXPECT_EQ(Header(Call("GET", "/console/api/apps/app-id/events"), "Allow"), "POST");
  EXPECT_EQ(Call("POST", "/console/").status, 405);
  EXPECT_EQ(Call("GET", "/console/nothing.js").status, 404);
  EXPECT_EQ(Call("GET", "/console/a/b").status, 404);
}

TEST_F(ConsoleTest, PublishesThroughTheApiAndReadsChannels) {
  HttpResponse r = Call("POST", "/console/api/apps/app-id/events", true,
                        R"({"channel":"orders","event":"shipped","data":{"id":7}})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/channels").body, R"({"channels":[]})");
  HttpResponse c = Call("GET", "/console/api/apps/app-id/channels/presence-room");
  EXPECT_EQ(c.status, 200);
  EXPECT_EQ(c.body,
            R"({"name":"presence-room","occupied":false,"subscription_count":0,"presence":true,)"
            R"("user_count":0})");
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/channels/presence-room/users").body,
            R"({"users":[]})");
}

TEST_F(ConsoleTest, SecurityHeadersOnEveryAnswerAndNoCachingOfTheApi) {
  for (const auto& [path, token] : std::vector<std::pair<std::string, bool>>{
           {"/console/", false}, {"/console/api/apps", true}, {"/console/api/apps", false}}) {
    HttpResponse r = Call("GET", path, token);
    std::string csp = Header(r, "Content-Security-Policy");
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << path;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << path;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << path;
    EXPECT_EQ(Header(r, "X-Content-Type-Options"), "nosniff") << path;
    EXPECT_EQ(Header(r, "X-Frame-Options"), "DENY") << path;
    EXPECT_EQ(Header(r, "Cache-Control"),
              path.find("/api/") != std::string::npos ? "no-store" : "no-cache")
        << path;
  }
}

TEST_F(ConsoleTest, ServesTheEmbeddedFilesAndPassesOtherPathsOn) {
  HttpResponse index = Call("GET", "/console/", false);
  ASSERT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_NE(index.body.find("<script src=\"console.js\""), std::string::npos);
  EXPECT_EQ(index.body.find("<script>"), std::string::npos);  // nothing inline (CSP)
  EXPECT_EQ(Call("GET", "/console/index.html", false).body, index.body);
  HttpResponse js = Call("GET", "/console/console.js", false);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(js.body.find("sessionStorage"), std::string::npos);
  EXPECT_EQ(Call("GET", "/console/console.css", false).content_type, "text/css; charset=utf-8");
  HttpResponse redirect = Call("GET", "/console", false);
  EXPECT_EQ(redirect.status, 308);
  EXPECT_EQ(Header(redirect, "Location"), "/console/");

  int passed = 0;
  auto handler = console_->Wrap([&](const HttpRequest&) {
    ++passed;
    return HttpResponse{200, "next"};
  });
  HttpRequest r;
  r.method = "GET";
  for (std::string path : {"/apps/app-id/channels", "/consoles", "/api/v1/apps/x/console"}) {
    r.path = path;
    EXPECT_EQ(handler(r).body, "next") << path;
  }
  EXPECT_EQ(passed, 3);
  // Without the console (off by default), the HTTP API knows no /console/.
  http_bridge::HttpApi api(cp_->api());
  r.path = "/console/";
  EXPECT_EQ(api.Handle(r).status, 404);
}

TEST_F(ConsoleTest, TheLiveLogStreamsEventsAsSseAndReleasesItsWatcherWhenTheBrowserGoes) {
  uint16_t port = Serve();
  ASSERT_NE(port, 0);
  Socket s(port);
  ASSERT_TRUE(s.connected());
  ASSERT_TRUE(s.Send(StreamRequest(cp_->admin_token(), "?prefix=ord")));
  ASSERT_TRUE(s.ReadUntil("event: open\ndata: {\"sources\":[\"channel\",\"lifecycle\"]}\n\n"))
      << s.received();
  EXPECT_EQ(s.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << s.received();
  EXPECT_NE(s.received().find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(s.received().find("Cache-Control: no-store"), std::string::npos);
  EXPECT_EQ(s.received().find("Content-Length"), std::string::npos);
  EXPECT_EQ(cp_->api().watch()->open(), 1u);

  ASSERT_TRUE(Trigger("news", "skipped").ok());  // outside the prefix
  ASSERT_TRUE(Trigger("orders", "shipped").ok());
  ASSERT_TRUE(s.ReadUntil("event: channel\ndata: {\"channel\":\"orders\",\"event\":\"shipped\""))
      << s.received();
  EXPECT_EQ(s.received().find("skipped"), std::string::npos);

  s.Close();  // the browser tab closed
  EXPECT_TRUE(testutil::WaitFor([&] { return cp_->api().watch()->open() == 0; }));
}

// The lifecycle log (Channels.WatchLifecycleEvents) is the second source: its events carry their
// cursor; client events are left to the channel source unless asked for; the prefix applies.
TEST_F(ConsoleTest, TheLiveLogCarriesLifecycleEventsWithTheirCursor) {
  uint16_t port = Serve();
  ASSERT_NE(port, 0);
  Socket s(port);
  ASSERT_TRUE(s.Send(StreamRequest(cp_->admin_token(), "?sources=lifecycle&prefix=presence-")));
  ASSERT_TRUE(s.ReadUntil("event: open\ndata: {\"sources\":[\"lifecycle\"]}\n\n")) << s.received();
  auto record = [&](std::string name, std::string channel, std::string user) {
    controlplane::WebhookEvent e;
    e.name = std::move(name);
    e.channel = std::move(channel);
    e.user_id = std::move(user);
    cp_->lifecycle()->Record("app-id", e);
  };
  record("channel_occupied", "orders", "");        // outside the prefix
  record("client_event", "presence-room", "ann");  // shown by the channel source
  record("member_added", "presence-room", "bob");
  ASSERT_TRUE(
      s.ReadUntil("event: lifecycle\ndata: {\"cursor\":3,\"name\":\"member_added\","
                  "\"channel\":\"presence-room\",\"user_id\":\"bob\""))
      << s.received();
  EXPECT_EQ(s.received().find("orders"), std::string::npos);
  EXPECT_EQ(s.received().find("client_event"), std::string::npos);
  EXPECT_EQ(Call("GET", "/console/api/apps/app-id/stream?sources=lifecycle&events=bogus").status,
            400);
}

TEST_F(ConsoleTest, TheLiveLogHasTheWatcherLimitsAndTheSlowConsumerCut) {
  uint16_t port = Serve();
  ASSERT_NE(port, 0);
  // --max-watchers-per-app is 2 here: a third live log of the app is refused, 429.
  Socket a(port), b(port);
  a.Send(StreamRequest(cp_->admin_token()));
  b.Send(StreamRequest(cp_->admin_token()));
  ASSERT_TRUE(a.ReadUntil("event: open"));
  ASSERT_TRUE(b.ReadUntil("event: open"));
  HttpResponse third = Call("GET", "/console/api/apps/app-id/stream");
  EXPECT_EQ(third.status, 429) << third.body;
  a.Close();
  b.Close();
  ASSERT_TRUE(testutil::WaitFor([&] { return cp_->api().watch()->open() == 0; }));

  // A stream whose reader does not take its entries is cut once more than 3 (the buffer here)
  // wait, and told so in an `end` event before the connection closes.
  HttpResponse slow = Call("GET", "/console/api/apps/app-id/stream");
  ASSERT_EQ(slow.status, 200);
  ASSERT_NE(slow.stream, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Trigger("orders", "e" + std::to_string(i)).ok());
  slow.stream->Start([] {});
  transport::ResponseStream::Pulled pulled = slow.stream->Pull();
  EXPECT_TRUE(pulled.end);
  EXPECT_NE(pulled.bytes.find("event: end\ndata: {\"source\":\"channel\",\"code\":429,"),
            std::string::npos)
      << pulled.bytes;
  slow.stream->Stop();

  // A live log on the real server ends with UNAVAILABLE when the control plane stops: the
  // connection closes after the end event.
  Socket c(port);
  c.Send(StreamRequest(cp_->admin_token()));
  ASSERT_TRUE(c.ReadUntil("event: open"));
  cp_->Stop();
  EXPECT_TRUE(c.ReadToEnd());
  EXPECT_NE(c.received().find("event: end\ndata: {\"source\":\"channel\",\"code\":503,"),
            std::string::npos)
      << c.received();
}

}  // namespace
}  // namespace relay::console
