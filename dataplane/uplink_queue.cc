#include "dataplane/uplink_queue.h"

namespace relay::dataplane {

using relay::v1::NodeMessage;
using relay::v1::StateDelta;

unsigned UplinkQueue::OrderedLists(const StateDelta& delta) {
  return (delta.presence_left_size() > 0 ? kPresenceLeft : 0u) |
         (delta.signed_in_size() > 0 ? kSignedIn : 0u) |
         (delta.signed_out_size() > 0 ? kSignedOut : 0u);
}

bool UplinkQueue::CanMerge(const StateDelta& delta, size_t bytes) const {
  if (!open_ || queue_.back().bytes + bytes > kMaxDeltaBytes) return false;
  unsigned incoming = OrderedLists(delta);
  if (incoming == 0) return true;  // absolute counts only
  // The control plane applies the lists in field order, so an entry may join only if the open
  // delta has nothing in a list applied after its own.
  unsigned lowest = incoming & (~incoming + 1);
  return (open_lists_ & ~((lowest << 1) - 1)) == 0;
}

void UplinkQueue::Open(StateDelta& delta) {
  open_ = true;
  open_lists_ = OrderedLists(delta);
  open_channels_.clear();
  for (int i = 0; i < delta.channels_size(); ++i) {
    open_channels_[{delta.channels(i).app_id(), delta.channels(i).channel()}] = i;
  }
}

size_t UplinkQueue::Merge(StateDelta& into, StateDelta& from) {
  // Per added entry: its bytes plus a tag and a length prefix (an estimate that only ever errs
  // high, so the byte bound holds).
  constexpr size_t kFraming = 4;
  size_t added = 0;
  for (auto& c : *from.mutable_channels()) {
    auto key = std::make_pair(c.app_id(), c.channel());
    if (auto it = open_channels_.find(key); it != open_channels_.end()) {
      into.mutable_channels(it->second)->set_subscriptions(c.subscriptions());
      continue;
    }
    added += c.ByteSizeLong() + kFraming;
    open_channels_.emplace(std::move(key), into.channels_size());
    *into.add_channels() = std::move(c);
  }
  auto append = [&added](auto* dst, auto* src) {
    for (auto& e : *src) {
      added += e.ByteSizeLong() + kFraming;
      *dst->Add() = std::move(e);
    }
  };
  append(into.mutable_presence_left(), from.mutable_presence_left());
  append(into.mutable_signed_in(), from.mutable_signed_in());
  append(into.mutable_signed_out(), from.mutable_signed_out());
  for (const auto& [app, n] : from.app_connections()) {
    auto [it, inserted] = into.mutable_app_connections()->insert({app, n});
    if (inserted) {
      added += app.size() + 2 * kFraming + 10;
    } else {
      it->second = n;
    }
  }
  open_lists_ |= OrderedLists(from);
  return added;
}

uint64_t UplinkQueue::Push(NodeMessage msg, uint64_t ack) {
  if (msg.has_delta()) {
    size_t estimate = msg.delta().ByteSizeLong();
    if (CanMerge(msg.delta(), estimate)) {
      if (bytes_ + estimate > max_bytes_) return 0;
      Entry& back = queue_.back();
      size_t added = Merge(*back.msg.mutable_delta(), *msg.mutable_delta());
      back.bytes += added;
      bytes_ += added;
      back.msg.set_ack(ack);
      ++merged_;
      return back.msg.seq();
    }
  }
  msg.set_seq(next_seq_ + 1);
  msg.set_ack(ack);
  size_t bytes = msg.ByteSizeLong();
  if (queue_.size() >= max_messages_ || bytes_ + bytes > max_bytes_) return 0;
  ++next_seq_;
  bytes_ += bytes;
  queue_.push_back(Entry{std::move(msg), bytes});
  open_ = false;
  if (queue_.back().msg.has_delta()) Open(*queue_.back().msg.mutable_delta());
  return next_seq_;
}

const NodeMessage* UplinkQueue::StartWrite(uint64_t ack) {
  if (in_flight_ || queue_.empty()) return nullptr;
  in_flight_ = true;
  if (queue_.size() == 1) open_ = false;  // the open delta itself is now being written
  NodeMessage& msg = queue_.front().msg;
  if (ack > msg.ack()) msg.set_ack(ack);
  return &msg;
}

void UplinkQueue::WriteDone() {
  if (!in_flight_) return;
  in_flight_ = false;
  bytes_ -= queue_.front().bytes;
  queue_.pop_front();
}

}  // namespace relay::dataplane
