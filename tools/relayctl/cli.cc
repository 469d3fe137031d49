#include "tools/relayctl/cli.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace relay::relayctl {

namespace {

int ExitFor(const grpc::Status& st) {
  switch (st.error_code()) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitAuth;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::ALREADY_EXISTS:
      return kExitInvalid;
    default:
      return kExitError;
  }
}

}  // namespace

void AddGlobals(common::FlagSet& f, Globals& g) {
  f.String("server", &g.server, "Control plane gRPC address HOST:PORT");
  f.String("admin-token", &g.admin_token, "Admin credential");
  f.String("data-dir", &g.data_dir, "Local control plane data dir (for admin.token)");
  f.String("ca", &g.ca, "CA bundle for TLS");
  f.Bool("json", &g.json, "Machine-readable JSON output");
  f.Bool("tls", &g.tls, "Use TLS");
}

void AppFlag(common::FlagSet& f, Options& o) { f.String("app", &o.app, "App id or key"); }

void AppAndPrefixFlags(common::FlagSet& f, Options& o) {
  AppFlag(f, o);
  f.String("prefix", &o.prefix, "Only channels starting with this prefix");
}

int Fail(const grpc::Status& st, const Globals& g) {
  std::string msg = st.error_message();
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    msg = common::StrCat("cannot reach the control plane at ", g.server, " (", msg,
                         "); is it running? (--server HOST:PORT)");
  } else if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    msg +=
        " (pass --admin-token, set RELAY_ADMIN_TOKEN, or point --data-dir at the control "
        "plane's data dir)";
  }
  std::cerr << "relayctl: " << msg << "\n";
  return ExitFor(st);
}

int Usage(const std::string& msg) {
  std::cerr << "relayctl: " << msg << " (see relayctl --help)\n";
  return kExitUsage;
}

int Acknowledge(const grpc::Status& st, const Globals& g, const std::string& done) {
  if (!st.ok()) return Fail(st, g);
  std::cout << (g.json ? "{}" : done) << "\n";
  return kExitOk;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

bool ParseDuration(const std::string& text, uint64_t* seconds) {
  if (text.empty()) return false;
  uint64_t mult = 1;
  std::string num = text;
  switch (text.back()) {
    case 's':
      mult = 1;
      num.pop_back();
      break;
    case 'm':
      mult = 60;
      num.pop_back();
      break;
    case 'h':
      mult = 3600;
      num.pop_back();
      break;
    case 'd':
      mult = 86400;
      num.pop_back();
      break;
    default:
      break;
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(common::AbslView(num), &n)) return false;
  *seconds = n * mult;
  return true;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  time_t t = static_cast<time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::cout << r[i];
      if (i + 1 < r.size()) std::cout << std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

Client::Client(const Globals& g) : g_(g) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (g.tls || !g.ca.empty()) {
    grpc::SslCredentialsOptions o;
    if (!g.ca.empty()) {
      std::ifstream in(g.ca);
      o.pem_root_certs.assign(std::istreambuf_iterator<char>(in), {});
    }
    creds = grpc::SslCredentials(o);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateChannel(g.server, creds);
  admin_ = relay::v1::Admin::NewStub(channel_);
  public_ = relay::v1::Channels::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Client::AdminContext() {
  auto ctx = Context();
  std::string token = g_.admin_token;
  if (token.empty()) {
    std::ifstream in(g_.data_dir + "/admin.token");
    std::getline(in, token);
  }
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

grpc::Status Client::AppContext(const std::string& app, std::unique_ptr<grpc::ClientContext>* out) {
  relay::v1::GetAppRequest req;
  req.set_app(app);
  relay::v1::App a;
  auto st = admin_->GetApp(AdminContext().get(), req, &a);
  if (!st.ok()) return st;
  *out = Context();
  (*out)->AddMetadata("x-relay-key", a.key());
  (*out)->AddMetadata("x-relay-secret", a.secret());
  return grpc::Status::OK;
}

std::unique_ptr<grpc::ClientContext> Client::Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

}  // namespace relay::relayctl
