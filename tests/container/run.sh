#!/usr/bin/env bash
# The container test: builds the image from the repository's Dockerfile with podman and runs it.
#  1. the base image debian:bookworm-slim, built from Debian's mirror with debootstrap when this
#     machine has none (no registry is reachable here; on a normal machine it is pulled);
#  2. the image (multi-stage, from source); fails -- never skips -- when it cannot be built;
#  3. the conformance skeleton (tests/conformance/skeleton.test.js, both shapes, relayctl too)
#     with every binary run from the image (tests/container/in-container.sh);
#  4. the image's default command: refuses the well-known app secret on 0.0.0.0, serves with one,
#     HEALTHCHECK passes, the server runs as a non-root user;
#  5. the compose file's split shape (deploy/compose/compose.yaml: one control plane, two data
#     planes, node.token through the control plane's volume, its healthchecks) with plain
#     `podman run` on the host's network, and an event through it;
#  6. the same with the Kubernetes manifests' commands (deploy/k8s).
# Prints the image build time and size. podman here cannot reach systemd to time healthchecks
# itself (--health-interval=disable): the test runs each healthcheck by hand.
# RELAY_CONTAINER_BUILD_TIMEOUT bounds the image build (seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
run_id=relay-ct-$$
work=$(mktemp -d /tmp/relay-container-XXXXXX)
export RELAY_CT_IMAGE=${RELAY_CT_IMAGE:-localhost/relay:test}
export RELAY_CT_LABEL=relay-container-test=$run_id
# podman's defaults fail here (crun: cgroups in hybrid mode; RLIMIT_NOFILE): ../shared/guides.
export CONTAINERS_CONF=$work/containers.conf
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' \
  > "$CONTAINERS_CONF"

fail() { echo "container test FAILED: $*"; exit 1; }
cleanup() {
  local ids
  ids=$(podman ps -aq --filter "label=$RELAY_CT_LABEL" 2>/dev/null || true)
  [[ -z $ids ]] || podman rm -f -v -t 0 $ids >/dev/null 2>&1 || true
  podman volume ls -q 2>/dev/null | grep "^$run_id-" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 143" TERM INT
for tool in podman runc debootstrap python3 node; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-deps.sh installs it)"
done
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Polls a command for up to $1 seconds.
wait_for() {
  local secs=$1
  shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# Splits tests/container/deploy_commands.py's output ($spec) into vols, cmd and hc.
split_spec() {
  vols=() cmd=() hc=()
  local part=0 a
  for a in "${spec[@]}"; do
    if [[ $a == -- ]]; then part=$((part + 1)); continue; fi
    case $part in 0) vols+=("$a") ;; 1) cmd+=("$a") ;; 2) hc+=("$a") ;; esac
  done
}

# 1. The base image.
base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  echo "container test: building $base from Debian's mirror (debootstrap)"
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | podman import - "$base" >/dev/null || fail "podman import"
  rm -rf "$work/rootfs"
fi

# 2. The image. --format docker keeps HEALTHCHECK (the OCI format has no field for it).
echo "container test: building $RELAY_CT_IMAGE"
# The compiler cache of scripts/build.sh (same sources, same flags): the image's build stage
# starts from it (Dockerfile, /ccache-seed), so CI compiles the tree once rather than twice.
build_args=(--format docker --network host)
seed=${CCACHE_DIR:-$ROOT/build/ccache}
if [[ -d $seed ]]; then
  build_args+=(-v "$seed:/ccache-seed:ro")
  echo "container test: the build stage starts from the compiler cache in $seed"
fi
t0=$SECONDS
timeout "${RELAY_CONTAINER_BUILD_TIMEOUT:-1500}" podman build "${build_args[@]}" \
  -t "$RELAY_CT_IMAGE" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; fail "the image did not build"; }
size=$(podman image inspect --format '{{.Size}}' "$RELAY_CT_IMAGE")
# Every build leaves the previous build's stages untagged: tag this one's build stage (cached, so
# its apt layer is reused next time) and drop the untagged leftovers, so runs do not pile up.
podman build "${build_args[@]}" --target build -t "$RELAY_CT_IMAGE-build" . \
  >>"$work/build.log" 2>&1 || fail "tagging the build stage"
podman image prune -f >/dev/null 2>&1 || true
echo "container test: image built in $((SECONDS - t0)) s, $((size / 1000000)) MB"
grep -E '^runtime-packages:|^ *(Hits|Misses):' "$work/build.log" | sed 's/^/container test: /' || true
podman image inspect --format '{{json .Config.Healthcheck}}' "$RELAY_CT_IMAGE" | grep -q relay-healthcheck \
  || fail "the image has no HEALTHCHECK"
export RELAY_CT_UID
RELAY_CT_UID=$(podman run --rm --health-interval=disable "$RELAY_CT_IMAGE" id -u 2>>"$work/podman.log")
[[ $RELAY_CT_UID =~ ^[0-9]+$ && $RELAY_CT_UID != 0 ]] || fail "the image's user is root ($RELAY_CT_UID)"

# 3. The conformance skeleton against the binaries in the image.
mkdir -p "$work/bin"
for b in relay relay-controlplane relay-dataplane relayctl; do
  printf '#!/usr/bin/env bash\nexec %q %s "$@"\n' "$ROOT/tests/container/in-container.sh" "$b" \
    >"$work/bin/$b"
  chmod +x "$work/bin/$b"
done
npm_done=()
[[ -d tests/conformance/node_modules ]] && npm_done=(RELAY_NPM_DONE=1)
(cd tests/conformance && env "${npm_done[@]}" RELAY_BIN_DIR="$work/bin" ./run.sh skeleton.test.js) \
  || fail "the conformance skeleton against the container"

# 4. The default command (relay on 0.0.0.0, state in the volume).
port=$(free_port)
grpc=$(free_port)
set +e
podman run --rm --health-interval=disable --network host --label "$RELAY_CT_LABEL" \
  -e RELAY_PORT="$port" -e RELAY_GRPC_PORT="$grpc" "$RELAY_CT_IMAGE" >"$work/refused.log" 2>&1
code=$?
set -e
[[ $code == 2 ]] && grep -qi secret "$work/refused.log" \
  || { cat "$work/refused.log"; fail "the default command must refuse the default secret ($code)"; }
name=$run_id-relay
podman run -d --health-interval=disable --name "$name" --label "$RELAY_CT_LABEL" --network host \
  -e RELAY_PORT="$port" -e RELAY_GRPC_PORT="$grpc" -e RELAY_APP_SECRET=container-test-secret \
  "$RELAY_CT_IMAGE" >/dev/null 2>>"$work/podman.log"
wait_for 30 podman healthcheck run "$name" || { podman logs "$name"; fail "HEALTHCHECK did not pass"; }
# Not vacuous: the same check against a port where nothing listens fails.
if podman exec -e RELAY_HEALTHCHECK_PORT="$(free_port)" "$name" relay-healthcheck >/dev/null 2>&1; then
  fail "relay-healthcheck passes with no server behind it"
fi
uid=$(podman exec "$name" awk '/^Uid:/{print $2}' /proc/1/status)
comm=$(podman exec "$name" cat /proc/1/comm)
[[ $comm == relay && $uid == "$RELAY_CT_UID" && $uid != 0 ]] || fail "PID 1 is $comm as uid $uid"
echo "container test: relay serves, HEALTHCHECK passes, runs as uid $uid"
t0=$SECONDS
podman stop -t 30 "$name" >/dev/null 2>>"$work/podman.log"
echo "container test: podman stop took $((SECONDS - t0)) s"

# 5. The compose file's split shape.
cp_port=$(free_port) cp_grpc=$(free_port) dp1=$(free_port) dp2=$(free_port)
ports="{\"controlplane\": {\"--port\": $cp_port, \"--grpc-port\": $cp_grpc},
  \"dataplane-1\": {\"--port\": $dp1}, \"dataplane-2\": {\"--port\": $dp2}}"
secret=compose-test-secret
for svc in controlplane dataplane-1 dataplane-2; do
  mapfile -t spec < <(python3 tests/container/deploy_commands.py compose deploy/compose/compose.yaml \
    "$svc" "$run_id-" "$ports")
  split_spec
  podman run -d --health-interval=disable --name "$run_id-$svc" --label "$RELAY_CT_LABEL" \
    --network host -e RELAY_APP_SECRET="$secret" "${vols[@]}" "$RELAY_CT_IMAGE" "${cmd[@]}" \
    >/dev/null 2>>"$work/podman.log"
  # depends_on: service_healthy, and the service's own healthcheck.
  wait_for 60 podman exec "$run_id-$svc" "${hc[@]}" \
    || { podman logs "$run_id-$svc"; fail "$svc: healthcheck ${hc[*]} did not pass"; }
done
for svc in dataplane-1 dataplane-2; do
  wait_for 30 podman exec "$run_id-$svc" relay-healthcheck /ready \
    || { podman logs "$run_id-$svc"; fail "$svc did not attach to the control plane"; }
done
node tests/container/split-check.js "$dp1" "$dp2" "$cp_port" "$secret" || {
  for svc in controlplane dataplane-1 dataplane-2; do podman logs "$run_id-$svc" 2>&1 | tail -20; done
  fail "an event through the compose topology"
}

# 6. The Kubernetes manifests' commands (deploy/k8s): the control plane StatefulSet's and the
# data plane Deployment's, with a read-only root filesystem and their volumes as podman volumes;
# the node token handed over as the Secret would be (a file `token`, root:10001, mode 0440).
k_http=$(free_port) k_grpc=$(free_port) k_internal=$(free_port) k_ws=$(free_port)
k_cp_metrics=$(free_port) k_dp_metrics=$(free_port)
ports="{\"relay-controlplane\": {\"--port\": $k_http, \"--grpc-port\": $k_grpc,
  \"--internal-grpc-port\": $k_internal, \"--metrics-port\": $k_cp_metrics},
  \"relay-dataplane\": {\"--port\": $k_ws, \"--metrics-port\": $k_dp_metrics},
  \"services\": {\"relay-controlplane-internal\": [\"relay-controlplane\", \"--internal-grpc-port\"]}}"
for w in controlplane dataplane; do
  mapfile -t spec < <(python3 tests/container/deploy_commands.py k8s "deploy/k8s/$w.yaml" \
    "relay-$w" "$run_id-k8s-" "$ports")
  split_spec
  if [[ $w == dataplane ]]; then   # kubectl create secret generic relay-node-token ...
    token=$(podman exec "$run_id-k8s-controlplane" cat /var/lib/relay/data/node.token)
    podman volume create "$run_id-k8s-relay-dataplane-node-token" >/dev/null
    dir=$(podman volume inspect --format '{{.Mountpoint}}' "$run_id-k8s-relay-dataplane-node-token")
    printf '%s' "$token" >"$dir/token" && chown "0:$RELAY_CT_UID" "$dir/token" && chmod 0440 "$dir/token"
  fi
  podman run -d --health-interval=disable --name "$run_id-k8s-$w" --label "$RELAY_CT_LABEL" \
    --network host --read-only --user "$RELAY_CT_UID:$RELAY_CT_UID" \
    -e RELAY_APP_SECRET="$secret" "${vols[@]}" "$RELAY_CT_IMAGE" "${cmd[@]}" \
    >/dev/null 2>>"$work/podman.log"
  # The readinessProbe's path on the container's --port.
  wait_for 60 podman exec "$run_id-k8s-$w" "${hc[@]}" \
    || { podman logs "$run_id-k8s-$w"; fail "k8s $w: readiness ${hc[*]} did not pass"; }
  podman exec "$run_id-k8s-$w" relay-healthcheck /health || fail "k8s $w: liveness /health"
done
node tests/container/split-check.js "$k_ws" "$k_ws" "$k_http" "$secret" || {
  for w in controlplane dataplane; do podman logs "$run_id-k8s-$w" 2>&1 | tail -20; done
  fail "an event through the Kubernetes commands"
}
# The manifests turn on /metrics (the port a Prometheus in the cluster scrapes).
for m in "$k_cp_metrics" "$k_dp_metrics"; do
  curl -fsS "http://127.0.0.1:$m/metrics" | grep -q '^relay_build_info' \
    || fail "k8s: no relay metrics on the manifests' --metrics-port ($m)"
done
echo "container test: 4 passed, 0 failed"
