// The control link's outbox: deltas merge behind a write in flight, never reorder the entries
// the control plane applies in order, never touch the message being written, stay bounded.
#include "dataplane/uplink_queue.h"

#include <gtest/gtest.h>

namespace relay::dataplane {
namespace {

using relay::v1::NodeMessage;

NodeMessage Count(const std::string& channel, uint32_t n) {
  NodeMessage m;
  auto* c = m.mutable_delta()->add_channels();
  c->set_app_id("app");
  c->set_channel(channel);
  c->set_subscriptions(n);
  return m;
}

NodeMessage Connections(uint64_t n) {
  NodeMessage m;
  (*m.mutable_delta()->mutable_app_connections())["app"] = n;
  return m;
}

NodeMessage SignedIn(const std::string& socket) {
  NodeMessage m;
  auto* s = m.mutable_delta()->add_signed_in();
  s->set_app_id("app");
  s->set_user_id("u");
  s->set_socket_id(socket);
  return m;
}

NodeMessage SignedOut(const std::string& socket) {
  NodeMessage m = SignedIn(socket);
  m.mutable_delta()->mutable_signed_out()->Add(std::move(*m.mutable_delta()->mutable_signed_in(0)));
  m.mutable_delta()->clear_signed_in();
  return m;
}

NodeMessage Left(const std::string& socket) {
  NodeMessage m;
  auto* p = m.mutable_delta()->add_presence_left();
  p->set_app_id("app");
  p->set_channel("presence-x");
  p->set_socket_id(socket);
  return m;
}

NodeMessage Subscribe() {
  NodeMessage m;
  m.mutable_subscribe()->set_request_id(7);
  return m;
}

TEST(UplinkQueue, DeltasBehindAWriteInFlightMergeLatestValueWins) {
  UplinkQueue q(100, 1 << 20);
  EXPECT_EQ(q.Push(Count("a", 1), 0), 1u);
  const NodeMessage* first = q.StartWrite();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(q.StartWrite(), nullptr);  // one write at a time
  // Everything pushed while #1 is being written is carried by #2.
  EXPECT_EQ(q.Push(Count("a", 2), 5), 2u);
  EXPECT_EQ(q.Push(Count("b", 1), 6), 2u);
  EXPECT_EQ(q.Push(Connections(3), 6), 2u);
  EXPECT_EQ(q.Push(Count("a", 0), 7), 2u);
  EXPECT_EQ(q.Push(Connections(4), 7), 2u);
  EXPECT_EQ(q.messages(), 2u);
  EXPECT_EQ(q.merged(), 4u);
  // The message being written was not touched.
  EXPECT_EQ(first->delta().channels(0).subscriptions(), 1u);
  q.WriteDone();
  const NodeMessage* second = q.StartWrite();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->seq(), 2u);
  EXPECT_EQ(second->ack(), 7u);  // the latest ack
  ASSERT_EQ(second->delta().channels_size(), 2);
  EXPECT_EQ(second->delta().channels(0).channel(), "a");
  EXPECT_EQ(second->delta().channels(0).subscriptions(), 0u);
  EXPECT_EQ(second->delta().channels(1).channel(), "b");
  EXPECT_EQ(second->delta().app_connections().at("app"), 4u);
  q.WriteDone();
  EXPECT_EQ(q.messages(), 0u);
  EXPECT_EQ(q.bytes(), 0u);
}

// A message confirms what was handled by the time it is written, not only by the time it was
// queued (the control plane answers publishes on these acks); an ack never goes back.
TEST(UplinkQueue, AWriteCarriesTheLatestAck) {
  UplinkQueue q(100, 1 << 20);
  q.Push(Connections(1), 3);
  const NodeMessage* first = q.StartWrite(9);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->ack(), 9u);
  q.WriteDone();
  q.Push(NodeMessage(), 12);  // an ack of its own: no body
  const NodeMessage* second = q.StartWrite(10);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->ack(), 12u);
  EXPECT_EQ(second->body_case(), NodeMessage::BODY_NOT_SET);
  q.WriteDone();
}

TEST(UplinkQueue, OrderedEntriesKeepTheirOrder) {
  UplinkQueue q(100, 1 << 20);
  q.Push(Count("a", 1), 0);
  ASSERT_NE(q.StartWrite(), nullptr);
  // The control plane applies presence_left, then signed_in, then signed_out: a sign-in after a
  // sign-out, or a leave after a sign-in, needs a new message.
  EXPECT_EQ(q.Push(Left("1.1"), 0), 2u);
  EXPECT_EQ(q.Push(Left("1.2"), 0), 2u);
  EXPECT_EQ(q.Push(SignedIn("1.3"), 0), 2u);
  EXPECT_EQ(q.Push(SignedOut("1.3"), 0), 2u);
  EXPECT_EQ(q.Push(SignedIn("1.4"), 0), 3u);
  EXPECT_EQ(q.Push(Left("1.5"), 0), 4u);
  EXPECT_EQ(q.Push(Count("a", 2), 0), 4u);  // absolute counts join any delta
  EXPECT_EQ(q.messages(), 4u);
}

TEST(UplinkQueue, OtherMessagesCloseTheOpenDelta) {
  UplinkQueue q(100, 1 << 20);
  q.Push(Count("a", 1), 0);
  ASSERT_NE(q.StartWrite(), nullptr);
  EXPECT_EQ(q.Push(Count("a", 2), 0), 2u);
  // A subscribe request after the count must reach the control plane after it; a later count
  // must not jump ahead of the request by merging into #2.
  EXPECT_EQ(q.Push(Subscribe(), 0), 3u);
  EXPECT_EQ(q.Push(Count("a", 3), 0), 4u);
}

TEST(UplinkQueue, NothingMergesIntoTheMessageInFlight) {
  UplinkQueue q(100, 1 << 20);
  q.Push(Count("a", 1), 0);
  q.Push(Subscribe(), 0);
  EXPECT_EQ(q.Push(Count("a", 2), 0), 3u);
  ASSERT_EQ(q.StartWrite()->seq(), 1u);
  q.WriteDone();
  ASSERT_EQ(q.StartWrite()->seq(), 2u);
  q.WriteDone();
  const NodeMessage* third = q.StartWrite();
  ASSERT_EQ(third->seq(), 3u);
  // #3 is in flight now: a new change goes into #4.
  EXPECT_EQ(q.Push(Count("a", 3), 0), 4u);
  EXPECT_EQ(third->delta().channels(0).subscriptions(), 2u);
}

TEST(UplinkQueue, BoundedByCountBytesAndDeltaSize) {
  UplinkQueue by_count(2, 1 << 20);
  EXPECT_NE(by_count.Push(Subscribe(), 0), 0u);
  EXPECT_NE(by_count.Push(Subscribe(), 0), 0u);
  EXPECT_EQ(by_count.Push(Subscribe(), 0), 0u);
  EXPECT_EQ(by_count.messages(), 2u);

  UplinkQueue by_bytes(100, 64);
  NodeMessage big;
  big.mutable_client_event()->set_data_json(std::string(100, 'x'));
  EXPECT_EQ(by_bytes.Push(big, 0), 0u);
  EXPECT_EQ(by_bytes.bytes(), 0u);

  // A merged delta stops growing at kMaxDeltaBytes; the next change opens a new one.
  UplinkQueue q(1000000, 1 << 30);
  q.Push(Count("first", 1), 0);
  ASSERT_NE(q.StartWrite(), nullptr);
  uint64_t last = 0;
  for (int i = 0; i < 5000; ++i) last = q.Push(Count("channel-" + std::to_string(i), 1), 0);
  EXPECT_GT(last, 2u);
  EXPECT_LT(q.messages(), 20u);
  size_t total = q.bytes();
  q.WriteDone();
  while (const NodeMessage* m = q.StartWrite()) {
    EXPECT_LE(m->ByteSizeLong(), UplinkQueue::kMaxDeltaBytes + 1024);
    q.WriteDone();
  }
  EXPECT_GT(total, 0u);
  EXPECT_EQ(q.bytes(), 0u);
}

}  // namespace
}  // namespace relay::dataplane
