// File: finishing_reactor.h
// A gRPC callback reactor that starts its reads and writes outside its own lock, and may be told
// to finish from any thread meanwhile. gRPC forbids starting a read or write after Finish, so a
// Finish that comes while one is being started waits until that start has returned.
// Thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace relay::controlplane {

// `Reactor`: grpc::ServerBidiReactor<...>, grpc::ServerWriteReactor<...>.
template <typename Reactor>
class FinishingReactor : public Reactor {
 public:
  // Finishes the call once; later calls do nothing. (Finish with a write still outstanding is
  // fine: a peer that does not read must be cut off.)
  void FinishOnce(grpc::Status status) {
    {
      absl::MutexLock lock(&finish_mu_);
      if (finished_) return;
      finished_ = true;
      if (starting_ > 0) {
        deferred_ = std::move(status);
        return;
      }
    }
    this->Finish(status);
  }

 protected:
  bool finished() const {
    absl::MutexLock lock(&finish_mu_);
    return finished_;
  }
  // Before a StartRead or StartWrite: false once the call is finished (then start nothing).
  bool BeginStart() {
    absl::MutexLock lock(&finish_mu_);
    if (finished_) return false;
    ++starting_;
    return true;
  }
  // After that start returned: finishes now when FinishOnce came meanwhile.
  void EndStart() {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&finish_mu_);
      if (--starting_ == 0 && deferred_) {
        finish = std::move(deferred_);
        deferred_.reset();
      }
    }
    if (finish) this->Finish(*finish);
  }

 private:
  mutable absl::Mutex finish_mu_;
  bool finished_ ABSL_GUARDED_BY(finish_mu_) = false;
  int starting_ ABSL_GUARDED_BY(finish_mu_) = 0;  // StartRead/StartWrite calls under way
  std::optional<grpc::Status> deferred_ ABSL_GUARDED_BY(finish_mu_);
};

}  // namespace relay::controlplane
