#include "tools/server/metrics_server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/strings.h"
#include "common/version.h"

namespace relay::server {
namespace {

// The process metrics every Prometheus client library exports (same names and meanings), read
// from /proc at scrape time: what an operator's usual dashboards and alerts expect.
void WriteProcessMetrics(common::MetricsWriter& w) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces), from field 3 (state) on.
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    // f[0] is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 (in pages).
    if (f.size() > 21) {
      const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
      const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
      w.Counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
                (std::stod(f[11]) + std::stod(f[12])) / tick);
      w.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
              std::stod(f[21]) * page);
      w.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", std::stod(f[20]));
      std::ifstream uptime_file("/proc/uptime");
      double uptime = 0;
      if (uptime_file >> uptime) {
        const double now = static_cast<double>(time(nullptr));
        w.Gauge("process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                now - uptime + std::stod(f[19]) / tick);
      }
    }
  }
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  if (!ec) w.Gauge("process_open_fds", "Open file descriptors.", static_cast<double>(fds));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    w.Gauge("process_max_fds", "The open file descriptor limit.",
            static_cast<double>(limit.rlim_cur));
  }
}

}  // namespace

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
  w.Family("relay_build_info", "gauge", "Always 1; the labels say which build answers.")
      .Sample("relay_build_info",
              {{"version", std::string(common::Version())},
               {"commit", std::string(common::GitCommit())}},
              1);
  collect(w);
  WriteProcessMetrics(w);
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
