// DataPlane::WriteMetrics: the node's figures for /metrics, summed over the shards at scrape time
// (the shards count on their own threads, see shard_metrics.h).
#include <algorithm>

#include "dataplane/data_plane.h"

namespace relay::dataplane {

namespace {

using common::MetricLabels;
using common::MetricsWriter;

// The top `max` apps by connections keep their own label; the rest are summed as "_other".
MetricLabels::value_type AppLabel(const std::string& app) { return {"app", app}; }

}  // namespace

uint64_t DataPlane::slow_consumers_cut() const {
  uint64_t n = 0;
  for (const auto& shard : shards_) n += shard->metrics().slow_consumers_cut.Get();
  return n;
}

void DataPlane::WriteMetrics(MetricsWriter& w) const {
  uint64_t opened = 0, in = 0, in_bytes = 0, out = 0, out_bytes = 0, client_events = 0, cut = 0,
           subs = 0, queue = 0, sub_limited = 0, event_limited = 0;
  std::array<std::array<uint64_t, kCloseCodeSlots>, static_cast<size_t>(CloseReason::kCount)>
      closed{};
  std::array<uint64_t, kCloseCodeSlots> refused{};
  common::HistogramData latency;
  for (const auto& shard : shards_) {
    const ShardMetrics& m = shard->metrics();
    opened += m.connections_opened.Get();
    in += m.messages_in.Get();
    in_bytes += m.bytes_in.Get();
    out += m.messages_out.Get();
    out_bytes += m.bytes_out.Get();
    client_events += m.client_events.Get();
    cut += m.slow_consumers_cut.Get();
    subs += m.subscriptions.Get();
    queue += m.queue_bytes.Get();
    sub_limited += m.subscribe_rate_limited.Get();
    event_limited += m.client_event_rate_limited.Get();
    for (size_t r = 0; r < closed.size(); ++r) {
      for (size_t c = 0; c < kCloseCodeSlots; ++c) closed[r][c] += m.closed[r][c].Get();
    }
    for (size_t c = 0; c < kCloseCodeSlots; ++c) refused[c] += m.refused[c].Get();
    m.publish_latency.AddTo(latency);
  }
  if (latency.bounds.empty()) common::OwnedLatencyHistogram().AddTo(latency);  // no shard yet

  w.Gauge("relay_connections", "WebSocket connections open on this data plane.",
          static_cast<double>(counters_.connections.load(std::memory_order_relaxed)));
  {
    auto apps = state_.AppConnectionCounts();
    std::sort(apps.begin(), apps.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    w.Family("relay_app_connections", "gauge",
             "WebSocket connections open on this data plane per app (the 20 apps with the most, "
             "the rest as app=\"_other\").");
    uint64_t other = 0;
    for (size_t i = 0; i < apps.size(); ++i) {
      if (i < kMaxAppLabels) {
        w.Sample("relay_app_connections", {AppLabel(apps[i].first)},
                 static_cast<double>(apps[i].second));
      } else {
        other += apps[i].second;
      }
    }
    if (apps.size() > kMaxAppLabels) {
      w.Sample("relay_app_connections", {AppLabel("_other")}, static_cast<double>(other));
    }
  }
  w.Counter("relay_connections_opened_total", "WebSocket connections accepted (registered).",
            static_cast<double>(opened));
  w.Family("relay_connections_closed_total", "counter",
           "WebSocket connections that ended, by reason (client, server, slow_consumer, "
           "violation) and the close code the server sent (none when it sent none).");
  for (size_t r = 0; r < closed.size(); ++r) {
    for (size_t c = 0; c < kCloseCodeSlots; ++c) {
      if (closed[r][c] == 0) continue;
      w.Sample(
          "relay_connections_closed_total",
          {{"reason", CloseReasonName(static_cast<CloseReason>(r))}, {"code", CloseCodeLabel(c)}},
          static_cast<double>(closed[r][c]));
    }
  }
  w.Family("relay_connections_refused_total", "counter",
           "WebSocket upgrades refused before the connection registered, by close code (4001 "
           "unknown app, 4003 disabled, 4004 over quota, 4100 over capacity, 4200 draining, ...).");
  for (size_t c = 0; c < kCloseCodeSlots; ++c) {
    if (refused[c] == 0) continue;
    w.Sample("relay_connections_refused_total", {{"code", CloseCodeLabel(c)}},
             static_cast<double>(refused[c]));
  }
  w.Gauge("relay_subscriptions", "Live channel subscriptions (channel, connection) on this node.",
          static_cast<double>(subs));
  w.Gauge("relay_channels", "Channels with at least one subscriber on this node.",
          static_cast<double>(state_.channels()));
  w.Counter("relay_ws_messages_received_total", "WebSocket messages received from clients.",
            static_cast<double>(in));
  w.Counter("relay_ws_received_bytes_total",
            "Payload bytes of the WebSocket messages received from clients.",
            static_cast<double>(in_bytes));
  w.Counter("relay_ws_messages_sent_total", "WebSocket messages written to clients' sockets.",
            static_cast<double>(out));
  w.Counter("relay_ws_sent_bytes_total",
            "Payload bytes (compressed when permessage-deflate is on) written to clients' sockets.",
            static_cast<double>(out_bytes));
  w.Counter("relay_client_events_total", "Client events (client-*) accepted and relayed.",
            static_cast<double>(client_events));
  w.Counter("relay_slow_consumers_cut_total",
            "Connections closed because their write queue passed its bounds.",
            static_cast<double>(cut));
  w.Gauge("relay_write_queue_bytes", "Bytes waiting in the connections' write queues (summed).",
          static_cast<double>(queue));
  w.Counter("relay_protocol_errors_total",
            "Client requests refused for breaking the protocol or a limit.",
            static_cast<double>(counters_.protocol_errors.load(std::memory_order_relaxed)));
  w.Family("relay_publish_latency_seconds", "histogram",
           "From the control plane accepting a publish (HTTP or gRPC) to its frame queued on "
           "this node's subscribers' sockets, once per publish and shard.");
  w.Histogram("relay_publish_latency_seconds", {}, latency);
  w.Family("relay_rate_limited_total", "counter", "Requests refused by a rate limit, by limit.");
  w.Sample("relay_rate_limited_total", {{"limit", "subscribe"}}, static_cast<double>(sub_limited));
  w.Sample("relay_rate_limited_total", {{"limit", "client_event"}},
           static_cast<double>(event_limited));
  w.Family("relay_quota_refused_total", "counter", "Requests refused by an app quota, by quota.");
  w.Sample("relay_quota_refused_total", {{"quota", "app_connections"}},
           static_cast<double>(refused[CloseCodeIndex(4004)]));
  w.Gauge("relay_node_link_attached",
          "1 while this data plane is attached to its control plane, else 0.",
          state_.attached() ? 1 : 0);
  uint64_t attaches = link_ ? link_->attaches() : 0;
  w.Counter("relay_node_link_attaches_total",
            "Successful attaches to the control plane (the first one included).",
            static_cast<double>(attaches));
  w.Counter("relay_node_link_reattaches_total",
            "Attaches after the first: the node link dropped and came back.",
            static_cast<double>(attaches > 0 ? attaches - 1 : 0));
  w.Gauge("relay_draining", "1 while this data plane drains its clients, else 0.",
          draining_.load() ? 1 : 0);
}

}  // namespace relay::dataplane
