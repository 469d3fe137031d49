// relay.v1.Channels.WatchLifecycleEvents against an in-process cluster with a C++ gRPC client: a
// presence join on two nodes and a client event arrive with consecutive cursors; a consumer
// resuming with its cursor after a control plane restart gets the same events from disk; watchers
// catching up from disk or live, cancelled while events are recorded, leave nothing behind (the
// reactor's wake, write and cancel race with the writer thread here, and the CI runs this under
// ASan); a stopping control plane ends its watchers with UNAVAILABLE.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "common/metrics.h"
#include "controlplane/lifecycle_log.h"
#include "relay/v1/public.grpc.pb.h"
#include "tests/e2e/cluster.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {
namespace {

using Reader = grpc::ClientReader<relay::v1::LifecycleEvent>;

struct Watch {
  grpc::ClientContext ctx;
  std::unique_ptr<Reader> reader;
};

std::unique_ptr<relay::v1::Channels::Stub> Stub(Cluster& cluster) {
  return relay::v1::Channels::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(cluster.cp().grpc_port()), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<Watch> Open(relay::v1::Channels::Stub& stub, std::optional<uint64_t> since) {
  relay::v1::WatchLifecycleEventsRequest req;
  req.set_app("app-id");
  if (since) req.set_since_cursor(*since);
  auto w = std::make_unique<Watch>();
  w->ctx.AddMetadata("x-relay-key", "app-key");
  w->ctx.AddMetadata("x-relay-secret", "app-secret");
  w->reader = stub.WatchLifecycleEvents(&w->ctx, req);
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

std::string Describe(const relay::v1::LifecycleEvent& e) {
  return e.name() + " " + e.channel() + (e.user_id().empty() ? "" : " " + e.user_id());
}

TEST(WatchLifecycleEvents, PresenceAndClientEventsWithCursorsResumedAfterARestart) {
  Cluster cluster(2);
  auto stub = Stub(cluster);
  auto live = Open(*stub, std::nullopt);
  auto alice = cluster.Client(0);
  auto bob = cluster.Client(1);
  ASSERT_NE(cluster.Subscribe(*alice, "presence-room", R"({"user_id":"u1"})"), "");
  ASSERT_NE(cluster.Subscribe(*bob, "presence-room", R"({"user_id":"u2"})"), "");
  alice->Send(R"({"event":"client-hi","channel":"presence-room","data":{"n":1}})");
  ASSERT_TRUE(bob->ReceiveEvent("client-hi"));

  std::vector<relay::v1::LifecycleEvent> seen(4);
  for (auto& e : seen) ASSERT_TRUE(live->reader->Read(&e));
  std::vector<std::string> names;
  for (const auto& e : seen) names.push_back(Describe(e));
  EXPECT_EQ(names, (std::vector<std::string>{
                       "channel_occupied presence-room", "member_added presence-room u1",
                       "member_added presence-room u2", "client_event presence-room u1"}));
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_EQ(seen[i].cursor(), seen[0].cursor() + i);
  EXPECT_EQ(seen[3].event(), "client-hi");
  EXPECT_EQ(seen[3].data(), R"({"n":1})");
  live->ctx.TryCancel();
  live->reader->Finish();

  cluster.RestartControlPlane();
  ASSERT_TRUE(cluster.WaitAttached(2));
  auto stub2 = Stub(cluster);
  auto resumed = Open(*stub2, seen[1].cursor());
  for (size_t i = 2; i < seen.size(); ++i) {
    relay::v1::LifecycleEvent e;
    ASSERT_TRUE(resumed->reader->Read(&e));
    EXPECT_EQ(e.SerializeAsString(), seen[i].SerializeAsString()) << Describe(e);
  }
  resumed->ctx.TryCancel();
  resumed->reader->Finish();
}

TEST(WatchLifecycleEvents, WatchersCancelledWhileEventsAreRecordedLeaveNothingBehind) {
  Cluster cluster(1);
  ASSERT_NE(cluster.cp().lifecycle(), nullptr);
  auto stub = Stub(cluster);
  std::atomic<bool> stop{false};
  std::vector<std::thread> recorders;
  // Joined on every way out, so a failed assertion is reported rather than ending the process.
  absl::Cleanup join = [&] {
    stop = true;
    for (auto& t : recorders) t.join();
  };
  // Some catch up from the oldest event, some follow live; half read, half never do.
  std::vector<std::unique_ptr<Watch>> watches;
  for (int i = 0; i < 8; ++i) {
    watches.push_back(Open(*stub, i % 4 == 0 ? std::optional<uint64_t>(0) : std::nullopt));
  }
  ASSERT_EQ(Metric(cluster, "relay_lifecycle_watchers"), 8);
  // Recorders started after the watchers opened (the live ones see their events), each bounded so
  // that all of them together stay under a watcher's buffer (5000 events): a watcher that reads is
  // never cut for being slower than two threads recording in a tight loop.
  constexpr int kPerRecorder = 2000;
  for (int t = 0; t < 2; ++t) {
    recorders.emplace_back([&, t] {
      for (int i = 0; i < kPerRecorder && !stop.load(); ++i) {
        cluster.cp().lifecycle()->Record(
            "app-id", controlplane::Webhooks::ChannelEvent("channel_occupied",
                                                           "c" + std::to_string(t * 1000 + i)));
        if (i % 64 == 0) std::this_thread::yield();
      }
    });
  }
  for (size_t i = 0; i < watches.size(); i += 2) {
    relay::v1::LifecycleEvent e;
    uint64_t last = 0;
    for (int n = 0; n < 50; ++n) {
      ASSERT_TRUE(watches[i]->reader->Read(&e));
      EXPECT_GT(e.cursor(), last);  // in cursor order
      last = e.cursor();
    }
  }
  for (auto& w : watches) w->ctx.TryCancel();
  for (auto& w : watches) {
    relay::v1::LifecycleEvent e;
    while (w->reader->Read(&e)) {
    }
    grpc::StatusCode code = w->reader->Finish().error_code();
    EXPECT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << code;
  }
  std::move(join).Invoke();
  EXPECT_TRUE(WaitFor([&] { return Metric(cluster, "relay_lifecycle_watchers") == 0; }));
}

TEST(WatchLifecycleEvents, AStoppingControlPlaneEndsItsWatchersWithUnavailable) {
  Cluster cluster(1);
  auto stub = Stub(cluster);
  auto w = Open(*stub, std::nullopt);
  cluster.cp().lifecycle()->Record("app-id",
                                   controlplane::Webhooks::ChannelEvent("cache_miss", "cache-x"));
  relay::v1::LifecycleEvent e;
  ASSERT_TRUE(w->reader->Read(&e));
  EXPECT_EQ(e.name(), "cache_miss");
  std::thread stopper([&] { cluster.cp().Stop(); });
  EXPECT_FALSE(w->reader->Read(&e));
  grpc::Status st = w->reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("since_cursor"), std::string::npos) << st.error_message();
  stopper.join();
}

}  // namespace
}  // namespace relay::testutil
