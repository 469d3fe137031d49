// File: metrics_server.h
// The Prometheus endpoint of a server binary: GET /metrics on its own listener and its own I/O
// thread (transport::HttpServer), so a scrape never runs on a shard thread. What it renders
// comes from `collect`, which reads the planes' counters at scrape time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "common/io_pool.h"
#include "common/metrics.h"
#include "tools/server/server_flags.h"
#include "transport/http_server.h"

namespace relay::server {

class MetricsServer {
 public:
  using Collect = std::function<void(common::MetricsWriter&)>;
  MetricsServer(const MetricsFlags& flags, Collect collect);
  ~MetricsServer();

  // Binds and starts serving; returns the bound port (0 when the flags leave metrics off).
  absl::StatusOr<uint16_t> Start();
  void Stop();

  // The response to one request (GET /metrics: the exposition; else 404 or 405).
  static transport::HttpResponse Answer(const transport::HttpRequest& req, const Collect& collect);

 private:
  MetricsFlags flags_;
  std::shared_ptr<const Collect> collect_;
  common::IoPool pool_{1};
  std::unique_ptr<transport::HttpServer> http_;
};

}  // namespace relay::server
