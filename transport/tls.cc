#include "transport/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>

#include <fstream>

#include "common/strings.h"

namespace relay::transport {
namespace {

namespace ssl = boost::asio::ssl;

// The last OpenSSL error of this thread as text, and the queue cleared.
std::string OpenSslError() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

bool Readable(const std::string& path) {
  std::ifstream in(path);
  return in.good();
}

absl::StatusOr<std::shared_ptr<ssl::context>> Build(const std::string& cert_file,
                                                    const std::string& key_file) {
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  if (!Readable(cert_file)) {
    return absl::InvalidArgumentError(common::StrCat("cannot read --tls-cert ", cert_file));
  }
  if (!Readable(key_file)) {
    return absl::InvalidArgumentError(common::StrCat("cannot read --tls-key ", key_file));
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  // TLS 1.2 and 1.3 only, as browsers and the Pusher SDKs speak them.
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(
      native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // An idle connection gives its record buffers back to the allocator.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(common::StrCat(
        "--tls-cert ", cert_file, " is not a PEM certificate chain: ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          common::StrCat("--tls-key ", key_file, " does not match --tls-cert ", cert_file));
    }
    return absl::InvalidArgumentError(
        common::StrCat("--tls-key ", key_file, " is not a PEM private key: ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        common::StrCat("--tls-key ", key_file, " does not match --tls-cert ", cert_file));
  }
  return ctx;
}

}  // namespace

absl::StatusOr<std::shared_ptr<TlsServerContext>> TlsServerContext::Load(std::string cert_file,
                                                                         std::string key_file) {
  auto ctx = Build(cert_file, key_file);
  if (!ctx.ok()) return ctx.status();
  return std::make_shared<TlsServerContext>(std::move(cert_file), std::move(key_file),
                                            std::move(*ctx));
}

std::shared_ptr<ssl::context> TlsServerContext::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Status TlsServerContext::Reload() {
  auto ctx = Build(cert_file_, key_file_);
  if (!ctx.ok()) return ctx.status();
  absl::MutexLock lock(&mu_);
  current_ = std::move(*ctx);
  return absl::OkStatus();
}

std::string TlsServerContext::Describe() const {
  std::shared_ptr<ssl::context> ctx = Current();
  X509* cert = SSL_CTX_get0_certificate(ctx->native_handle());
  if (cert == nullptr) return "no certificate";
  std::string out = "serial ";
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      out += hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return out;
  BIO_puts(bio, ", subject ");
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_ONELINE);
  BIO_puts(bio, ", not after ");
  ASN1_TIME_print(bio, X509_get0_notAfter(cert));
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len > 0) out.append(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

}  // namespace relay::transport
