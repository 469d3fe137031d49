#include "tests/testutil/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testutil/wait_for.h"

namespace relay::testutil {

namespace {

std::string EtcdBinary() {
  const char* env = std::getenv("RELAY_ETCD_BIN");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/etcd";
}

// One HTTP/1.0 GET on 127.0.0.1:port, bounded to `timeout`; the whole response, or "".
std::string HttpGet(uint16_t port, const char* path, std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members,
                                                                std::chrono::milliseconds timeout) {
  if (members < 1) return absl::InvalidArgumentError("an etcd cluster needs a member");
  if (::access(EtcdBinary().c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        EtcdBinary(), " is missing: run scripts/install-deps.sh (it installs etcd-server)"));
  }
  absl::Status last;
  // A port picked as free may be taken before etcd binds it: then try again with new ones.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdCluster> c(new EtcdCluster());
    std::string tmpl = (std::filesystem::temp_directory_path() / "relay-etcd-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    c->root_ = tmpl;
    c->token_ = absl::StrCat("relay-test-", std::random_device{}());
    for (int i = 0; i < members; ++i) {
      Member m;
      m.name = absl::StrCat("m", i);
      m.dir = absl::StrCat(c->root_, "/", m.name);
      std::filesystem::create_directories(m.dir);
      m.client_port = FreeTcpPort();
      m.peer_port = FreeTcpPort();
      c->members_.push_back(m);
    }
    std::vector<int> all;
    last = absl::OkStatus();
    for (int i = 0; i < members && last.ok(); ++i) {
      last = c->Spawn(i, true);
      all.push_back(i);
    }
    if (last.ok()) last = c->WaitHealthy(all, timeout);
    if (last.ok()) return c;
  }
  return last;
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid > 0) Kill(i);
  }
  std::error_code ec;
  if (!root_.empty()) std::filesystem::remove_all(root_, ec);
}

std::string EtcdCluster::endpoint(int i) const {
  return absl::StrCat("127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoints_flag() const { return absl::StrJoin(endpoints(), ","); }

absl::Status EtcdCluster::Spawn(int i, bool initial) {
  Member& m = members_[i];
  std::vector<std::string> peers;
  for (const auto& p : members_) {
    peers.push_back(absl::StrCat(p.name, "=http://127.0.0.1:", p.peer_port));
  }
  std::string client_url = absl::StrCat("http://127.0.0.1:", m.client_port);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> args = {
      EtcdBinary(),
      "--name",
      m.name,
      "--data-dir",
      m.dir + "/data",
      "--listen-client-urls",
      client_url,
      "--advertise-client-urls",
      client_url,
      "--listen-peer-urls",
      peer_url,
      "--initial-advertise-peer-urls",
      peer_url,
      "--initial-cluster",
      absl::StrJoin(peers, ","),
      "--initial-cluster-token",
      token_,
      "--initial-cluster-state",
      initial ? "new" : "existing",
      // Raft timings for a LAN (etcd's tuning guide: heartbeat about the round trip, election
      // ten heartbeats): a lost raft leader is replaced in 0.5-1 s, well inside the 2 s lease
      // TTL of Relay's leader (docs/etcd.md).
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "500",
      "--logger",
      "zap",
      "--log-outputs",
      "stderr",
      "--log-level",
      "warn",
  };
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string log = m.dir + "/etcd.log";
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", log));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec. The member dies with the test process.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  m.pid = pid;
  return absl::OkStatus();
}

bool EtcdCluster::Exited(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return true;
  int status = 0;
  if (::waitpid(m.pid, &status, WNOHANG) == m.pid) {
    m.pid = -1;
    return true;
  }
  return false;
}

absl::Status EtcdCluster::WaitHealthy(const std::vector<int>& which,
                                      std::chrono::milliseconds timeout) {
  int exited = -1;
  bool ok = WaitFor(
      [&] {
        for (int i : which) {
          if (Exited(i)) {
            exited = i;
            return true;
          }
        }
        for (int i : which) {
          if (!Healthy(i)) return false;
        }
        return true;
      },
      timeout);
  if (exited >= 0) {
    return absl::UnavailableError(
        absl::StrCat("etcd member ", exited, " exited while starting:\n", Log(exited)));
  }
  if (!ok) {
    std::string logs;
    for (int i : which) absl::StrAppend(&logs, "--- member ", i, ":\n", Log(i));
    return absl::DeadlineExceededError(
        absl::StrCat("etcd not healthy within ", timeout.count(), " ms:\n", logs));
  }
  return absl::OkStatus();
}

bool EtcdCluster::Healthy(int i) const {
  std::string r = HttpGet(members_[i].client_port, "/health", std::chrono::seconds(1));
  return r.find("\"health\":\"true\"") != std::string::npos;
}

int EtcdCluster::RaftLeader() const {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0) continue;
    std::string r = HttpGet(members_[i].client_port, "/metrics", std::chrono::seconds(1));
    if (r.find("\netcd_server_is_leader 1") != std::string::npos) return i;
  }
  return -1;
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  int status = 0;
  ::waitpid(m.pid, &status, 0);
  m.pid = -1;
}

void EtcdCluster::Stop(int i) {
  if (members_[i].pid > 0) ::kill(members_[i].pid, SIGSTOP);
}

void EtcdCluster::Continue(int i) {
  if (members_[i].pid > 0) ::kill(members_[i].pid, SIGCONT);
}

absl::Status EtcdCluster::Restart(int i, std::chrono::milliseconds timeout) {
  Kill(i);
  absl::Status st = Spawn(i, false);
  if (!st.ok()) return st;
  return WaitHealthy({i}, timeout);
}

std::string EtcdCluster::Log(int i) const {
  std::ifstream in(members_[i].dir + "/etcd.log");
  std::stringstream s;
  s << in.rdbuf();
  std::string all = s.str();
  constexpr size_t kTail = 4000;
  return all.size() > kTail ? all.substr(all.size() - kTail) : all;
}

}  // namespace relay::testutil
