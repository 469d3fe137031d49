#include "controlplane/grpc_services.h"

#include <grpcpp/grpcpp.h>

#include <functional>

#include "common/crypto.h"
#include "common/log.h"
#include "common/strings.h"
#include "controlplane/admin_ops.h"
#include "controlplane/api.h"
#include "controlplane/app_store.h"
#include "controlplane/channel_watch.h"
#include "controlplane/cluster_state.h"
#include "controlplane/finishing_reactor.h"
#include "controlplane/lifecycle_log.h"
#include "controlplane/node_hub.h"
#include "controlplane/webhooks.h"
#include "relay/v1/admin.grpc.pb.h"
#include "relay/v1/public.grpc.pb.h"

namespace relay::controlplane {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

grpc::Status ToGrpc(const absl::Status& st) {
  if (st.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
}

ServerUnaryReactor* Done(CallbackServerContext* ctx, const absl::Status& st) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(st));
  return reactor;
}

std::string Metadata(const CallbackServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

std::string Bearer(const CallbackServerContext* ctx) {
  std::string auth = Metadata(ctx, "authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (auth.size() > kPrefix.size() && auth.compare(0, kPrefix.size(), kPrefix) == 0) {
    return auth.substr(kPrefix.size());
  }
  return {};
}

// One WatchChannelEvents or WatchLifecycleEvents call: writes its watcher's events one at a time
// (what waits meanwhile is buffered, bounded, by the watcher) and finishes with the status the
// watcher ends with. Lives until OnDone (self_); the watcher's wake callback holds only a weak
// reference. `Watcher`: ChannelWatcher or LifecycleWatcher (Take() -> {event, end}).
template <typename Watcher, typename Proto>
class WatchStream final : public FinishingReactor<grpc::ServerWriteReactor<Proto>> {
 public:
  using Close = std::function<void(const std::shared_ptr<Watcher>&)>;
  explicit WatchStream(Close close) : close_(std::move(close)) {}

  // The headers go out first: a caller that saw them is registered, so every event accepted
  // from then on reaches it.
  void Start(std::shared_ptr<WatchStream> self, std::shared_ptr<Watcher> watcher) {
    this->StartSendInitialMetadata();
    {
      absl::MutexLock lock(&mu_);
      self_ = std::move(self);
      watcher_ = std::move(watcher);
    }
    Pump();
  }

  // Starts the next write, or finishes, when no write is in flight.
  void Pump() {
    typename Watcher::Event event;
    std::optional<absl::Status> end;
    {
      absl::MutexLock lock(&mu_);
      if (watcher_ == nullptr || this->finished() || writing_ != nullptr) return;
      typename Watcher::Next next = watcher_->Take();
      if (next.end) {
        end = std::move(next.end);
      } else if (!next.event || !this->BeginStart()) {
        return;  // nothing waits (the watcher wakes us), or the call is finishing
      } else {
        writing_ = std::move(next.event);
        event = writing_;
      }
    }
    if (end) return this->FinishOnce(ToGrpc(*end));
    this->StartWrite(event.get());
    this->EndStart();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_.reset();
    }
    if (!ok) return this->FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    Pump();
  }

  void OnCancel() override { this->FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    std::shared_ptr<WatchStream> self;
    std::shared_ptr<Watcher> watcher;
    {
      absl::MutexLock lock(&mu_);
      self = std::move(self_);
      watcher = std::move(watcher_);
    }
    if (watcher != nullptr) close_(watcher);
    // `self` may delete this on return.
  }

 private:
  const Close close_;
  absl::Mutex mu_;
  std::shared_ptr<WatchStream> self_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Watcher> watcher_ ABSL_GUARDED_BY(mu_);
  typename Watcher::Event writing_ ABSL_GUARDED_BY(mu_);  // the event being written
};

// A watch call refused before it started: finishes at once with `status`.
template <typename Proto>
class RefusedWatch final : public grpc::ServerWriteReactor<Proto> {
 public:
  explicit RefusedWatch(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class ChannelsService final : public relay::v1::Channels::CallbackService {
 public:
  explicit ChannelsService(Api& api) : api_(api) {}

 private:
  // Resolves the app and checks the caller's credentials for it. A call that carries no
  // credential at all is UNAUTHENTICATED before anything is read (a stranger learns nothing,
  // not even whether an app exists); with credentials the app comes first, as over HTTP:
  // unknown is NOT_FOUND and disabled PERMISSION_DENIED (docs/http-api.md).
  absl::StatusOr<relay::v1::App> Authorize(CallbackServerContext* ctx, const std::string& app) {
    Credentials c{Metadata(ctx, "x-relay-key"), Metadata(ctx, "x-relay-secret"), Bearer(ctx)};
    if (c.key.empty() && c.secret.empty() && c.bearer_token.empty()) {
      return absl::UnauthenticatedError(
          "missing credentials: give key and secret, a bearer token, or an HMAC signature");
    }
    auto resolved = api_.ResolveApp(app);
    if (!resolved.ok()) return resolved.status();
    if (auto st = api_.CheckCredentials(*resolved, c); !st.ok()) return st;
    return resolved;
  }

  template <typename Fn>
  ServerUnaryReactor* Run(CallbackServerContext* ctx, const std::string& app, Fn fn) {
    auto resolved = Authorize(ctx, app);
    absl::Status st = resolved.ok() ? fn(*resolved) : resolved.status();
    if (!st.ok()) api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    return Done(ctx, st);
  }

  // An event-sending call (trigger, batch, send-to-user, terminate): answered OK only once every
  // data plane it queued commands to has acknowledged them (ack_wait.h). Meanwhile no thread
  // waits: the answer is finished by whichever thread settles the wait.
  template <typename Fn>
  ServerUnaryReactor* RunAcked(CallbackServerContext* ctx, const std::string& app, Fn fn) {
    auto* reactor = ctx->DefaultReactor();
    auto resolved = Authorize(ctx, app);
    absl::Status st = resolved.status();
    std::shared_ptr<AckWait> wait;
    if (st.ok()) {
      auto begun = api_.BeginAcks();
      st = begun.status();
      if (st.ok()) {
        wait = std::move(*begun);
        st = fn(*resolved, wait);
      }
    }
    if (st.ok()) {
      auto* counters = &api_.counters();
      auto outcome = wait->Seal([reactor, counters](absl::Status s) {
        if (!s.ok()) counters->errors.fetch_add(1, std::memory_order_relaxed);
        reactor->Finish(ToGrpc(s));
      });
      if (!outcome) return reactor;
      st = *outcome;
    }
    if (!st.ok()) api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    reactor->Finish(ToGrpc(st));
    return reactor;
  }

  template <typename T>
  static absl::Status Assign(absl::StatusOr<T> result, T* out) {
    if (!result.ok()) return result.status();
    *out = std::move(*result);
    return absl::OkStatus();
  }
  // For the Api's answers that carry what HTTP prints beside the proto gRPC answers.
  template <typename R, typename T>
  static absl::Status Assign(absl::StatusOr<R> result, T* out, T R::*proto) {
    if (!result.ok()) return result.status();
    *out = std::move((*result).*proto);
    return absl::OkStatus();
  }

  // gRPC callers are internal services: no per-IP request limit (the app's event rate and daily
  // quota still apply), see docs/http-api.md.
  ServerUnaryReactor* Trigger(CallbackServerContext* ctx, const relay::v1::TriggerRequest* req,
                              relay::v1::TriggerResponse* resp) override {
    return RunAcked(ctx, req->app(), [&](const relay::v1::App& a, const auto& acks) {
      return Assign(api_.Trigger(a, *req, nullptr, acks), resp, &TriggerResult::proto);
    });
  }
  ServerUnaryReactor* TriggerBatch(CallbackServerContext* ctx,
                                   const relay::v1::TriggerBatchRequest* req,
                                   relay::v1::TriggerBatchResponse* resp) override {
    return RunAcked(ctx, req->app(), [&](const relay::v1::App& a, const auto& acks) {
      return Assign(api_.TriggerBatch(a, *req, nullptr, acks), resp, &TriggerBatchResult::proto);
    });
  }
  ServerUnaryReactor* ListChannels(CallbackServerContext* ctx,
                                   const relay::v1::ListChannelsRequest* req,
                                   relay::v1::ListChannelsResponse* resp) override {
    return Run(ctx, req->app(), [&](const relay::v1::App& a) {
      return Assign(api_.ListChannels(a, *req), resp, &ListChannelsResult::proto);
    });
  }
  ServerUnaryReactor* GetChannel(CallbackServerContext* ctx,
                                 const relay::v1::GetChannelRequest* req,
                                 relay::v1::ChannelInfo* resp) override {
    return Run(ctx, req->app(), [&](const relay::v1::App& a) {
      return Assign(api_.GetChannel(a, *req), resp, &ChannelView::info);
    });
  }
  ServerUnaryReactor* ListPresenceUsers(CallbackServerContext* ctx,
                                        const relay::v1::ListPresenceUsersRequest* req,
                                        relay::v1::ListPresenceUsersResponse* resp) override {
    return Run(ctx, req->app(), [&](const relay::v1::App& a) {
      return Assign(api_.ListPresenceUsers(a, *req), resp);
    });
  }
  ServerUnaryReactor* SendToUser(CallbackServerContext* ctx,
                                 const relay::v1::SendToUserRequest* req,
                                 relay::v1::SendToUserResponse*) override {
    return RunAcked(ctx, req->app(), [&](const relay::v1::App& a, const auto& acks) {
      return api_.SendToUser(a, *req, nullptr, acks);
    });
  }
  ServerUnaryReactor* TerminateUserConnections(
      CallbackServerContext* ctx, const relay::v1::TerminateUserConnectionsRequest* req,
      relay::v1::TerminateUserConnectionsResponse*) override {
    return RunAcked(ctx, req->app(), [&](const relay::v1::App& a, const auto& acks) {
      return api_.TerminateUserConnections(a, *req, acks);
    });
  }
  ServerUnaryReactor* AuthorizeChannel(CallbackServerContext* ctx,
                                       const relay::v1::AuthorizeChannelRequest* req,
                                       relay::v1::AuthorizeChannelResponse* resp) override {
    return Run(ctx, req->app(), [&](const relay::v1::App& a) {
      return Assign(api_.AuthorizeChannel(a, *req), resp);
    });
  }
  ServerUnaryReactor* AuthenticateUser(CallbackServerContext* ctx,
                                       const relay::v1::AuthenticateUserRequest* req,
                                       relay::v1::AuthenticateUserResponse* resp) override {
    return Run(ctx, req->app(), [&](const relay::v1::App& a) {
      return Assign(api_.AuthenticateUser(a, *req), resp);
    });
  }
  grpc::ServerWriteReactor<relay::v1::ChannelEvent>* WatchChannelEvents(
      CallbackServerContext* ctx, const relay::v1::WatchChannelEventsRequest* req) override {
    auto app = Authorize(ctx, req->app());
    if (!app.ok()) return Refuse<relay::v1::ChannelEvent>(app.status());
    if (api_.watch() == nullptr) {
      return Refuse<relay::v1::ChannelEvent>(
          absl::UnimplementedError("channel event streams are off"));
    }
    ChannelWatch* watch = api_.watch();
    return StartWatch<ChannelWatcher, relay::v1::ChannelEvent>(
        [watch](const std::shared_ptr<ChannelWatcher>& w) { watch->Close(w); },
        [&](std::function<void()> wake) { return api_.Watch(*app, *req, std::move(wake)); });
  }
  grpc::ServerWriteReactor<relay::v1::LifecycleEvent>* WatchLifecycleEvents(
      CallbackServerContext* ctx, const relay::v1::WatchLifecycleEventsRequest* req) override {
    auto app = Authorize(ctx, req->app());
    if (!app.ok()) return Refuse<relay::v1::LifecycleEvent>(app.status());
    LifecycleLog* log = api_.lifecycle();
    return StartWatch<LifecycleWatcher, relay::v1::LifecycleEvent>(
        [log](const std::shared_ptr<LifecycleWatcher>& w) { log->Close(w); },
        [&](std::function<void()> wake) {
          return api_.WatchLifecycle(*app, *req, std::move(wake));
        });
  }
  // Opens a watcher with `open(wake)` and streams it, or refuses with open's error.
  template <typename Watcher, typename Proto, typename Open>
  grpc::ServerWriteReactor<Proto>* StartWatch(typename WatchStream<Watcher, Proto>::Close close,
                                              Open open) {
    auto stream = std::make_shared<WatchStream<Watcher, Proto>>(std::move(close));
    std::weak_ptr<WatchStream<Watcher, Proto>> weak = stream;
    absl::StatusOr<std::shared_ptr<Watcher>> watcher = open([weak] {
      if (auto s = weak.lock()) s->Pump();
    });
    if (!watcher.ok()) return Refuse<Proto>(watcher.status());
    stream->Start(stream, std::move(*watcher));
    return stream.get();
  }
  template <typename Proto>
  grpc::ServerWriteReactor<Proto>* Refuse(const absl::Status& st) {
    api_.counters().errors.fetch_add(1, std::memory_order_relaxed);
    return new RefusedWatch<Proto>(ToGrpc(st));
  }

  Api& api_;
};

class AdminService final : public relay::v1::Admin::CallbackService {
 public:
  AdminService(AppStore& store, ClusterState& cluster, NodeHub& hub, Api& api, Webhooks* webhooks,
               std::string admin_token)
      : store_(store),
        cluster_(cluster),
        hub_(hub),
        api_(api),
        webhooks_(webhooks),
        token_(std::move(admin_token)),
        token_id_(common::Sha256Hex(token_).substr(0, 12)) {}

 private:
  absl::Status CheckToken(CallbackServerContext* ctx) const {
    return CheckAdminToken(Bearer(ctx), token_);
  }

  template <typename Fn>
  ServerUnaryReactor* Run(CallbackServerContext* ctx, Fn fn) {
    if (auto st = CheckToken(ctx); !st.ok()) return Done(ctx, st);
    return Done(ctx, fn());
  }

  // For the calls that write: `start` hands the write to the store's writer and the reaction
  // finishes when the writer calls back, after the commit (an admin call answers only once its
  // change is durable), so no SQLite work runs on gRPC's threads.
  using Finish = std::function<void(const absl::Status&)>;
  template <typename Start>
  ServerUnaryReactor* RunWrite(CallbackServerContext* ctx, Start start) {
    if (auto st = CheckToken(ctx); !st.ok()) return Done(ctx, st);
    auto* reactor = ctx->DefaultReactor();
    start([reactor](const absl::Status& st) { reactor->Finish(ToGrpc(st)); });
    return reactor;
  }
  // The audit line of one admin change: what, on which app, and which admin credential made
  // it, by its id (the first 12 hex digits of the token's SHA-256: `printf %s TOKEN | sha256sum`)
  // -- never a secret or a token's value. Written at every --log-level: an operator who turns
  // the log down still needs to know who changed what.
  void Audit(std::string_view action, std::string_view app, std::string_view subject = {},
             std::string detail = {}) const {
    common::LogLine(common::LogLevel::kInfo, "audit",
                    common::StrCat("admin ", action, app.empty() ? "" : " app=", app,
                                   subject.empty() ? "" : " ", subject),
                    {{"action", std::string(action)},
                     {"app", std::string(app)},
                     {"subject", std::string(subject)},
                     {"detail", std::move(detail)},
                     {"admin_token_id", token_id_}});
  }
  // The fields an update changes, "limits.max_connections,plan" (names, never values).
  static std::string MaskText(const relay::v1::UpdateAppRequest& req) {
    std::string fields;
    for (const auto& f : req.update_mask())
      common::StrAppend(&fields, fields.empty() ? "" : ",", f);
    return fields;
  }
  // `finish`, after writing the change's audit line when it succeeded.
  static Finish Audited(Finish finish, std::function<void()> audit) {
    return [finish = std::move(finish), audit = std::move(audit)](const absl::Status& st) {
      if (st.ok()) audit();
      finish(st);
    };
  }

  // A callback for the store that copies a result into the response, then finishes.
  template <typename T, typename Resp>
  static AppStore::Done<T> Into(Resp* resp, Finish finish) {
    return [resp, finish = std::move(finish)](absl::StatusOr<T> r) {
      if (r.ok()) *resp = std::move(*r);
      finish(r.status());
    };
  }

  ServerUnaryReactor* CreateNodeToken(CallbackServerContext* ctx,
                                      const relay::v1::CreateNodeTokenRequest* req,
                                      relay::v1::CreateNodeTokenResponse* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.CreateNodeToken(
          req->name(), req->node_id(),
          [this, resp, finish](absl::StatusOr<relay::v1::CreateNodeTokenResponse> t) {
            if (t.ok()) {
              *resp = std::move(*t);
              Audit("node-tokens.create", "", common::StrCat("node_token=", resp->token().id()),
                    common::StrCat("node_id=", resp->token().node_id()));
            }
            finish(t.status());
          });
    });
  }
  ServerUnaryReactor* ListNodeTokens(CallbackServerContext* ctx,
                                     const relay::v1::ListNodeTokensRequest*,
                                     relay::v1::ListNodeTokensResponse* resp) override {
    return Run(ctx, [&] {
      for (auto& t : store_.ListNodeTokens()) *resp->add_tokens() = std::move(t);
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* RevokeNodeToken(CallbackServerContext* ctx,
                                      const relay::v1::RevokeNodeTokenRequest* req,
                                      relay::v1::RevokeNodeTokenResponse*) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.RevokeNodeToken(req->token_id(), [this, req, finish](absl::Status st) {
        if (st.ok()) {
          hub_.DisconnectCredential(req->token_id());
          Audit("node-tokens.revoke", "", common::StrCat("node_token=", req->token_id()));
        }
        finish(st);
      });
    });
  }

  ServerUnaryReactor* ListApps(CallbackServerContext* ctx, const relay::v1::ListAppsRequest*,
                               relay::v1::ListAppsResponse* resp) override {
    return Run(ctx, [&] {
      *resp = controlplane::ListApps(store_);
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* GetApp(CallbackServerContext* ctx, const relay::v1::GetAppRequest* req,
                             relay::v1::App* resp) override {
    return Run(ctx, [&] {
      auto a = store_.Find(req->app());
      if (!a) return absl::NotFoundError(common::StrCat("app '", req->app(), "' not found"));
      *resp = *a;
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* CreateApp(CallbackServerContext* ctx, const relay::v1::CreateAppRequest* req,
                                relay::v1::App* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.Create(*req, Into<relay::v1::App>(resp, Audited(std::move(finish), [this, resp] {
                                                 Audit("apps.create", resp->id());
                                               })));
    });
  }
  ServerUnaryReactor* UpdateApp(CallbackServerContext* ctx, const relay::v1::UpdateAppRequest* req,
                                relay::v1::App* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.Update(*req, Into<relay::v1::App>(resp, Audited(std::move(finish), [this, req, resp] {
                                                 Audit("apps.update", resp->id(), "",
                                                       common::StrCat("fields=", MaskText(*req)));
                                               })));
    });
  }
  ServerUnaryReactor* DeleteApp(CallbackServerContext* ctx, const relay::v1::DeleteAppRequest* req,
                                relay::v1::DeleteAppResponse*) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.Delete(req->app(),
                    Audited(std::move(finish), [this, req] { Audit("apps.delete", req->app()); }));
    });
  }
  ServerUnaryReactor* RotateSecret(CallbackServerContext* ctx,
                                   const relay::v1::RotateSecretRequest* req,
                                   relay::v1::App* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      // Unset = an hour; 0 = the previous secret stops verifying at once.
      uint32_t overlap = req->has_overlap_seconds() ? req->overlap_seconds() : 3600;
      auto done = Into<relay::v1::App>(resp, Audited(std::move(finish), [this, req, resp, overlap] {
                                         if (req->end_overlap()) {
                                           Audit("apps.end-secret-overlap", resp->id());
                                         } else {
                                           Audit("apps.rotate-secret", resp->id(), "",
                                                 common::StrCat("overlap_seconds=", overlap));
                                         }
                                       }));
      if (req->end_overlap()) {
        store_.EndSecretOverlap(req->app(), std::move(done));
      } else {
        store_.RotateSecret(req->app(), overlap, req->new_secret(), std::move(done));
      }
    });
  }
  ServerUnaryReactor* CreateToken(CallbackServerContext* ctx,
                                  const relay::v1::CreateTokenRequest* req,
                                  relay::v1::CreateTokenResponse* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.CreateToken(req->app(), req->name(), req->expires_in_seconds(),
                         Into<relay::v1::CreateTokenResponse>(
                             resp, Audited(std::move(finish), [this, req, resp] {
                               Audit("tokens.create", req->app(),
                                     common::StrCat("token=", resp->token().id()));
                             })));
    });
  }
  ServerUnaryReactor* ListTokens(CallbackServerContext* ctx,
                                 const relay::v1::ListTokensRequest* req,
                                 relay::v1::ListTokensResponse* resp) override {
    return Run(ctx, [&] {
      auto t = store_.ListTokens(req->app());
      if (!t.ok()) return t.status();
      for (auto& tok : *t) *resp->add_tokens() = std::move(tok);
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* RevokeToken(CallbackServerContext* ctx,
                                  const relay::v1::RevokeTokenRequest* req,
                                  relay::v1::RevokeTokenResponse*) override {
    return RunWrite(ctx, [&](Finish finish) {
      store_.RevokeToken(req->token_id(), Audited(std::move(finish), [this, req] {
                           Audit("tokens.revoke", "", common::StrCat("token=", req->token_id()));
                         }));
    });
  }
  ServerUnaryReactor* ListNodes(CallbackServerContext* ctx, const relay::v1::ListNodesRequest*,
                                relay::v1::ListNodesResponse* resp) override {
    return Run(ctx, [&] {
      for (auto& n : hub_.Nodes()) *resp->add_nodes() = std::move(n);
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* DrainNode(CallbackServerContext* ctx, const relay::v1::DrainNodeRequest* req,
                                relay::v1::DrainNodeResponse*) override {
    return Run(ctx, [&] {
      if (!hub_.Drain(req->node_id(), req->window_ms())) {
        return absl::NotFoundError(common::StrCat("node '", req->node_id(), "' is not attached"));
      }
      Audit("nodes.drain", "", common::StrCat("node=", req->node_id()),
            common::StrCat("window_ms=", req->window_ms()));
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* UndrainNode(CallbackServerContext* ctx,
                                  const relay::v1::UndrainNodeRequest* req,
                                  relay::v1::UndrainNodeResponse*) override {
    return Run(ctx, [&] {
      if (!hub_.Undrain(req->node_id())) {
        return absl::NotFoundError(common::StrCat("node '", req->node_id(), "' is not attached"));
      }
      Audit("nodes.undrain", "", common::StrCat("node=", req->node_id()));
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* GetStats(CallbackServerContext* ctx, const relay::v1::GetStatsRequest* req,
                               relay::v1::Stats* resp) override {
    return Run(ctx, [&] {
      auto stats = controlplane::GetStats(store_, cluster_, hub_, api_, *req);
      if (!stats.ok()) return stats.status();
      *resp = std::move(*stats);
      return absl::OkStatus();
    });
  }

  // The app named by id or key, for the webhook calls.
  absl::StatusOr<relay::v1::App> WebhookApp(const std::string& app) {
    if (webhooks_ == nullptr) {
      return absl::FailedPreconditionError("webhooks are not enabled on this control plane");
    }
    auto a = store_.Find(app);
    if (!a) return absl::NotFoundError(common::StrCat("app '", app, "' not found"));
    return *a;
  }

  ServerUnaryReactor* AddWebhook(CallbackServerContext* ctx,
                                 const relay::v1::AddWebhookRequest* req,
                                 relay::v1::Webhook* resp) override {
    return RunWrite(ctx, [&](Finish finish) {
      auto a = WebhookApp(req->app());
      if (!a.ok()) return finish(a.status());
      // Not the URL: it may carry a credential (user:password@, ?token=).
      webhooks_->Add(a->id(), req->webhook(),
                     Into<relay::v1::Webhook>(
                         resp, Audited(std::move(finish), [this, app = a->id(), resp] {
                           Audit("webhooks.add", app, common::StrCat("webhook=", resp->id()));
                         })));
    });
  }
  ServerUnaryReactor* ListWebhooks(CallbackServerContext* ctx,
                                   const relay::v1::ListWebhooksRequest* req,
                                   relay::v1::ListWebhooksResponse* resp) override {
    return Run(ctx, [&] {
      auto a = WebhookApp(req->app());
      if (!a.ok()) return a.status();
      for (auto& h : webhooks_->List(a->id())) *resp->add_webhooks() = std::move(h);
      return absl::OkStatus();
    });
  }
  ServerUnaryReactor* RemoveWebhook(CallbackServerContext* ctx,
                                    const relay::v1::RemoveWebhookRequest* req,
                                    relay::v1::RemoveWebhookResponse*) override {
    return RunWrite(ctx, [&](Finish finish) {
      if (webhooks_ == nullptr) {
        return finish(
            absl::FailedPreconditionError("webhooks are not enabled on this control plane"));
      }
      webhooks_->Remove(req->webhook_id(), Audited(std::move(finish), [this, req] {
                          Audit("webhooks.remove", "",
                                common::StrCat("webhook=", req->webhook_id()));
                        }));
    });
  }
  ServerUnaryReactor* TestWebhooks(CallbackServerContext* ctx,
                                   const relay::v1::TestWebhooksRequest* req,
                                   relay::v1::TestWebhooksResponse* resp) override {
    // Test requests block on the endpoints (bounded by the request timeout each), so they run
    // off gRPC's callback threads, on a thread Webhooks owns and joins when it stops. The token
    // is checked before anything is read.
    return RunWrite(ctx, [&](Finish finish) {
      auto a = WebhookApp(req->app());
      if (!a.ok()) return finish(a.status());
      webhooks_->Test(a->id(), [resp, finish](std::vector<relay::v1::TestWebhookResult> results) {
        for (auto& r : results) *resp->add_results() = std::move(r);
        finish(absl::OkStatus());
      });
    });
  }

  AppStore& store_;
  ClusterState& cluster_;
  NodeHub& hub_;
  Api& api_;
  Webhooks* webhooks_;
  std::string token_;
  std::string token_id_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeChannelsService(Api& api) {
  return std::make_unique<ChannelsService>(api);
}

std::unique_ptr<grpc::Service> MakeAdminService(AppStore& store, ClusterState& cluster,
                                                NodeHub& hub, Api& api, Webhooks* webhooks,
                                                const std::string& admin_token) {
  return std::make_unique<AdminService>(store, cluster, hub, api, webhooks, admin_token);
}

}  // namespace relay::controlplane
