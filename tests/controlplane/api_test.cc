// controlplane::Api on a real AppStore (SQLite in a temp dir), ClusterState and NodeHub, with a
// ManualClock: trigger validation, the info attributes it answers, the daily quota's UTC day,
// and the routing of events to nodes.
#include "controlplane/api.h"

#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>

#include "common/clock.h"
#include "common/crypto.h"
#include "relay/v1/node_link.grpc.pb.h"
#include "tests/testutil/raw_node.h"
#include "tests/testutil/wait_for.h"

namespace relay::controlplane {
namespace {

using namespace std::chrono_literals;

// 2026-01-01T23:59:00Z: one minute before a UTC day boundary.
constexpr int64_t kBeforeMidnightMs = (1767225600 + 86400 - 60) * 1000LL;

class NoNodes : public NodeHub::Handler {
 public:
  void OnAttach(const std::string&, const relay::v1::NodeHello&,
                const relay::v1::NodeSnapshot&) override {}
  void OnNodeMessage(const std::string&, const relay::v1::NodeMessage&) override {}
  void OnDetach(const std::string&) override {}
};

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() {
    dir_ = std::filesystem::temp_directory_path() / ("relay-api-test-" + common::RandomHex(6));
    std::filesystem::create_directories(dir_);
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all);
    store_ = std::move(*AppStore::Open(dir_.string()));
    NodeHubOptions hub_options;
    hub_options.authenticate = testutil::AcceptAnyNodeToken;
    hub_ = std::make_unique<NodeHub>(hub_options, &no_nodes_);
    app_ = CreateApp(0);
    api_ = std::make_unique<Api>(*store_, cluster_, *hub_, ApiLimits{}, clock_, &watch_);
  }
  ~ApiTest() override {
    api_.reset();
    hub_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  relay::v1::App CreateApp(uint64_t daily_quota) {
    relay::v1::CreateAppRequest req;
    req.set_name("test");
    req.set_id("app-" + common::RandomHex(4));
    req.set_key("key-" + req.id());
    req.set_secret("secret-" + req.id());
    req.mutable_limits()->set_max_daily_messages(daily_quota);
    return *store_->Create(req);
  }

  // Node `node` has `subs` subscribers of `channel`, and presence members `users` on it.
  void Subscribers(const std::string& node, const std::string& channel, uint32_t subs,
                   const std::vector<std::string>& users = {}) {
    relay::v1::NodeSnapshot s;
    auto* c = s.add_channels();
    c->set_app_id(app_.id());
    c->set_channel(channel);
    c->set_subscriptions(subs);
    int n = 0;
    for (const auto& u : users) {
      auto* p = s.add_presence();
      p->set_app_id(app_.id());
      p->set_channel(channel);
      p->set_user_id(u);
      p->set_socket_id("1." + std::to_string(++n));
    }
    cluster_.ApplySnapshot(node, s);
  }

  absl::StatusOr<TriggerResult> Trigger(std::vector<std::string> channels,
                                        const std::string& info = "",
                                        const relay::v1::App* app = nullptr) {
    relay::v1::TriggerRequest r;
    for (auto& c : channels) r.add_channels(c);
    r.set_name("e");
    r.set_data("{}");
    r.set_info(info);
    return api_->Trigger(app != nullptr ? *app : app_, r);
  }

  std::filesystem::path dir_;
  common::ManualClock clock_{kBeforeMidnightMs};
  std::unique_ptr<AppStore> store_;
  ClusterState cluster_;
  NoNodes no_nodes_;
  std::unique_ptr<NodeHub> hub_;
  relay::v1::App app_;
  ChannelWatch watch_;
  std::unique_ptr<Api> api_;
};

TEST_F(ApiTest, TriggerRefusesWhatItCannotPublish) {
  EXPECT_EQ(Trigger({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Trigger({"bad channel"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Trigger({"a"}, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Trigger({"private-encrypted-a", "b"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::string> many(101);
  for (size_t i = 0; i < many.size(); ++i) many[i] = "c" + std::to_string(i);
  EXPECT_EQ(Trigger(many).status().code(), absl::StatusCode::kInvalidArgument);

  relay::v1::TriggerRequest reserved;
  reserved.add_channels("a");
  reserved.set_name("pusher:x");
  EXPECT_EQ(api_->Trigger(app_, reserved).status().code(), absl::StatusCode::kInvalidArgument);
  relay::v1::TriggerRequest big;
  big.add_channels("a");
  big.set_name("e");
  big.set_data(std::string(app_.limits().max_event_payload_bytes() + 1, 'x'));
  EXPECT_EQ(api_->Trigger(app_, big).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(Trigger({"a"}).ok());
}

TEST_F(ApiTest, ChannelQueriesGiveTheAttributesAsked) {
  Subscribers("n1", "presence-room", 2, {"u1"});
  relay::v1::GetChannelRequest g;
  g.set_channel("presence-room");
  g.set_info("user_count");
  auto one = api_->GetChannel(app_, g);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->attrs.user_count);
  EXPECT_FALSE(one->attrs.subscription_count);
  EXPECT_TRUE(one->info.occupied());
  EXPECT_EQ(one->info.user_count(), 1u);
  g.set_channel("news");
  EXPECT_EQ(api_->GetChannel(app_, g).status().code(), absl::StatusCode::kInvalidArgument);
  g.set_info("cache");
  EXPECT_EQ(api_->GetChannel(app_, g).status().code(), absl::StatusCode::kInvalidArgument);

  relay::v1::ListChannelsRequest l;
  l.set_info("subscription_count");
  auto list = api_->ListChannels(app_, l);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->attrs.subscription_count);
  EXPECT_FALSE(list->attrs.user_count);
  ASSERT_EQ(list->proto.channels_size(), 1);
  EXPECT_EQ(list->proto.channels(0).subscription_count(), 2u);
  l.set_info("user_count");  // needs a presence- prefix
  EXPECT_EQ(api_->ListChannels(app_, l).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, DailyQuotaResetsAtTheUtcDayBoundary) {
  relay::v1::App limited = CreateApp(2);
  ASSERT_TRUE(Trigger({"a", "b"}, "", &limited).ok());
  RateInfo rate;
  relay::v1::TriggerRequest r;
  r.add_channels("a");
  r.set_name("e");
  auto refused = api_->Trigger(limited, r, &rate);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(rate.present);
  EXPECT_EQ(rate.limit, 2u);
  EXPECT_EQ(rate.remaining, 0u);
  EXPECT_EQ(rate.reset_unix_s, kBeforeMidnightMs / 1000 + 60);  // the next 00:00 UTC

  clock_.Advance(59s);  // 23:59:59, still the same day
  EXPECT_EQ(api_->Trigger(limited, r).status().code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(1s);  // 00:00:00
  EXPECT_TRUE(api_->Trigger(limited, r).ok());
  // More than the whole quota can never be accepted, whatever the day.
  EXPECT_EQ(Trigger({"a", "b", "c"}, "", &limited).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(ApiTest, TheDaysCountSurvivesARestart) {
  relay::v1::App limited = CreateApp(2);
  ASSERT_TRUE(Trigger({"a", "b"}, "", &limited).ok());
  Api restarted(*store_, cluster_, *hub_, ApiLimits{}, clock_);
  relay::v1::TriggerRequest r;
  r.add_channels("a");
  r.set_name("e");
  EXPECT_EQ(restarted.Trigger(limited, r).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(ApiTest, PerAddressWindowFollowsTheClock) {
  Api api(*store_, cluster_, *hub_, ApiLimits{.trigger_requests_per_minute = 1}, clock_);
  RateInfo rate;
  EXPECT_TRUE(api.AdmitRequest("10.0.0.1", &rate).ok());
  EXPECT_EQ(api.AdmitRequest("10.0.0.1", &rate).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(api.AdmitRequest("10.0.0.2", &rate).ok());
  clock_.Advance(60s);
  EXPECT_TRUE(api.AdmitRequest("10.0.0.1", &rate).ok());
}

TEST_F(ApiTest, RotatedSecretsVerifyUntilTheirOverlapEndsByTheClock) {
  std::string old_secret = app_.secret();
  auto rotated = store_->RotateSecret(app_.id(), 60, "new-secret-0123456789");
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  // The overlap is stamped with real time; set the manual clock relative to it.
  ASSERT_EQ(rotated->previous_secrets_size(), 1);
  int64_t expires_ms = rotated->previous_secrets(0).expires_unix_ms();
  clock_.Set(expires_ms - 1000);
  EXPECT_TRUE(api_->CheckCredentials(*rotated, {rotated->key(), old_secret, ""}).ok());
  clock_.Set(expires_ms);
  EXPECT_EQ(api_->CheckCredentials(*rotated, {rotated->key(), old_secret, ""}).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(api_->CheckCredentials(*rotated, {rotated->key(), "new-secret-0123456789", ""}).ok());
}

// A data plane reduced to its node link stream: attaches with an empty snapshot, then reads.
class FakeNode {
 public:
  FakeNode(const std::string& target, const std::string& id)
      : stub_(relay::v1::NodeLink::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {
    ctx_.AddMetadata("authorization", "Bearer any");
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    stream_ = stub_->Attach(&ctx_);
    relay::v1::NodeMessage hello;
    hello.mutable_hello()->set_node_id(id);
    relay::v1::NodeMessage snapshot;
    snapshot.mutable_snapshot();
    stream_->Write(hello);
    stream_->Write(snapshot);
  }
  ~FakeNode() { ctx_.TryCancel(); }

  // The next publish sent to this node (an empty one when the stream ends first).
  relay::v1::Publish NextPublish() {
    relay::v1::ControlMessage msg;
    while (stream_->Read(&msg)) {
      if (msg.has_publish()) return msg.publish();
    }
    return {};
  }

 private:
  std::unique_ptr<relay::v1::NodeLink::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<relay::v1::NodeMessage, relay::v1::ControlMessage>>
      stream_;
};

// Data planes attached to the hub through a real gRPC server, for as long as it lives.
class LiveNodes {
 public:
  LiveNodes(NodeHub* hub, const std::vector<std::string>& ids) {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(hub);
    server_ = builder.BuildAndStart();
    for (const auto& id : ids) {
      nodes_.push_back(std::make_unique<FakeNode>("127.0.0.1:" + std::to_string(port), id));
    }
    EXPECT_TRUE(testutil::WaitFor([&] { return hub->NodeIds().size() == ids.size(); }));
  }
  ~LiveNodes() {
    nodes_.clear();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<FakeNode>> nodes_;
};

// An event for channels a node has subscribers of is answered 2xx only once it is queued to
// that node: a node the hub no longer has (its stream just ended) gets a refusal, not a 2xx.
TEST_F(ApiTest, AnEventThatCannotBeQueuedToANodeWithSubscribersIsRefused) {
  Subscribers("gone", "room", 1);
  auto r = Trigger({"room"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(r.status()), 1);
  EXPECT_TRUE(Trigger({"nobody-here"}).ok());
}

TEST_F(ApiTest, WatchValidatesItsFilterAsTheOtherCallsValidateChannelNames) {
  auto watch = [&](std::vector<std::string> channels, std::string prefix = "") {
    relay::v1::WatchChannelEventsRequest r;
    for (auto& c : channels) r.add_channels(c);
    r.set_prefix(prefix);
    return api_->Watch(app_, r, [] {}).status();
  };
  relay::v1::GetChannelRequest get;
  get.set_channel("bad channel");
  absl::Status bad = watch({"bad channel"});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad, api_->GetChannel(app_, get).status());  // the same message
  EXPECT_EQ(watch({"#server-to-user-u"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(watch({}, "has space").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(watch({}, std::string(200, 'p')).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> many(101);
  for (size_t i = 0; i < many.size(); ++i) many[i] = "c" + std::to_string(i);
  EXPECT_EQ(watch(many).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(watch_.open(), 0u);
  many.pop_back();
  EXPECT_TRUE(watch(many, "private-").ok());
  EXPECT_TRUE(watch({}).ok());  // every channel
  EXPECT_EQ(watch_.open(), 2u);
}

TEST_F(ApiTest, TriggersAndBatchesReachTheWatchersOfTheirChannelsInOrder) {
  relay::v1::WatchChannelEventsRequest r;
  r.add_channels("a");
  r.set_prefix("private-");
  auto w = api_->Watch(app_, r, [] {});
  ASSERT_TRUE(w.ok()) << w.status();
  relay::v1::TriggerRequest t;
  for (const char* c : {"a", "b", "private-c", "#server-to-user-a"}) t.add_channels(c);
  t.set_name("e1");
  t.set_data("hello");
  t.set_socket_id("1.2");
  ASSERT_TRUE(api_->Trigger(app_, t).ok());
  relay::v1::TriggerBatchRequest batch;
  for (const char* c : {"private-d", "b", "a"}) {
    auto* e = batch.add_batch();
    e->set_channel(c);
    e->set_name(std::string("batch-") + c);
    e->set_data("{}");
  }
  ASSERT_TRUE(api_->TriggerBatch(app_, batch).ok());
  std::vector<std::string> got;
  while (auto e = (*w)->Take().event) {
    got.push_back(e->channel() + ":" + e->event());
    EXPECT_EQ(e->source(), relay::v1::ChannelEvent::SOURCE_API);
    EXPECT_GT(e->accepted_unix_us(), 0);
    if (e->event() == "e1") {
      EXPECT_EQ(e->data(), "hello");
      EXPECT_EQ(e->socket_id(), "1.2");
    }
  }
  EXPECT_EQ(got, (std::vector<std::string>{"a:e1", "private-c:e1", "private-d:batch-private-d",
                                           "a:batch-a"}));
}

TEST_F(ApiTest, NoWatcherIsLeftOnAnAppDisabledBeforeItRegistered) {
  relay::v1::App before = app_;  // what the caller resolved
  relay::v1::UpdateAppRequest disable;
  disable.set_app(app_.id());
  disable.mutable_changes()->set_enabled(false);
  disable.add_update_mask("enabled");
  ASSERT_TRUE(store_->Update(disable).ok());
  auto w = api_->Watch(before, relay::v1::WatchChannelEventsRequest(), [] {});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(watch_.open(), 0u);
}

TEST_F(ApiTest, TriggerDescribesEachChannelOnceWithTheAttributesThatApply) {
  LiveNodes nodes(hub_.get(), {"n1"});
  Subscribers("n1", "presence-room", 3, {"u1", "u2"});
  auto r = Trigger({"presence-room", "news", "presence-room"}, "user_count,subscription_count");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->channels.size(), 2u);
  EXPECT_EQ(r->channels[0].info.name(), "presence-room");
  EXPECT_TRUE(r->channels[0].attrs.user_count);
  EXPECT_TRUE(r->channels[0].attrs.subscription_count);
  EXPECT_EQ(r->channels[0].info.user_count(), 2u);
  EXPECT_EQ(r->channels[0].info.subscription_count(), 3u);
  EXPECT_EQ(r->channels[1].info.name(), "news");
  EXPECT_FALSE(r->channels[1].attrs.user_count);  // not a presence channel
  EXPECT_TRUE(r->channels[1].attrs.subscription_count);
  // The gRPC answer holds the same figures.
  EXPECT_EQ(r->proto.channels().size(), 2u);
  EXPECT_EQ(r->proto.channels().at("presence-room").user_count(), 2u);

  auto plain = Trigger({"news"});
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->channels.empty());
  EXPECT_TRUE(plain->proto.channels().empty());
}

TEST_F(ApiTest, BatchDescribesOnlyTheItemsThatAsked) {
  LiveNodes nodes(hub_.get(), {"n1"});
  Subscribers("n1", "a", 4);
  relay::v1::TriggerBatchRequest b;
  for (const char* info : {"subscription_count", ""}) {
    auto* e = b.add_batch();
    e->set_channel("a");
    e->set_name("e");
    e->set_data("{}");
    e->set_info(info);
  }
  auto r = api_->TriggerBatch(app_, b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->proto.has_info());
  ASSERT_EQ(r->batch.size(), 2u);
  EXPECT_TRUE(r->batch[0].attrs.subscription_count);
  EXPECT_EQ(r->batch[0].info.subscription_count(), 4u);
  EXPECT_FALSE(r->batch[1].attrs.subscription_count);
}

TEST_F(ApiTest, RouteSendsToTheNodesWithInterestExceptTheOrigin) {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(hub_.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  {
    const std::string target = "127.0.0.1:" + std::to_string(port);
    FakeNode n1(target, "n1"), n2(target, "n2"), n3(target, "n3");
    ASSERT_TRUE(testutil::WaitFor([&] { return hub_->NodeIds().size() == 3; }));
    Subscribers("n1", "room", 1);
    Subscribers("n2", "room", 1);  // n3 has no subscriber of "room"

    relay::v1::Publish client_event;
    client_event.set_app_id(app_.id());
    client_event.add_channels("room");
    client_event.set_event("client-from-n1");
    EXPECT_EQ(api_->Route(client_event, "n1"), 1u);
    EXPECT_EQ(api_->counters().publish_commands.load(), 0u);  // relayed client events not counted

    relay::v1::Publish api_event = client_event;
    api_event.set_event("from-the-api");
    EXPECT_EQ(api_->Route(api_event), 2u);
    EXPECT_EQ(api_->counters().publish_commands.load(), 2u);

    EXPECT_EQ(n2.NextPublish().event(), "client-from-n1");
    EXPECT_EQ(n2.NextPublish().event(), "from-the-api");
    EXPECT_EQ(n1.NextPublish().event(), "from-the-api");  // the client event was not echoed

    relay::v1::Publish nobody = api_event;
    nobody.set_channels(0, "nobody-here");
    EXPECT_EQ(api_->Route(nobody), 0u);
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

TEST_F(ApiTest, EventsAreRefusedWithARetryHintAndNotChargedWhileTheGateIsClosed) {
  RouteGate gate(15000ms, clock_);
  api_->SetRouteGate(&gate);
  gate.ExpectNodes({"n1"});           // a restart: n1 was attached before
  relay::v1::App app = CreateApp(1);  // one message a day: a charge would use it up

  auto refused = Trigger({"room"}, "", &app);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(refused.status()), 1);
  relay::v1::TriggerBatchRequest batch;
  auto* item = batch.add_batch();
  item->set_channel("room");
  item->set_name("e");
  item->set_data("{}");
  EXPECT_EQ(api_->TriggerBatch(app, batch).status().code(), absl::StatusCode::kUnavailable);
  relay::v1::SendToUserRequest to_user;
  to_user.set_user_id("u1");
  to_user.set_name("e");
  to_user.set_data("{}");
  EXPECT_EQ(api_->SendToUser(app, to_user).code(), absl::StatusCode::kUnavailable);
  relay::v1::TerminateUserConnectionsRequest terminate;
  terminate.set_user_id("u1");
  EXPECT_EQ(api_->TerminateUserConnections(app, terminate).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(gate.refused(GateRefusal::kReattaching), 4u);
  EXPECT_EQ(api_->counters().events.load(), 0u);

  clock_.Advance(15000ms);                        // n1 never came back: declared gone
  EXPECT_TRUE(Trigger({"room"}, "", &app).ok());  // the quota was still whole
  EXPECT_EQ(Trigger({"room"}, "", &app).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(ApiTest, TwoPublishesToACacheChannelLeaveTheLaterOneCached) {
  ASSERT_TRUE(Trigger({"cache-news"}).ok());
  relay::v1::TriggerRequest r;
  r.add_channels("cache-news");
  r.set_name("second");
  r.set_data("2");
  ASSERT_TRUE(api_->Trigger(app_, r).ok());
  auto cached = cluster_.GetCache(app_.id(), "cache-news");
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->event(), "second");
}

// A node that stops reading: its outbox grows once gRPC's flow control window is full. Before the
// outbox reaches the bound that cuts the node off, events for it are refused with a retry hint
// (backpressure to the caller), and nothing is queued for them.
TEST_F(ApiTest, EventsForANodeThatStoppedReadingAreRefusedBeforeItIsCutOff) {
  NodeHubOptions options;
  options.authenticate = testutil::AcceptAnyNodeToken;
  options.max_outbox_messages = 64;
  NodeHub hub(options, &no_nodes_);
  Api api(*store_, cluster_, hub, ApiLimits{}, clock_);
  RouteGate gate(15000ms, clock_);
  api.SetRouteGate(&gate);
  LiveNodes nodes(&hub, {"slow"});  // never reads what it is sent
  Subscribers("slow", "room", 1);
  relay::v1::TriggerRequest r;
  r.add_channels("room");
  r.set_name("e");
  r.set_data(std::string(8000, 'x'));
  absl::Status refused = absl::OkStatus();
  for (int i = 0; i < 100000 && refused.ok(); ++i) refused = api.Trigger(app_, r).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterSeconds(refused), 1);
  EXPECT_EQ(gate.refused(GateRefusal::kNodeBacklog), 1u);
  EXPECT_EQ(hub.NodeIds(), std::vector<std::string>{"slow"});  // not cut off
}

}  // namespace
}  // namespace relay::controlplane
