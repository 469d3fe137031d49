#include "tools/server/metrics_server.h"

#include "common/strings.h"

namespace relay::server {

MetricsServer::MetricsServer(const MetricsFlags& flags, Collect collect)
    : flags_(flags), collect_(std::make_shared<const Collect>(std::move(collect))) {}

MetricsServer::~MetricsServer() { Stop(); }

transport::HttpResponse MetricsServer::Answer(const transport::HttpRequest& req,
                                              const Collect& collect) {
  if (req.path != "/metrics") return transport::JsonError(404, "Only /metrics is served here");
  if (req.method != "GET" && req.method != "HEAD") {
    transport::HttpResponse r = transport::JsonError(405, "Use GET /metrics");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  common::MetricsWriter w;
  collect(w);
  transport::HttpResponse r{200, w.Take()};
  r.content_type = common::kMetricsContentType;
  return r;
}

absl::StatusOr<uint16_t> MetricsServer::Start() {
  if (!flags_.enabled()) return 0;
  // The handler owns what it uses: HttpServer connections may outlive this object briefly.
  auto collect = collect_;
  http_ = std::make_unique<transport::HttpServer>(
      transport::HttpServerOptions{flags_.host, static_cast<uint16_t>(flags_.port), 4096}, pool_,
      [collect](const transport::HttpRequest& req) { return Answer(req, *collect); });
  auto port = http_->Start();
  if (!port.ok()) {
    return absl::UnavailableError(common::StrCat("cannot listen for metrics on ", flags_.host, ":",
                                                 flags_.port, ": ", port.status().message()));
  }
  pool_.Start("metrics");
  return *port;
}

void MetricsServer::Stop() {
  if (http_) http_->StopAccepting();
  pool_.Stop();
}

}  // namespace relay::server
