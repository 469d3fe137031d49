#include "tools/relayctl/cli.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>

#include "absl/strings/numbers.h"
#include "common/json.h"
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
      return kExitAuth;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return kExitRefused;
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

namespace {

using google::protobuf::FieldDescriptor;

void AppendJson(std::string* out, const google::protobuf::Message& m, int depth);

void Indent(std::string* out, int depth) {
  out->push_back('\n');
  out->append(static_cast<size_t>(depth) * 2, ' ');
}

// One value of `field` (element `index` of a repeated field, -1 for a singular one).
void AppendValue(std::string* out, const google::protobuf::Message& m, const FieldDescriptor* f,
                 int index, int depth) {
  const auto* r = m.GetReflection();
  bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      common::StrAppend(out, rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      common::StrAppend(out, rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      common::StrAppend(out, rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      common::StrAppend(out, rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      common::StrAppend(out, rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      common::StrAppend(out, rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append((rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      common::AppendJsonString(out,
                               (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name());
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      common::AppendJsonString(out, rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      AppendJson(out, rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), depth);
      break;
  }
}

void AppendJson(std::string* out, const google::protobuf::Message& m, int depth) {
  const auto* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);  // the fields set (not at their default), by number
  if (fields.empty()) {
    out->append("{}");
    return;
  }
  out->push_back('{');
  for (size_t i = 0; i < fields.size(); ++i) {
    const FieldDescriptor* f = fields[i];
    if (i > 0) out->push_back(',');
    Indent(out, depth + 1);
    common::AppendJsonString(out, f->name());
    out->append(": ");
    if (f->is_map()) {
      // Map entries: {"key": value}, keys as strings (JSON object keys are strings).
      const FieldDescriptor* key = f->message_type()->map_key();
      const FieldDescriptor* value = f->message_type()->map_value();
      out->push_back('{');
      int n = r->FieldSize(m, f);
      for (int k = 0; k < n; ++k) {
        const auto& entry = r->GetRepeatedMessage(m, f, k);
        if (k > 0) out->push_back(',');
        Indent(out, depth + 2);
        std::string key_text;
        AppendValue(&key_text, entry, key, -1, depth + 2);
        if (key_text.empty() || key_text[0] != '"') key_text = common::JsonQuote(key_text);
        out->append(key_text).append(": ");
        AppendValue(out, entry, value, -1, depth + 2);
      }
      if (n > 0) Indent(out, depth + 1);
      out->push_back('}');
    } else if (f->is_repeated()) {
      out->push_back('[');
      int n = r->FieldSize(m, f);
      for (int k = 0; k < n; ++k) {
        if (k > 0) out->push_back(',');
        Indent(out, depth + 2);
        AppendValue(out, m, f, k, depth + 2);
      }
      if (n > 0) Indent(out, depth + 1);
      out->push_back(']');
    } else {
      AppendValue(out, m, f, -1, depth + 1);
    }
  }
  Indent(out, depth);
  out->push_back('}');
}

}  // namespace

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  AppendJson(&out, m, 0);
  return out;
}

relay::v1::App WithoutSecrets(relay::v1::App a) {
  a.clear_secret();
  for (auto& p : *a.mutable_previous_secrets()) p.clear_secret();
  return a;
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

grpc::Status Client::AppContext(const std::string& app, std::unique_ptr<grpc::ClientContext>* out,
                                bool stream) {
  relay::v1::GetAppRequest req;
  req.set_app(app);
  relay::v1::App a;
  auto st = admin_->GetApp(AdminContext().get(), req, &a);
  if (!st.ok()) return st;
  *out = Context(!stream);
  (*out)->AddMetadata("x-relay-key", a.key());
  (*out)->AddMetadata("x-relay-secret", a.secret());
  return grpc::Status::OK;
}

std::unique_ptr<grpc::ClientContext> Client::Context(bool deadline) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!deadline) return ctx;
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

}  // namespace relay::relayctl
