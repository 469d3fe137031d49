#include "controlplane/grpc_metrics.h"

#include <grpcpp/support/server_interceptor.h>

namespace relay::controlplane {

namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcMetrics* metrics, const char* method)
      : metrics_(metrics), method_(method != nullptr ? method : "") {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Record(method_, static_cast<int>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  GrpcMetrics* metrics_;
  std::string method_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Not on the node link's stream: an interceptor runs on every message of a stream, and
    // that stream carries every publish to the data planes (attaches have their own counters).
    if (info->type() == grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING) return nullptr;
    return new MetricsInterceptor(metrics_, info->method());
  }

 private:
  GrpcMetrics* metrics_;
};

}  // namespace

const char* GrpcCodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(std::size(kNames))) return "UNKNOWN";
  return kNames[code];
}

void GrpcMetrics::Record(const std::string& method, int code) {
  absl::MutexLock lock(&mu_);
  std::string name = method;
  if (!known_.contains(name)) {
    if (methods_ >= kMaxMethods) {
      name = "other";
    } else {
      known_.emplace(name, true);
      ++methods_;
    }
  }
  ++counts_[{std::move(name), code}];
}

void GrpcMetrics::Write(common::MetricsWriter& w) const {
  w.Family("relay_grpc_requests_total", "counter",
           "gRPC calls the control plane finished, by full method name and status code.");
  absl::MutexLock lock(&mu_);
  for (const auto& [key, n] : counts_) {
    w.Sample("relay_grpc_requests_total",
             {{"method", key.first}, {"code", GrpcCodeName(key.second)}}, static_cast<double>(n));
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcMetrics::Factory(
    GrpcMetrics* metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

}  // namespace relay::controlplane
