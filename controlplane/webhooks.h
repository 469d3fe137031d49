// File: webhooks.h
// Webhooks: every Pusher event type, decided once by the control plane, filtered per endpoint,
// persisted in an outbox (<data-dir>/webhooks.db) and delivered at least once, in order per
// endpoint (hence per channel), batched, signed (X-Pusher-Key, X-Pusher-Signature), retried
// with exponential backoff and jitter. Each endpoint has at most one request in flight, so a
// slow or dead endpoint delays nothing but itself. See docs/webhooks.md.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/webhook_targets.h"
#include "transport/http_client.h"
#include "relay/v1/admin.pb.h"
#include "relay/v1/types.pb.h"

struct sqlite3;

namespace relay::controlplane {

class AppStore;

// Result of one HTTP POST.
using PostResult = transport::HttpPostResult;

// Sends one HTTP POST (blocking, bounded by `timeout`): GuardedHttpPost (webhook_sender.h) in
// the binaries, a recorder in tests.
using HttpPost = std::function<PostResult(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body, std::chrono::milliseconds timeout)>;

struct WebhookOptions {
  std::chrono::milliseconds request_timeout{5000};
  size_t max_outbox_per_endpoint = 100000;  // beyond it the oldest events are dropped
  // Refuses link-local and self-targeting URLs at Add (see webhook_targets.h); null = no check.
  // The delivery-time check after DNS resolution lives in the HttpPost the binaries pass.
  std::shared_ptr<const WebhookTargets> targets;
};

// One webhook event, before it is matched to endpoints.
struct WebhookEvent {
  std::string name;     // channel_occupied, member_added, ...
  std::string channel;
  std::string user_id;  // member_added/removed, client_event on presence
  std::string json;     // the complete event object
};

class Webhooks {
 public:
  Webhooks(std::string data_dir, AppStore& apps, HttpPost post, WebhookOptions options = {});
  ~Webhooks();

  // Opens the store and loads endpoints and undelivered events.
  absl::Status Open();
  void Start();
  void Stop();

  absl::StatusOr<relay::v1::Webhook> Add(const std::string& app_id, relay::v1::Webhook hook);
  std::vector<relay::v1::Webhook> List(const std::string& app_id) const;
  absl::Status Remove(const std::string& webhook_id);
  std::vector<relay::v1::TestWebhookResult> Test(const std::string& app_id);
  // Removes every endpoint of a deleted app.
  void RemoveApp(const std::string& app_id);

  // Queues `event` for every matching endpoint of the app.
  void Emit(const std::string& app_id, const WebhookEvent& event);
  // True when some endpoint of the app wants events of this type (to skip building them).
  bool Wants(const std::string& app_id, const std::string& event_name) const;

  // Builders for the event objects Pusher sends.
  static WebhookEvent ChannelEvent(const std::string& name, const std::string& channel);
  static WebhookEvent MemberEvent(const std::string& name, const std::string& channel,
                                  const std::string& user_id);
  static WebhookEvent ClientEvent(const std::string& channel, const std::string& event,
                                  const std::string& data_json, const std::string& socket_id,
                                  const std::string& user_id);
  static WebhookEvent SubscriptionCountEvent(const std::string& channel, uint32_t count);

 private:
  struct Entry {
    int64_t row = 0;
    std::string name, channel, user_id, json;
    int64_t created_ms = 0;
    int64_t not_before_ms = 0;  // delayed events (vacated, member_removed)
  };
  struct Endpoint {
    relay::v1::Webhook hook;
    std::deque<Entry> queue;
    bool in_flight = false;
    int attempts = 0;
    int64_t next_attempt_ms = 0;
    int64_t first_failure_ms = 0;
  };

  bool Matches(const relay::v1::Webhook& hook, const WebhookEvent& e) const;
  void DispatchLoop();
  void Deliver(const std::string& endpoint_id, std::vector<Entry> batch);
  std::string Body(const std::vector<Entry>& batch) const;
  void DeleteRows(const std::vector<int64_t>& rows) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string data_dir_;
  AppStore& apps_;
  HttpPost post_;
  WebhookOptions options_;

  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace relay::controlplane
