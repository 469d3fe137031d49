// relay.v1.Channels.WatchChannelEvents against an in-process cluster with a C++ gRPC client: a
// client event crossing the node link and a trigger arrive in order; watchers cancelled while
// other threads publish leave nothing behind (the reactor's wake, write and cancel race here, and
// the CI runs this under ASan); a control plane that stops ends its watchers with UNAVAILABLE.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "common/metrics.h"
#include "relay/v1/public.grpc.pb.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using Reader = grpc::ClientReader<relay::v1::ChannelEvent>;

struct Watch {
  grpc::ClientContext ctx;
  std::unique_ptr<Reader> reader;
};

std::unique_ptr<relay::v1::Channels::Stub> Stub(Cluster& cluster) {
  return relay::v1::Channels::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(cluster.cp().grpc_port()), grpc::InsecureChannelCredentials()));
}

// Opens a watch and returns once the control plane registered it (its headers arrived).
std::unique_ptr<Watch> Open(relay::v1::Channels::Stub& stub,
                            const relay::v1::WatchChannelEventsRequest& req) {
  auto w = std::make_unique<Watch>();
  w->ctx.AddMetadata("x-relay-key", "app-key");
  w->ctx.AddMetadata("x-relay-secret", "app-secret");
  w->reader = stub.WatchChannelEvents(&w->ctx, req);
  w->reader->WaitForInitialMetadata();
  return w;
}

double Metric(Cluster& cluster, const std::string& name) {
  common::MetricsWriter w;
  cluster.cp().WriteMetrics(w);
  std::string text = w.text();
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

TEST(WatchChannelEvents, AClientEventFromAnotherNodeAndATriggerArriveInOrder) {
  Cluster cluster(2);
  auto stub = Stub(cluster);
  relay::v1::WatchChannelEventsRequest req;
  req.set_app("app-id");
  req.set_prefix("private-");
  auto w = Open(*stub, req);
  auto sender = cluster.Client(0);
  auto receiver = cluster.Client(1);
  ASSERT_NE(cluster.Subscribe(*sender, "private-chat"), "");
  ASSERT_NE(cluster.Subscribe(*receiver, "private-chat"), "");
  sender->Send(R"({"event":"client-typing","channel":"private-chat","data":{"n":1}})");
  ASSERT_TRUE(receiver->ReceiveEvent("client-typing"));  // through the control plane
  ASSERT_TRUE(cluster.Trigger("public-noise", "noise", "{}").ok());
  ASSERT_TRUE(cluster.Trigger("private-chat", "order", "hello", "1.2").ok());

  relay::v1::ChannelEvent e;
  ASSERT_TRUE(w->reader->Read(&e));
  EXPECT_EQ(e.channel(), "private-chat");
  EXPECT_EQ(e.event(), "client-typing");
  EXPECT_EQ(e.data(), R"({"n":1})");
  EXPECT_EQ(e.source(), relay::v1::ChannelEvent::SOURCE_CLIENT);
  EXPECT_FALSE(e.socket_id().empty());
  ASSERT_TRUE(w->reader->Read(&e));
  EXPECT_EQ(e.event(), "order");
  EXPECT_EQ(e.data(), "hello");
  EXPECT_EQ(e.source(), relay::v1::ChannelEvent::SOURCE_API);
  EXPECT_EQ(e.socket_id(), "1.2");
  w->ctx.TryCancel();
  EXPECT_EQ(w->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(WatchChannelEvents, WatchersCancelledWhileOthersPublishLeaveNothingBehind) {
  Cluster cluster(1);
  auto stub = Stub(cluster);
  relay::v1::WatchChannelEventsRequest req;
  req.set_app("app-id");
  std::vector<std::unique_ptr<Watch>> watches;
  for (int i = 0; i < 8; ++i) watches.push_back(Open(*stub, req));
  ASSERT_EQ(Metric(cluster, "relay_channel_watchers"), 8);
  std::atomic<bool> stop{false};
  std::vector<std::thread> publishers;
  // Joined on every way out, so a failed assertion is reported rather than ending the process.
  absl::Cleanup join = [&] {
    stop = true;
    for (auto& t : publishers) t.join();
  };
  // Bounded so that both together stay under a watcher's buffer (5000 events): a watcher that
  // reads is never cut for being slower than two threads publishing in a tight loop.
  constexpr int kPerPublisher = 2000;
  for (int t = 0; t < 2; ++t) {
    publishers.emplace_back([&, t] {
      for (int i = 0; i < kPerPublisher && !stop.load(); ++i) {
        (void)cluster.Trigger("c" + std::to_string(t), "e", std::to_string(i));
      }
    });
  }
  // Half read for a while, half never read; all are cancelled while the events still flow.
  for (size_t i = 0; i < watches.size(); i += 2) {
    relay::v1::ChannelEvent e;
    for (int n = 0; n < 50; ++n) ASSERT_TRUE(watches[i]->reader->Read(&e));
  }
  for (auto& w : watches) w->ctx.TryCancel();
  for (auto& w : watches) {
    relay::v1::ChannelEvent e;
    while (w->reader->Read(&e)) {
    }
    grpc::StatusCode code = w->reader->Finish().error_code();
    // A watcher that fell behind may have been cut before its cancel.
    EXPECT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << code;
  }
  std::move(join).Invoke();
  EXPECT_TRUE(WaitFor([&] { return Metric(cluster, "relay_channel_watchers") == 0; }));
}

TEST(WatchChannelEvents, AStoppingControlPlaneEndsItsWatchersWithUnavailable) {
  Cluster cluster(1);
  auto stub = Stub(cluster);
  relay::v1::WatchChannelEventsRequest req;
  req.set_app("app-id");
  auto w = Open(*stub, req);
  ASSERT_TRUE(cluster.Trigger("c", "before-the-stop", "{}").ok());
  std::thread stopper([&] { cluster.cp().Stop(); });
  relay::v1::ChannelEvent e;
  ASSERT_TRUE(w->reader->Read(&e));
  EXPECT_EQ(e.event(), "before-the-stop");
  EXPECT_FALSE(w->reader->Read(&e));
  grpc::Status st = w->reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("shutting down"), std::string::npos) << st.error_message();
  stopper.join();
}

}  // namespace
}  // namespace relay::testutil
