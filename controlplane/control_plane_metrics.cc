// ControlPlane::WriteMetrics: the control plane's figures for /metrics, read from the counters
// GetStats and the webhook stats already keep.
#include "controlplane/control_plane.h"

namespace relay::controlplane {

void ControlPlane::WriteMetrics(common::MetricsWriter& w) const {
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  w.Gauge("relay_nodes_attached", "Data planes attached to this control plane now.",
          d(hub_ ? hub_->NodeIds().size() : 0));
  w.Counter("relay_node_attaches_total",
            "Data plane attaches accepted by this control plane (first attaches included).",
            d(node_attaches_.load(std::memory_order_relaxed)));
  w.Counter("relay_node_reattaches_total",
            "Attaches of a data plane that had attached to this control plane before.",
            d(node_reattaches_.load(std::memory_order_relaxed)));
  if (hub_) {
    const NodeHubCounters& c = hub_->counters();
    w.Family("relay_node_link_refused_total", "counter",
             "Node link traffic refused, by reason (auth: no valid node credential; invalid: "
             "stream ended for breaking the link's rules; takeover: node id held by another "
             "credential).");
    w.Sample("relay_node_link_refused_total", {{"reason", "auth"}}, d(c.auth_failures.load()));
    w.Sample("relay_node_link_refused_total", {{"reason", "invalid"}},
             d(c.invalid_messages.load()));
    w.Sample("relay_node_link_refused_total", {{"reason", "takeover"}},
             d(c.takeovers_refused.load()));
    const AckTracker& acks = hub_->acks();
    w.Gauge("relay_publish_ack_waiting",
            "Event-sending requests waiting for the data planes to confirm their events now.",
            d(acks.waiting()));
    w.Family("relay_publish_ack_wait_seconds", "histogram",
             "Time from an event-sending request's start to the last data plane's ack, for "
             "requests answered 2xx after waiting for acks.");
    w.Histogram("relay_publish_ack_wait_seconds", {}, acks.WaitTimes());
    w.Family("relay_publishes_unacked_total", "counter",
             "Event-sending requests refused with 503 for want of the data planes' acks, by "
             "reason (stream_ended: a target node's stream ended before its ack, the event may "
             "have reached some nodes; timeout: no ack within --ack-timeout-ms, likewise; "
             "too_many_waiting: --max-ack-waits requests were waiting already, nothing sent).");
    w.Sample("relay_publishes_unacked_total", {{"reason", "stream_ended"}},
             d(acks.refused(AckRefusal::kStreamEnded)));
    w.Sample("relay_publishes_unacked_total", {{"reason", "timeout"}},
             d(acks.refused(AckRefusal::kTimeout)));
    w.Sample("relay_publishes_unacked_total", {{"reason", "too_many_waiting"}},
             d(acks.refused(AckRefusal::kTooManyWaiting)));
  }
  if (api_) {
    const ApiCounters& c = api_->counters();
    w.Counter("relay_api_events_total", "Events accepted by the HTTP and gRPC APIs.",
              d(c.events.load()));
    w.Counter("relay_api_errors_total", "HTTP API and gRPC requests answered with an error.",
              d(c.errors.load()));
    w.Counter("relay_publish_commands_total",
              "Publish commands sent to data planes (one per interested node and event).",
              d(c.publish_commands.load()));
    w.Family("relay_rate_limited_total", "counter", "Requests refused by a rate limit, by limit.");
    w.Sample("relay_rate_limited_total", {{"limit", "api_per_address"}},
             d(c.ip_rate_limited.load()));
    w.Sample("relay_rate_limited_total", {{"limit", "app_events_per_second"}},
             d(c.app_rate_limited.load()));
    w.Family("relay_quota_refused_total", "counter", "Requests refused by an app quota, by quota.");
    w.Sample("relay_quota_refused_total", {{"quota", "daily_messages"}},
             d(c.daily_quota_refused.load()));
  }
  if (replica_) {
    w.Gauge("relay_controlplane_leader",
            "1 while this control plane replica leads (and may act), 0 while it follows "
            "(docs/scaling.md).",
            d(replica_->acting() ? 1 : 0));
    w.Family("relay_controlplane_elections_won_total", "counter",
             "Times this replica was elected leader and took over.");
    w.Sample("relay_controlplane_elections_won_total", {}, d(replica_->elections_won()));
    w.Family("relay_controlplane_leader_checks_total", "counter",
             "Times this follower was asked to check whether the leader's process is gone (a data "
             "plane had left the leader's stream).");
    w.Sample("relay_controlplane_leader_checks_total", {}, d(replica_->leader_checks()));
    w.Family("relay_controlplane_dead_leaders_revoked_total", "counter",
             "Leases of leaders whose process was gone (their port refused connections) that this "
             "replica ended, so that a replica took over before the lease ran out.");
    w.Sample("relay_controlplane_dead_leaders_revoked_total", {}, d(replica_->leaders_revoked()));
  }
  if (gate_) {
    w.Gauge("relay_nodes_awaited",
            "Data planes of the node registry this control plane waits for after a restart "
            "(publishes are refused with 503 while > 0).",
            d(gate_->awaiting()));
    w.Gauge("relay_nodes_detached",
            "Data planes whose stream broke and that are not back yet nor declared gone (publishes "
            "to what they serve are refused with 503).",
            d(gate_->detached()));
    w.Family("relay_publishes_refused_total", "counter",
             "Event-sending requests (publish, batch, send-to-user, terminate) refused with 503 "
             "because the control plane could not route them, by reason (reattaching: data "
             "planes awaited after a restart; node_detached: a node that serves the target is "
             "re-attaching; node_backlog: a target node's outbox is over half full).");
    w.Sample("relay_publishes_refused_total", {{"reason", "reattaching"}},
             d(gate_->refused(GateRefusal::kReattaching)));
    w.Sample("relay_publishes_refused_total", {{"reason", "node_detached"}},
             d(gate_->refused(GateRefusal::kNodeDetached)));
    w.Sample("relay_publishes_refused_total", {{"reason", "node_backlog"}},
             d(gate_->refused(GateRefusal::kNodeBacklog)));
  }
  w.Counter("relay_client_events_refused_total",
            "Client events a data plane relayed that the control plane refused (app settings).",
            d(client_events_refused_.load(std::memory_order_relaxed)));
  if (watch_) {
    w.Gauge("relay_channel_watchers", "WatchChannelEvents streams open now.", d(watch_->open()));
    w.Counter("relay_channel_watch_events_total",
              "Events handed to WatchChannelEvents streams (one per event and watcher).",
              d(watch_->streamed()));
    w.Counter("relay_channel_watchers_cut_total",
              "WatchChannelEvents streams cut because they fell behind (slow consumers).",
              d(watch_->cut()));
  }
  if (lifecycle_) {
    LifecycleLog::Stats l = lifecycle_->stats();
    w.Gauge("relay_lifecycle_log_events",
            "Lifecycle events kept in the log (webhooks.db, every app) for WatchLifecycleEvents.",
            d(l.events));
    w.Counter("relay_lifecycle_events_pruned_total",
              "Lifecycle events pruned from the log (retention or per-app cap).", d(l.pruned));
    w.Counter("relay_lifecycle_events_dropped_total",
              "Lifecycle events not recorded because the writer was too far behind (or a write "
              "failed).",
              d(l.dropped));
    w.Gauge("relay_lifecycle_watchers", "WatchLifecycleEvents streams open now.", d(l.watchers));
    w.Counter("relay_lifecycle_watch_events_total",
              "Events handed to WatchLifecycleEvents streams (one per event and watcher).",
              d(l.streamed));
    w.Counter("relay_lifecycle_watchers_cut_total",
              "WatchLifecycleEvents streams cut because they fell behind (they resume with their "
              "cursor).",
              d(l.cut));
  }
  if (store_) w.Gauge("relay_apps", "Apps in the store.", d(store_->List().size()));
  Webhooks::Totals t;
  if (webhooks_) t = webhooks_->totals();
  w.Gauge("relay_webhook_outbox_events", "Webhook events waiting in the outboxes.", d(t.outbox));
  w.Counter("relay_webhook_events_delivered_total",
            "Webhook events delivered (acknowledged with a 2xx).", d(t.delivered));
  w.Counter("relay_webhook_failed_attempts_total",
            "Webhook delivery attempts that failed and will be retried (non-2xx, timeout, "
            "connection error).",
            d(t.failed));
  w.Family("relay_webhook_events_dropped_total", "counter",
           "Webhook events given up, by reason (overflow: outbox full; expired: retry period "
           "over).");
  w.Sample("relay_webhook_events_dropped_total", {{"reason", "overflow"}}, d(t.dropped_overflow));
  w.Sample("relay_webhook_events_dropped_total", {{"reason", "expired"}}, d(t.dropped_expired));
  w.Counter("relay_webhook_store_failures_total",
            "Webhook outbox commits the store (etcd) did not take; retried in order.",
            d(t.store_failures));
  w.Counter("relay_webhook_fenced_writes_total",
            "Webhook writes (outbox, endpoint changes) refused by the leader fence: this control "
            "plane was no longer the leader.",
            d(t.fenced_writes));
  grpc_metrics_.Write(w);
}

}  // namespace relay::controlplane
