// File: metrics.h
// Prometheus text exposition (format 0.0.4) and the counting primitives the planes use for it.
// Counting is split from writing: hot paths bump single-writer counters they own (a shard's
// thread, say) with relaxed atomics (a load and a store, no locked instruction), and a scrape
// sums them on its own thread and renders them through MetricsWriter.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relay::common {

// A counter or gauge with exactly one writer thread; any thread may read it. Add() is a relaxed
// load plus store, so it costs what a plain increment costs and a concurrent reader sees a
// recent value, never a torn one.
class OwnedCounter {
 public:
  void Add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Sub(uint64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Upper bounds (seconds) of the latency histograms: 100 us to 10 s.
inline constexpr std::array<double, 16> kLatencyBucketsSeconds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

// A histogram's figures as a scrape sees them: `counts[i]` observations fell in bucket i (not
// cumulative; the last entry counts those above every bound).
struct HistogramData {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // bounds.size() + 1
  double sum = 0;
  uint64_t count = 0;
  void Merge(const HistogramData& other);
};

// A latency histogram with one writer thread (see OwnedCounter); the sum is kept in
// microseconds so it stays an integer.
class OwnedLatencyHistogram {
 public:
  void Observe(int64_t micros);
  // Adds this histogram's figures to `out` (sized on first use).
  void AddTo(HistogramData& out) const;

 private:
  std::array<OwnedCounter, kLatencyBucketsSeconds.size() + 1> buckets_;
  OwnedCounter sum_us_;
  OwnedCounter count_;
};

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Renders metric families. Family() selects a family (declaring its HELP and TYPE on first use)
// and the samples that follow belong to it; selecting a family again appends to it, so two
// planes in one process may both add to a family and the output still has it once.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  MetricsWriter(const MetricsWriter&) = delete;  // out_ points into this object
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // `type`: "counter", "gauge" or "histogram".
  MetricsWriter& Family(std::string_view name, std::string_view type, std::string_view help);
  MetricsWriter& Sample(std::string_view name, const MetricLabels& labels, double value);
  MetricsWriter& Sample(std::string_view name, double value) { return Sample(name, {}, value); }
  // The _bucket (cumulative, ending with le="+Inf"), _sum and _count samples of `name`.
  MetricsWriter& Histogram(std::string_view name, const MetricLabels& labels,
                           const HistogramData& data);
  // One-sample families.
  MetricsWriter& Counter(std::string_view name, std::string_view help, double value);
  MetricsWriter& Gauge(std::string_view name, std::string_view help, double value);

  // The exposition: every family in the order first declared.
  std::string text() const;
  std::string Take() { return text(); }

  // Label values escape backslash, double quote and newline; HELP text backslash and newline.
  static std::string EscapeLabelValue(std::string_view v);
  static std::string EscapeHelp(std::string_view v);
  // Shortest text that reads back as `v` ("+Inf", "-Inf", "NaN" for the special values).
  static std::string FormatValue(double v);

 private:
  void Labels(const MetricLabels& labels, const std::pair<std::string, std::string>* extra);
  struct FamilyText {
    std::string name;
    std::string header;  // HELP and TYPE
    std::string samples;
  };
  std::deque<FamilyText> families_;  // a deque: out_ points into it
  // Samples go here (the current family's, or a scratch string before any Family()).
  std::string* out_ = &loose_;
  std::string loose_;
};

// The content type of the text format.
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace relay::common
