// File: grpc_metrics.h
// Counts the control plane's gRPC calls by method and status code for /metrics, through a
// server interceptor (one count when a call sends its status). Unary and server-streaming calls
// only: the node link's bidirectional stream is left alone. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}  // namespace grpc::experimental

namespace relay::controlplane {

class GrpcMetrics {
 public:
  // Distinct method names counted; calls of further names count as method="other" (the
  // registered services have fewer, so only unknown methods a peer invents end up there).
  static constexpr size_t kMaxMethods = 64;

  void Record(const std::string& method, int code);
  void Write(common::MetricsWriter& w) const;
  // An interceptor factory recording into `metrics` (which must outlive the servers).
  static std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Factory(
      GrpcMetrics* metrics);

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> counts_ ABSL_GUARDED_BY(mu_);
  size_t methods_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, bool> known_ ABSL_GUARDED_BY(mu_);
};

// The canonical name of a gRPC status code ("OK", "NOT_FOUND", ...).
const char* GrpcCodeName(int code);

}  // namespace relay::controlplane
