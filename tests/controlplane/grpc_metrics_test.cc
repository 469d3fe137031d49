#include "controlplane/grpc_metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace relay::controlplane {
namespace {

TEST(GrpcMetricsTest, CountsByMethodAndCodeName) {
  GrpcMetrics m;
  m.Record("/relay.v1.Admin/GetStats", 0);
  m.Record("/relay.v1.Admin/GetStats", 0);
  m.Record("/relay.v1.Admin/GetApp", 5);
  common::MetricsWriter w;
  m.Write(w);
  std::string text = w.text();
  EXPECT_NE(
      text.find("relay_grpc_requests_total{method=\"/relay.v1.Admin/GetStats\",code=\"OK\"} 2\n"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          "relay_grpc_requests_total{method=\"/relay.v1.Admin/GetApp\",code=\"NOT_FOUND\"} 1\n"),
      std::string::npos)
      << text;
}

TEST(GrpcMetricsTest, MethodNamesAreBounded) {
  GrpcMetrics m;
  for (size_t i = 0; i < GrpcMetrics::kMaxMethods + 10; ++i)
    m.Record("/x/M" + std::to_string(i), 12);
  m.Record("/x/M0", 12);  // a name seen before the bound keeps its own series
  common::MetricsWriter w;
  m.Write(w);
  std::string text = w.text();
  EXPECT_NE(text.find("method=\"other\",code=\"UNIMPLEMENTED\"} 10\n"), std::string::npos) << text;
  EXPECT_NE(text.find("method=\"/x/M0\",code=\"UNIMPLEMENTED\"} 2\n"), std::string::npos) << text;
  size_t series = 0;
  for (size_t p = text.find("relay_grpc_requests_total{"); p != std::string::npos;
       p = text.find("relay_grpc_requests_total{", p + 1)) {
    ++series;
  }
  EXPECT_EQ(series, GrpcMetrics::kMaxMethods + 1);
}

TEST(GrpcMetricsTest, CodeNames) {
  EXPECT_STREQ(GrpcCodeName(16), "UNAUTHENTICATED");
  EXPECT_STREQ(GrpcCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_STREQ(GrpcCodeName(99), "UNKNOWN");
}

}  // namespace
}  // namespace relay::controlplane
