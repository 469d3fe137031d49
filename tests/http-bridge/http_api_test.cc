// http_bridge::HttpApi driven in-process (HttpApi::Handle) over a real controlplane::Api: SQLite
// store in a temp dir, cluster state, a node hub without nodes, and a ManualClock shared by both,
// so the signature window, the daily quota and Retry-After are tested without waiting.
#include "http-bridge/http_api.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/pusher_auth.h"
#include "common/strings.h"
#include "tests/testutil/raw_node.h"
#include "tests/testutil/wait_for.h"

namespace relay::http_bridge {
namespace {

using namespace std::chrono_literals;

// 2026-01-01T23:59:00Z: one minute before a UTC day boundary.
constexpr int64_t kBeforeMidnightMs = (1767225600 + 86400 - 60) * 1000LL;

class NoNodes : public controlplane::NodeHub::Handler {
 public:
  void OnAttach(const std::string&, const relay::v1::NodeHello&,
                const relay::v1::NodeSnapshot&) override {}
  void OnNodeMessage(const std::string&, const relay::v1::NodeMessage&) override {}
  void OnDetach(const std::string&) override {}
};

std::string_view HeaderOf(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

class HttpApiTest : public ::testing::Test {
 protected:
  HttpApiTest() {
    dir_ = std::filesystem::temp_directory_path() / ("relay-http-test-" + common::RandomHex(6));
    std::filesystem::create_directories(dir_);
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all);
    store_ = std::move(*controlplane::AppStore::Open(dir_.string()));
    hub_ = std::make_unique<controlplane::NodeHub>(controlplane::NodeHubOptions{}, &no_nodes_);
    relay::v1::CreateAppRequest req;
    req.set_name("test");
    req.set_id("app-id");
    req.set_key("app-key");
    req.set_secret("app-secret");
    req.mutable_limits()->set_max_daily_messages(3);
    app_ = *store_->Create(req);
    Start({});
  }
  ~HttpApiTest() override {
    http_.reset();
    api_.reset();
    hub_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void Start(controlplane::ApiLimits limits) {
    http_.reset();
    api_ = std::make_unique<controlplane::Api>(*store_, cluster_, *hub_, limits, clock_);
    http_ = std::make_unique<HttpApi>(*api_, std::vector<std::string>{}, clock_);
  }

  // A request authenticated with the key + secret headers (`secret` empty: none at all).
  // The answer of a response given later (HttpResponse::later), as the server would take it.
  static std::future<HttpResponse> Later(HttpResponse r) {
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    auto future = promise->get_future();
    if (!r.later) {
      promise->set_value(std::move(r));
    } else {
      r.later([promise](HttpResponse answer) { promise->set_value(std::move(answer)); });
    }
    return future;
  }

  HttpResponse Send(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& secret = "app-secret") {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.peer_ip = "127.0.0.1";
    if (!secret.empty()) {
      r.headers = {{"X-Relay-Key", "app-key"}, {"X-Relay-Secret", secret}};
    }
    return http_->Handle(r);
  }

  // A request signed as the pusher SDK signs it, with `auth_timestamp` = `timestamp`.
  HttpResponse SendSigned(const std::string& method, const std::string& path,
                          const std::string& body, int64_t timestamp) {
    common::QueryParams params = {{"auth_key", "app-key"},
                                  {"auth_timestamp", std::to_string(timestamp)},
                                  {"auth_version", "1.0"}};
    if (!body.empty()) params.emplace_back("body_md5", common::Md5Hex(body));
    params.emplace_back(
        "auth_signature",
        common::HmacSha256Hex("app-secret", common::HttpStringToSign(method, path, params)));
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.peer_ip = "127.0.0.1";
    for (const auto& [k, v] : params) r.query += (r.query.empty() ? "" : "&") + k + "=" + v;
    return http_->Handle(r);
  }

  std::filesystem::path dir_;
  common::ManualClock clock_{kBeforeMidnightMs};
  std::unique_ptr<controlplane::AppStore> store_;
  controlplane::ClusterState cluster_;
  NoNodes no_nodes_;
  std::unique_ptr<controlplane::NodeHub> hub_;
  relay::v1::App app_;
  std::unique_ptr<controlplane::Api> api_;
  std::unique_ptr<HttpApi> http_;
};

struct RouteCase {
  const char* method;
  const char* path;  // after the app
  const char* body;
  const char* answer;  // the 200 body, or its beginning when it ends with '*'
};

// One success per route; each costs at most one message of the daily quota of 3.
const RouteCase kRoutes[] = {
    {"POST", "events", R"({"name":"e","data":"{}","channel":"news"})", "{}"},
    {"POST", "batch_events", R"({"batch":[{"channel":"news","name":"e","data":"x"}]})", "{}"},
    {"GET", "channels", "", R"({"channels":{}})"},
    {"GET", "channels/news", "", R"({"occupied":false})"},
    {"GET", "channels/presence-room/users", "", R"({"users":[]})"},
    {"POST", "users/u1/terminate_connections", "", "{}"},
    {"POST", "users/u1/events", R"({"name":"e","data":"x"})", "{}"},
    {"POST", "auth", R"({"socket_id":"1.2","channel_name":"private-a"})", R"({"auth":"app-key:*)"},
};

TEST_F(HttpApiTest, EveryRouteAnswersUnderBothPrefixes) {
  for (const char* prefix : {"/apps/app-id/", "/api/v1/apps/app-key/"}) {
    clock_.Advance(24h);  // a fresh daily count for each prefix
    Start({});
    for (const auto& c : kRoutes) {
      SCOPED_TRACE(std::string(c.method) + " " + prefix + c.path);
      HttpResponse r = Send(c.method, std::string(prefix) + c.path, c.body);
      EXPECT_EQ(r.status, 200) << r.body;
      std::string_view answer = c.answer;
      if (answer.ends_with('*')) {
        EXPECT_TRUE(std::string_view(r.body).starts_with(answer.substr(0, answer.size() - 1)))
            << r.body;
      } else {
        EXPECT_EQ(r.body, answer);
      }
    }
  }
}

TEST_F(HttpApiTest, EveryRouteRefusesAWrongSecretOrNoCredentials) {
  for (const auto& c : kRoutes) {
    SCOPED_TRACE(std::string(c.method) + " " + c.path);
    HttpResponse wrong = Send(c.method, std::string("/apps/app-id/") + c.path, c.body, "nope");
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(wrong.body, R"({"error":"invalid app key or secret","code":401})");
    EXPECT_TRUE(wrong.headers.empty());  // refused before the per-address limit counts
    HttpResponse none = Send(c.method, std::string("/apps/app-id/") + c.path, c.body, "");
    EXPECT_EQ(none.status, 401);
  }
  // Nothing was published or charged.
  EXPECT_EQ(api_->counters().events.load(), 0u);
}

TEST_F(HttpApiTest, UnknownRoutesAre404OnlyAfterAuthentication) {
  EXPECT_EQ(Send("GET", "/apps/app-id/nothing").status, 404);
  EXPECT_EQ(Send("GET", "/apps/app-id/nothing").body,
            R"({"error":"No route for GET /apps/app-id/nothing","code":404})");
  EXPECT_EQ(Send("GET", "/apps/app-id/nothing", "", "nope").status, 401);
  EXPECT_EQ(Send("DELETE", "/apps/app-id/events").status, 404);
  EXPECT_EQ(Send("POST", "/apps/app-id/users/u1/other").status, 404);
  EXPECT_EQ(Send("GET", "/apps/app-id").status, 404);
  EXPECT_EQ(Send("GET", "/apps/unknown/channels").status, 404);
}

TEST_F(HttpApiTest, TriggerPrintsTheInfoTheApiGives) {
  // n1 must be attached for the event to be queued to it; the hub accepts any credential here.
  controlplane::NodeHubOptions options;
  options.authenticate = testutil::AcceptAnyNodeToken;
  hub_ = std::make_unique<controlplane::NodeHub>(options, &no_nodes_);
  Start({});
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(hub_.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  relay::v1::NodeSnapshot s;
  auto* c = s.add_channels();
  c->set_app_id("app-id");
  c->set_channel("presence-room");
  c->set_subscriptions(2);
  auto* p = s.add_presence();
  p->set_app_id("app-id");
  p->set_channel("presence-room");
  p->set_user_id("u1");
  p->set_socket_id("1.1");
  cluster_.ApplySnapshot("n1", s);
  const std::string body = R"({"name":"e","data":"{}","channels":["presence-room","news"],)"
                           R"("info":"subscription_count,user_count"})";
  // The view has subscribers on n1 but the hub has no stream to it (it just ended): the event
  // cannot reach them, so it is refused with a retry hint rather than answered 200.
  HttpResponse r = Send("POST", "/apps/app-id/events", body);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "1");
  {
    testutil::RawNode n1(port, "any");
    ASSERT_TRUE(n1.Hello("n1") && n1.Snapshot("orders"));
    ASSERT_TRUE(testutil::WaitFor([&] { return hub_->NodeIds().size() == 1; }));
    // The answer waits for n1's ack of the publish: none yet, so it comes later.
    r = Send("POST", "/apps/app-id/events", body);
    ASSERT_TRUE(r.later);
    auto answer = Later(std::move(r));
    relay::v1::ControlMessage got;
    while (n1.Read(&got) && !got.has_publish()) {
    }
    ASSERT_TRUE(got.has_publish());
    EXPECT_EQ(answer.wait_for(0s), std::future_status::timeout);
    relay::v1::NodeMessage ack;
    ack.set_seq(3);
    ack.set_ack(got.seq());
    ASSERT_TRUE(n1.Write(ack));
    ASSERT_EQ(answer.wait_for(5s), std::future_status::ready);
    r = answer.get();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, R"({"channels":{"presence-room":{"user_count":1,"subscription_count":2},)"
                      R"("news":{"subscription_count":0}}})");
    HttpRequest q;
    q.method = "GET";
    q.path = "/apps/app-id/channels/presence-room";
    q.query = "info=user_count,subscription_count";
    q.headers = {{"X-Relay-Key", "app-key"}, {"X-Relay-Secret", "app-secret"}};
    r = http_->Handle(q);
    EXPECT_EQ(r.body, R"({"occupied":true,"user_count":1,"subscription_count":2})");
    // A publish whose node's stream ends before its ack is refused: it may have reached some.
    // (One channel: the fixture's daily quota of 3 messages has 1 left.)
    auto refused = Later(Send("POST", "/apps/app-id/events",
                              R"({"name":"e","data":"{}","channel":"presence-room"})"));
    while (n1.Read(&got) && !got.has_publish()) {
    }
    n1.Cancel();
    ASSERT_EQ(refused.wait_for(5s), std::future_status::ready);
    HttpResponse lost = refused.get();
    EXPECT_EQ(lost.status, 503);
    EXPECT_EQ(HeaderOf(lost, "Retry-After"), "1");
    EXPECT_NE(lost.body.find("may have reached some subscribers"), std::string::npos) << lost.body;
  }
  server->Shutdown(std::chrono::system_clock::now() + 5s);
}

TEST_F(HttpApiTest, SignatureWindowIs600SecondsEitherWay) {
  const std::string path = "/apps/app-id/channels";
  const int64_t now = kBeforeMidnightMs / 1000;
  EXPECT_EQ(SendSigned("GET", path, "", now).status, 200);
  EXPECT_EQ(SendSigned("GET", path, "", now - 600).status, 200);
  EXPECT_EQ(SendSigned("GET", path, "", now + 600).status, 200);
  HttpResponse old = SendSigned("GET", path, "", now - 601);
  EXPECT_EQ(old.status, 401);
  EXPECT_EQ(old.body,
            common::StrCat("{\"error\":\"Timestamp expired: Given timestamp (", now - 601,
                           ") not within 600s of server time (", now, ")\",\"code\":401}"));
  EXPECT_EQ(SendSigned("GET", path, "", now + 601).status, 401);
  // The same request becomes too old as the clock moves on.
  clock_.Advance(601s);
  EXPECT_EQ(SendSigned("GET", path, "", now).status, 401);
  EXPECT_EQ(SendSigned("POST", "/apps/app-id/events", R"({"name":"e","data":"x","channel":"a"})",
                       now + 601)
                .status,
            200);
}

TEST_F(HttpApiTest, RetryAfterCountsToTheQuotaResetOnTheClock) {
  const std::string body = R"({"name":"e","data":"x","channels":["a","b","c"]})";
  ASSERT_EQ(Send("POST", "/apps/app-id/events", body).status, 200);
  HttpResponse r = Send("POST", "/apps/app-id/events", R"({"name":"e","data":"x","channel":"a"})");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOf(r, "X-RateLimit-Limit"), "3");
  EXPECT_EQ(HeaderOf(r, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(HeaderOf(r, "X-RateLimit-Reset"), std::to_string(kBeforeMidnightMs / 1000 + 60));
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "60");
  clock_.Advance(45s);
  r = Send("POST", "/apps/app-id/users/u1/events", R"({"name":"e","data":"x"})");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "15");
  clock_.Advance(15s);  // 00:00 UTC
  EXPECT_EQ(Send("POST", "/apps/app-id/users/u1/events", R"({"name":"e","data":"x"})").status, 200);
}

TEST_F(HttpApiTest, PerAddressLimitHeadersOnEventRoutesOnly) {
  Start({.trigger_requests_per_minute = 1});
  const std::string event = R"({"name":"e","data":"x","channel":"a"})";
  HttpResponse first = Send("POST", "/apps/app-id/events", event);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(HeaderOf(first, "X-RateLimit-Limit"), "1");
  EXPECT_EQ(HeaderOf(first, "X-RateLimit-Remaining"), "0");
  HttpResponse limited = Send("POST", "/apps/app-id/batch_events", "{}");
  EXPECT_EQ(limited.status, 429);
  int64_t reset = 0;
  ASSERT_TRUE(absl::SimpleAtoi(common::AbslView(HeaderOf(limited, "X-RateLimit-Reset")), &reset));
  EXPECT_EQ(HeaderOf(limited, "Retry-After"),
            std::to_string(std::max<int64_t>(1, reset - clock_.NowUnixSeconds())));
  HttpResponse query = Send("GET", "/apps/app-id/channels");
  EXPECT_EQ(query.status, 200);
  EXPECT_TRUE(query.headers.empty());
  clock_.Advance(60s);
  EXPECT_EQ(Send("POST", "/apps/app-id/events", event).status, 200);
}

}  // namespace
}  // namespace relay::http_bridge
