#!/usr/bin/env bash
# Installs what Relay needs to build and test on Debian 12, only when something is missing.
set -euo pipefail
PKGS=(cmake ninja-build g++ pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
      protobuf-compiler libabsl-dev libboost-dev libssl-dev libgtest-dev libgmock-dev
      libsimdjson-dev libsqlite3-dev zlib1g-dev curl openssl
      jq sqlite3  # docs/operations.md as run by tests/docs (values from --json; backups)
      clang libclang-rt-14-dev  # scripts/sanitize.sh: clang 14 with its libFuzzer runtime
      clang-format              # scripts/format.sh --check in scripts/test.sh
      prometheus                # promtool + a real server: tests/conformance/metrics.test.js
      python3-yaml              # tests/deploy/check_deploy.py (k8s, compose, systemd files)
      podman runc debootstrap  # tests/container/run.sh: builds and runs the image
      ccache                   # scripts/build.sh; the image build starts from its results
      gnuplot-nox              # tools/bench/charts.sh: the figures of docs/benchmarks.md
      etcd-server etcd-client  # control plane replicas: tests start their own etcd members
      golang-etcd-server-dev   # etcd's .proto files: proto/etcd generates C++ stubs from them
      chromium)                # headless browser: tests/conformance/console.test.js (web console)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the conformance tests; any install of it will do (the Debian one if none).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
