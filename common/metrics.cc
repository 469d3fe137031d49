#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace relay::common {

void HistogramData::Merge(const HistogramData& other) {
  if (bounds.empty()) {
    bounds = other.bounds;
    counts.assign(other.counts.size(), 0);
  }
  for (size_t i = 0; i < counts.size() && i < other.counts.size(); ++i)
    counts[i] += other.counts[i];
  sum += other.sum;
  count += other.count;
}

void OwnedLatencyHistogram::Observe(int64_t micros) {
  if (micros < 0) micros = 0;  // clocks of two processes: never a negative latency
  double seconds = static_cast<double>(micros) / 1e6;
  size_t i = 0;
  while (i < kLatencyBucketsSeconds.size() && seconds > kLatencyBucketsSeconds[i]) ++i;
  buckets_[i].Add();
  sum_us_.Add(static_cast<uint64_t>(micros));
  count_.Add();
}

void OwnedLatencyHistogram::AddTo(HistogramData& out) const {
  if (out.bounds.empty()) {
    out.bounds.assign(kLatencyBucketsSeconds.begin(), kLatencyBucketsSeconds.end());
    out.counts.assign(buckets_.size(), 0);
  }
  // Each figure is monotonic (relaxed loads of single-writer counters); the writer clamps the
  // cumulative buckets to the count read here.
  for (size_t i = 0; i < buckets_.size() && i < out.counts.size(); ++i) {
    out.counts[i] += buckets_[i].Get();
  }
  out.sum += static_cast<double>(sum_us_.Get()) / 1e6;
  out.count += count_.Get();
}

std::string MetricsWriter::EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string MetricsWriter::EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string MetricsWriter::FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Plain decimals in the usual range ("0.0001", not "1e-04": bucket bounds read as written).
  double a = std::fabs(v);
  bool fixed = a == 0 || (a >= 1e-6 && a < 1e15);
  auto [end, ec] = fixed ? std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

MetricsWriter& MetricsWriter::Family(std::string_view name, std::string_view type,
                                     std::string_view help) {
  for (auto& f : families_) {
    if (f.name == name) {
      out_ = &f.samples;
      return *this;
    }
  }
  FamilyText f;
  f.name = std::string(name);
  f.header.append("# HELP ").append(name).append(" ").append(EscapeHelp(help)).append("\n");
  f.header.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  families_.push_back(std::move(f));
  out_ = &families_.back().samples;
  return *this;
}

std::string MetricsWriter::text() const {
  std::string out = loose_;
  for (const auto& f : families_) out.append(f.header).append(f.samples);
  return out;
}

void MetricsWriter::Labels(const MetricLabels& labels,
                           const std::pair<std::string, std::string>* extra) {
  if (labels.empty() && extra == nullptr) return;
  *out_ += '{';
  bool first = true;
  auto one = [&](const std::pair<std::string, std::string>& l) {
    if (!first) *out_ += ',';
    first = false;
    out_->append(l.first).append("=\"").append(EscapeLabelValue(l.second)).append("\"");
  };
  for (const auto& l : labels) one(l);
  if (extra != nullptr) one(*extra);
  *out_ += '}';
}

MetricsWriter& MetricsWriter::Sample(std::string_view name, const MetricLabels& labels,
                                     double value) {
  out_->append(name);
  Labels(labels, nullptr);
  out_->append(" ").append(FormatValue(value)).append("\n");
  return *this;
}

MetricsWriter& MetricsWriter::Histogram(std::string_view name, const MetricLabels& labels,
                                        const HistogramData& data) {
  std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < data.bounds.size(); ++i) {
    cumulative += i < data.counts.size() ? data.counts[i] : 0;
    std::pair<std::string, std::string> le{"le", FormatValue(data.bounds[i])};
    out_->append(bucket);
    Labels(labels, &le);
    // Never above +Inf (== _count): a writer racing the scrape may have bumped a bucket first.
    out_->append(" ").append(std::to_string(std::min(cumulative, data.count))).append("\n");
  }
  // +Inf equals _count by definition, even if a racing writer bumped a bucket in between.
  std::pair<std::string, std::string> inf{"le", "+Inf"};
  out_->append(bucket);
  Labels(labels, &inf);
  out_->append(" ").append(std::to_string(data.count)).append("\n");
  Sample(std::string(name) + "_sum", labels, data.sum);
  Sample(std::string(name) + "_count", labels, static_cast<double>(data.count));
  return *this;
}

MetricsWriter& MetricsWriter::Counter(std::string_view name, std::string_view help, double value) {
  return Family(name, "counter", help).Sample(name, value);
}

MetricsWriter& MetricsWriter::Gauge(std::string_view name, std::string_view help, double value) {
  return Family(name, "gauge", help).Sample(name, value);
}

}  // namespace relay::common
