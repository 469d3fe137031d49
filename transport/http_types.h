// File: http_types.h
// Plain HTTP request/response values passed between the HTTP front door and the handlers, so
// handlers never see Beast types.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relay::transport {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // raw path, not decoded
  std::string query;   // raw query string without '?'
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer_ip;

  // The first header named `name` (case-insensitive), or empty.
  std::string_view Header(std::string_view name) const;
};

// The body of a response written as it is produced (Server-Sent Events) rather than at once.
// The server writes the head, then asks Pull() for bytes whenever no write is in flight, so the
// producer buffers (and bounds) whatever the peer is too slow to take; at most one write is
// ever queued on the connection. The connection closes when the stream ends, its peer goes, a
// write takes longer than 30 s, or the server's io_context stops.
class ResponseStream {
 public:
  struct Pulled {
    std::string bytes;  // write these (may be empty)
    bool end = false;   // then close the connection: nothing more will come
  };
  virtual ~ResponseStream() = default;
  // Once, on the connection's thread, before the first Pull(). `wake` may be called from any
  // thread, outside the producer's own locks, once Pull() has something after it returned
  // nothing; after the connection ended it does nothing.
  virtual void Start(std::function<void()> wake) = 0;
  // On the connection's thread. Nothing to write and no end: wait for `wake`.
  virtual Pulled Pull() = 0;
  // Written after 15 s without a write, so proxies keep an idle stream open and a peer that
  // vanished is noticed (an SSE comment, ": keep-alive\n\n").
  virtual std::string KeepAlive() = 0;
  // Once, when the connection ended for any reason (also without Start()); the producer
  // releases what it holds. On the connection's thread, or where the connection is destroyed.
  virtual void Stop() = 0;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, `body` is ignored: the head goes out without a length and the stream's bytes
  // follow until it ends (the connection is not kept alive).
  std::shared_ptr<ResponseStream> stream;
  // When set, everything else is ignored and the answer comes later: the server calls `later`
  // once, on the connection's thread, with `answer`, which the handler (or whatever it hands
  // it to) calls once, from any thread, with the real response. No thread waits meanwhile; the
  // connection reads nothing more until then. The handler must make sure `answer` is called
  // (or dropped, which closes the connection) before the server's IoPool stops.
  std::function<void(std::function<void(HttpResponse)> answer)> later;
};

// Handles one request; called on an I/O thread, must not block.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Whether a server should get traffic now (GET /ready, the gRPC health service), and if not why,
// in words an operator reads in a probe's failure.
struct Readiness {
  bool ready = true;
  std::string reason;  // empty when ready
};
// Asked on an I/O thread for every probe: must be cheap and must not block.
using ReadinessCheck = std::function<Readiness()>;

// {"error":message,"code":status}, the JSON error body every endpoint uses.
HttpResponse JsonError(int status, std::string_view message);

}  // namespace relay::transport
