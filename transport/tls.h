// File: tls.h
// The server side of TLS for the client and HTTP API ports (wss:// and https://): a PEM
// certificate chain and key loaded into an OpenSSL context that can be replaced while the server
// runs. Every handshake takes the context current at its start and keeps it for the life of its
// connection, so a reload changes what new connections see and never touches existing ones.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace relay::transport {

// Thread-safe.
class TlsServerContext {
 public:
  // Loads `cert_file` (the certificate chain, leaf first) and `key_file`; fails with a message
  // naming the flag and file when one is unreadable, not PEM, or the key does not match.
  static absl::StatusOr<std::shared_ptr<TlsServerContext>> Load(std::string cert_file,
                                                                std::string key_file);

  // The context for a new handshake.
  std::shared_ptr<boost::asio::ssl::context> Current() const;
  // Reads both files again. On success new handshakes use them; on failure the current
  // certificate stays and the error says why.
  absl::Status Reload();
  // "serial <hex>, subject <...>, not after <...>" of the current leaf certificate (for logs).
  std::string Describe() const;

  TlsServerContext(std::string cert_file, std::string key_file,
                   std::shared_ptr<boost::asio::ssl::context> context)
      : cert_file_(std::move(cert_file)),
        key_file_(std::move(key_file)),
        current_(std::move(context)) {}

 private:
  const std::string cert_file_;
  const std::string key_file_;
  mutable absl::Mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::transport
