// File: endpoint.h
// Internal to controlplane/etcd: one etcd member's channel and stubs, and the bidi stream
// reactor that Watch and LeaseKeeper run their streams on. Includes the generated stubs, so only
// the library's .cc files include it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace relay::controlplane::etcd {

struct Endpoint {
  std::string address;  // host:port
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

// A client bidi stream whose writes come from the owner's thread one at a time, and whose reads
// go to `on_read` (on gRPC's threads, in order). The call is held open (AddHold) until the read
// side has ended and no write is in flight. The owner keeps a shared_ptr, and must wait for
// done() before it drops it (Cancel() makes that prompt): the owner's is the last reference.
// Every stream carries etcd's `hasleader` metadata (clientv3.WithRequireLeader): a member cut off
// from the quorum ends it, rather than keeping a watch or keep-alive stream open and silent.
template <typename Req, typename Resp>
class BidiStream : public grpc::ClientBidiReactor<Req, Resp> {
 public:
  using StartFn = std::function<void(grpc::ClientContext*, grpc::ClientBidiReactor<Req, Resp>*)>;

  BidiStream(std::function<void(const Resp&)> on_read,
             std::function<void(const grpc::Status&)> on_done)
      : on_read_(std::move(on_read)), on_done_(std::move(on_done)) {}

  void Begin(const StartFn& start, std::shared_ptr<BidiStream> self) {
    self_ = std::move(self);
    context_.AddMetadata("hasleader", "true");
    start(&context_, this);
    this->AddHold();
    this->StartRead(&in_);
    this->StartCall();
  }

  // False when a write is still in flight or the stream has ended.
  bool Write(const Req& req) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return false;
      writing_ = true;
      out_ = req;
    }
    this->StartWrite(&out_);
    return true;
  }

  void Cancel() { context_.TryCancel(); }
  bool finished() const {
    absl::MutexLock lock(&mu_);
    return finished_;
  }
  const absl::Notification& done() const { return done_; }

  void OnWriteDone(bool ok) override {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) finished_ = true;
      release = read_done_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) this->RemoveHold();
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      on_read_(in_);
      this->StartRead(&in_);
      return;
    }
    bool release;
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      read_done_ = true;
      release = !writing_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) this->RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    // The owner holds its reference until done() is notified, so ours is never the last one:
    // it goes first. The stream, its ClientContext and with them perhaps the last reference to
    // the channel are then destroyed on the owner's thread, never on this gRPC callback thread,
    // where gRPC 1.51 would join the thread it runs on to stop its callback threads, and free
    // their completion queue twice (an ASan double free in etcd_test; grpc/grpc#32584).
    self_.reset();
    on_done_(status);
    done_.Notify();  // `this` may be destroyed from here on
  }

 private:
  std::function<void(const Resp&)> on_read_;
  std::function<void(const grpc::Status&)> on_done_;
  std::shared_ptr<BidiStream> self_;
  grpc::ClientContext context_;
  Resp in_;
  Req out_;
  absl::Notification done_;
  mutable absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace relay::controlplane::etcd
