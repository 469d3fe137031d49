// File: console.h
// The web console (docs/console.md): static files and a JSON + Server-Sent Events API under
// /console/, served on the HTTP API port when `--console` is given. Every /console/api/ call
// carries the admin token (Authorization: Bearer) and is a translation of an Admin or Channels
// operation (controlplane/admin_ops.h, controlplane::Api), so validation, limits and auth live
// there once; this layer adds only what is HTTP: paths, JSON, status codes, security headers.
// The live log is an SSE stream merging the log sources (LogSource) it was asked for: the
// channel events of Channels.WatchChannelEvents, the lifecycle events of
// Channels.WatchLifecycleEvents (when the lifecycle log is on), and any source added with
// AddSource().
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pusher_auth.h"
#include "controlplane/control_plane.h"
#include "transport/http_types.h"

namespace relay::console {

// One app's entries of one log source, for one live log stream.
class LogFeed {
 public:
  struct Next {
    std::string json;                 // one entry, a JSON object ("" when none)
    std::optional<absl::Status> end;  // the feed ended (after the entries taken before)
  };
  // Releases what the feed holds (its watcher, its place against the source's limits).
  virtual ~LogFeed() = default;
  // On the stream's thread. Neither an entry nor an end: the feed's `wake` is called once one
  // waits.
  virtual Next Take() = 0;
};

// A kind of live log entry: the channel events (MakeChannelEventSource), later the lifecycle
// events of the durable stream. Its entries go out as SSE events named name().
class LogSource {
 public:
  virtual ~LogSource() = default;
  virtual std::string_view name() const = 0;
  // A feed of `app`'s entries; `params` are the stream request's query parameters (the
  // source's own filter, e.g. channel= and prefix=). An error refuses the whole stream with its
  // status (400 for a bad filter, 429/503 over a limit). `wake`: see LogFeed::Take; may be
  // called from any thread, outside the feed's locks.
  virtual absl::StatusOr<std::unique_ptr<LogFeed>> Open(const relay::v1::App& app,
                                                        const common::QueryParams& params,
                                                        std::function<void()> wake) = 0;
};

// Channels.WatchChannelEvents (Api::Watch): `channel` (repeatable) and `prefix` as the
// request's channels and prefix, with its validation, watcher limits and slow-consumer cut.
std::unique_ptr<LogSource> MakeChannelEventSource(controlplane::Api& api);

class Console {
 public:
  // Serves `cp`'s apps; the channel event and lifecycle sources are added.
  explicit Console(controlplane::ControlPlane& cp);
  // Adds a live log source; before serving.
  void AddSource(std::unique_ptr<LogSource> source);

  // /console and everything under /console/ is answered here, any other request by `next`.
  transport::HttpHandler Wrap(transport::HttpHandler next);
  transport::HttpResponse Handle(const transport::HttpRequest& request);

 private:
  absl::StatusOr<transport::HttpResponse> Serve(const transport::HttpRequest& request);
  absl::StatusOr<transport::HttpResponse> ServeApi(const transport::HttpRequest& request,
                                                   const std::vector<std::string>& parts);
  absl::StatusOr<std::string> Apps();
  absl::StatusOr<transport::HttpResponse> Stream(const relay::v1::App& app,
                                                 const common::QueryParams& params);

  controlplane::ControlPlane& cp_;
  std::vector<std::unique_ptr<LogSource>> sources_;
};

}  // namespace relay::console
