#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace relay::common {
namespace {

TEST(MetricsWriterTest, EscapesLabelValuesAndHelp) {
  MetricsWriter w;
  w.Family("relay_x_total", "counter", "A \\ backslash\nand a newline");
  w.Sample("relay_x_total", {{"app", "a\"b\\c\nd"}}, 3);
  EXPECT_EQ(w.text(),
            "# HELP relay_x_total A \\\\ backslash\\nand a newline\n"
            "# TYPE relay_x_total counter\n"
            "relay_x_total{app=\"a\\\"b\\\\c\\nd\"} 3\n");
}

TEST(MetricsWriterTest, SeveralLabelsAndNoLabels) {
  MetricsWriter w;
  w.Gauge("relay_g", "g", 1.5);
  w.Sample("relay_g", {{"a", "1"}, {"b", "2"}}, 0);
  EXPECT_EQ(w.text(),
            "# HELP relay_g g\n# TYPE relay_g gauge\nrelay_g 1.5\nrelay_g{a=\"1\",b=\"2\"} 0\n");
}

TEST(MetricsWriterTest, FormatsSpecialAndLargeValues) {
  EXPECT_EQ(MetricsWriter::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(MetricsWriter::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(MetricsWriter::FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(MetricsWriter::FormatValue(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(MetricsWriter::FormatValue(0.0001), "0.0001");
  EXPECT_EQ(MetricsWriter::FormatValue(42), "42");
}

TEST(MetricsWriterTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  HistogramData d;
  d.bounds = {0.1, 1};
  d.counts = {2, 1, 3};  // 2 <= 0.1, 1 in (0.1, 1], 3 above
  d.sum = 12.5;
  d.count = 6;
  MetricsWriter w;
  w.Family("relay_h_seconds", "histogram", "h");
  w.Histogram("relay_h_seconds", {{"app", "x"}}, d);
  EXPECT_EQ(w.text(),
            "# HELP relay_h_seconds h\n# TYPE relay_h_seconds histogram\n"
            "relay_h_seconds_bucket{app=\"x\",le=\"0.1\"} 2\n"
            "relay_h_seconds_bucket{app=\"x\",le=\"1\"} 3\n"
            "relay_h_seconds_bucket{app=\"x\",le=\"+Inf\"} 6\n"
            "relay_h_seconds_sum{app=\"x\"} 12.5\n"
            "relay_h_seconds_count{app=\"x\"} 6\n");
}

TEST(MetricsWriterTest, HistogramBucketNeverExceedsCount) {
  HistogramData d;
  d.bounds = {1};
  d.counts = {5, 0};
  d.count = 4;  // a racing writer bumped the bucket after count was read
  MetricsWriter w;
  w.Histogram("h", {}, d);
  EXPECT_NE(w.text().find("h_bucket{le=\"1\"} 4\n"), std::string::npos) << w.text();
}

TEST(OwnedLatencyHistogramTest, ObservesIntoTheRightBucketAndClampsNegatives) {
  OwnedLatencyHistogram h;
  h.Observe(50);          // 50 us: first bucket (<= 100 us)
  h.Observe(100);         // exactly the bound: same bucket
  h.Observe(2'000);       // 2 ms: bucket <= 2.5 ms
  h.Observe(-5'000);      // clock skew: counted as 0
  h.Observe(60'000'000);  // 60 s: above every bound
  HistogramData d;
  h.AddTo(d);
  ASSERT_EQ(d.bounds.size(), kLatencyBucketsSeconds.size());
  ASSERT_EQ(d.counts.size(), kLatencyBucketsSeconds.size() + 1);
  EXPECT_EQ(d.counts[0], 3u);
  EXPECT_EQ(d.counts[4], 1u);  // 0.0025
  EXPECT_EQ(d.counts.back(), 1u);
  EXPECT_EQ(d.count, 5u);
  EXPECT_NEAR(d.sum, 60.00215, 1e-9);
  HistogramData merged;
  h.AddTo(merged);
  h.AddTo(merged);  // two shards sum
  EXPECT_EQ(merged.count, 10u);
  EXPECT_EQ(merged.counts[0], 6u);
}

TEST(MetricsWriterTest, AFamilySelectedAgainKeepsOneHeader) {
  MetricsWriter w;
  w.Family("a_total", "counter", "a").Sample("a_total", {{"p", "1"}}, 1);
  w.Family("b", "gauge", "b").Sample("b", 2);
  w.Family("a_total", "counter", "a").Sample("a_total", {{"p", "2"}}, 3);
  EXPECT_EQ(w.text(),
            "# HELP a_total a\n# TYPE a_total counter\na_total{p=\"1\"} 1\na_total{p=\"2\"} 3\n"
            "# HELP b b\n# TYPE b gauge\nb 2\n");
}

TEST(OwnedCounterTest, AddsAndSubtracts) {
  OwnedCounter c;
  c.Add();
  c.Add(10);
  c.Sub(4);
  EXPECT_EQ(c.Get(), 7u);
}

}  // namespace
}  // namespace relay::common
