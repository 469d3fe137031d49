# syntax=docker/dockerfile:1
# Relay: one image with every binary (relay, relay-controlplane, relay-dataplane, relayctl),
# built from source. docs/deploy.md explains the image; tests/container/run.sh builds and tests it.
#
#   docker build -t relay .
#   docker run -p 6001:6001 -e RELAY_APP_SECRET="$(openssl rand -hex 32)" -v relay-data:/var/lib/relay relay
#
# Build stage: Debian's toolchain and -dev packages, a RelWithDebInfo build (the build the tests
# and benchmarks run; stripped below) of the four binaries only (no tests, no bench), compiled
# through ccache on a cache mount so a rebuild on the same machine recompiles only what changed.
# A builder that mounts a ccache directory from a build of the same tree at /ccache-seed
# (tests/container/run.sh: podman build -v <dir>:/ccache-seed:ro) starts from its results. etcd's .proto files (proto/etcd generates C++ stubs from them)
# are unpacked from golang-etcd-server-dev alone, without the Go sources it depends on.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates ccache cmake g++ ninja-build pkg-config \
      libabsl-dev libboost-dev libgrpc++-dev libprotobuf-dev libsimdjson-dev libsqlite3-dev \
      libssl-dev protobuf-compiler protobuf-compiler-grpc zlib1g-dev \
 && cd /tmp \
 && apt-get download golang-etcd-server-dev \
 && dpkg-deb -x golang-etcd-server-dev_*.deb / \
 && rm golang-etcd-server-dev_*.deb \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# RELAY_BUILD_JOBS bounds the compile jobs (default: every core the builder has).
ARG RELAY_BUILD_JOBS=0
RUN --mount=type=cache,target=/ccache,id=relay-ccache \
    set -eu; \
    export CCACHE_DIR=/ccache CCACHE_BASEDIR=/src CCACHE_NOHASHDIR=1 LANG=C.UTF-8; \
    unset LC_ALL LC_CTYPE LC_MESSAGES; \
    if [ -d /ccache-seed ]; then cp -a --no-clobber /ccache-seed/. /ccache/ 2>/dev/null || true; fi; \
    ccache -z >/dev/null; \
    jobs=$RELAY_BUILD_JOBS; [ "$jobs" != 0 ] || jobs=$(nproc); \
    cmake -S . -B /src/build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRELAY_BUILD_TESTS=OFF \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache; \
    mkdir /out; \
    ninja -C /src/build -j"$jobs" relay relay-controlplane relay-dataplane relayctl; \
    for b in relay relay-controlplane relay-dataplane relayctl; do \
      strip -o /out/$b /src/build/bin/$b; \
    done; \
    deploy/docker/runtime-packages.sh /out/relay /out/relay-controlplane /out/relay-dataplane \
      /out/relayctl > /out/runtime-packages; \
    echo "runtime-packages:" $(cat /out/runtime-packages); \
    ccache --show-stats | grep -Ei 'hits|misses' || true

# Runtime stage: the shared libraries the binaries load (computed above from ldd), a non-root
# user, the binaries, and the healthcheck script.
FROM debian:bookworm-slim
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(cat /tmp/runtime-packages) \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /tmp/runtime-packages \
 && groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --home-dir /var/lib/relay --shell /usr/sbin/nologin relay \
 && install -d -o relay -g relay -m 0700 /var/lib/relay
COPY --from=build /out/relay /out/relay-controlplane /out/relay-dataplane /out/relayctl \
     /usr/local/bin/
COPY deploy/docker/relay-healthcheck /usr/local/bin/relay-healthcheck
USER relay
WORKDIR /var/lib/relay
# Every flag is also an environment variable (RELAY_<FLAG>): in a container, listen on every
# interface and keep state in the volume.
ENV RELAY_DATA_DIR=/var/lib/relay \
    RELAY_HOST=0.0.0.0
VOLUME /var/lib/relay
# 6001: WebSocket + Pusher HTTP API (relay, relay-dataplane); 6002: HTTP API of
# relay-controlplane; 50051: gRPC (relayctl, data planes).
EXPOSE 6001 6002 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["relay-healthcheck"]
# Bound to 0.0.0.0, relay refuses to start with the well-known default app secret: give one on
# the first start (RELAY_APP_SECRET, or --app-secret).
CMD ["relay"]
