#!/usr/bin/python3
"""Checks the deployment files without a cluster: deploy/k8s, deploy/compose, deploy/systemd.

Every YAML document parses and has the fields its kind needs; selectors, probes, ports, volumes
and Secrets agree with each other; the drain fits in every grace period; and every command line
uses only flags that the binary's own --help lists (so a renamed or removed flag fails here, not
in an operator's cluster). The systemd units also pass `systemd-analyze verify` when it exists.

usage: check_deploy.py BIN_DIR   (the built relay, relay-controlplane, relay-dataplane, relayctl)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARIES = ("relay", "relay-controlplane", "relay-dataplane", "relayctl")
DEFAULT_DRAIN_MS = 10000

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)


_help = {}


def flags_of(bin_dir, binary):
    """The flags `binary --help` lists."""
    if binary not in _help:
        out = subprocess.run([os.path.join(bin_dir, binary), "--help"], capture_output=True,
                             text=True, timeout=30)
        _help[binary] = set(re.findall(r"^\s+(--[a-z0-9-]+)", out.stdout + out.stderr, re.M))
        check(len(_help[binary]) > 3, f"{binary} --help lists no flags")
    return _help[binary]


def check_command(bin_dir, argv, where):
    """argv[0] is one of our binaries and every --flag in argv is one it accepts. Returns the
    flags as a dict (flag -> value or True)."""
    check(argv and os.path.basename(argv[0]) in BINARIES, f"{where}: runs {argv[:1]}")
    if not argv or os.path.basename(argv[0]) not in BINARIES:
        return {}
    known = flags_of(bin_dir, os.path.basename(argv[0]))
    got = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        a = str(args[i])
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            check(name in known, f"{where}: {os.path.basename(argv[0])} has no flag {name}")
            if not eq and i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
                value = str(args[i + 1])
                i += 1
            got[name] = value if (eq or value) else True
        i += 1
    return got


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(text).strip())
    if not m:
        return None
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, None: n, "m": n * 60}[m.group(2)]


def drain_seconds(flags):
    return int(flags.get("--drain-window-ms", DEFAULT_DRAIN_MS)) / 1000


def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def check_k8s(bin_dir):
    docs = []
    k8s = os.path.join(ROOT, "deploy/k8s")
    for name in sorted(os.listdir(k8s)):
        if name.endswith(".yaml"):
            with open(os.path.join(k8s, name)) as f:
                for doc in yaml.safe_load_all(f):
                    if doc is not None:
                        docs.append((name, doc))
    by_kind = {}
    for name, doc in docs:
        where = f"deploy/k8s/{name}"
        for field in ("apiVersion", "kind"):
            check(field in doc, f"{where}: a document without {field}")
        if doc.get("kind") == "Kustomization":
            for res in doc.get("resources", []):
                check(os.path.exists(os.path.join(k8s, res)), f"{where}: no resource {res}")
            continue
        check(bool(doc.get("metadata", {}).get("name")), f"{where}: {doc.get('kind')} without a name")
        by_kind.setdefault(doc["kind"], []).append((where, doc))

    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    check(len(by_kind.get("Deployment", [])) == 1, "k8s: one Deployment (the data planes)")
    check(len(by_kind.get("StatefulSet", [])) == 1, "k8s: one StatefulSet (the control plane)")
    secrets = {d["metadata"]["name"]: d for _, d in by_kind.get("Secret", [])}
    container_ports = {}  # workload name -> {port name: number}
    for where, w in workloads:
        wname = w["metadata"]["name"]
        spec = w["spec"]
        labels = spec["template"]["metadata"]["labels"]
        sel = spec["selector"]["matchLabels"]
        check(all(labels.get(k) == v for k, v in sel.items()),
              f"{where}: {wname}'s selector does not match its pod labels")
        pod = spec["template"]["spec"]
        check(pod.get("securityContext", {}).get("runAsNonRoot") is True,
              f"{where}: {wname} must run as non-root")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for t in spec.get("volumeClaimTemplates", []):
            volumes[t["metadata"]["name"]] = {"pvc": t}
        for c in pod["containers"]:
            cw = f"{where}: {wname}/{c['name']}"
            check(bool(c.get("image")), f"{cw}: no image")
            flags = check_command(bin_dir, list(c.get("command", [])) + list(c.get("args", [])), cw)
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            container_ports[wname] = (labels, ports)
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for m in mounts.values():
                check(m in volumes, f"{cw}: mounts undeclared volume {m}")
            for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
                get = c.get(probe, {}).get("httpGet", {})
                check(get.get("path") == path, f"{cw}: {probe} must GET {path}")
                check(get.get("port") in ports, f"{cw}: {probe} on an undeclared port")
            port_flag = flags.get("--port")
            check(port_flag is not None and int(port_flag) in ports.values(),
                  f"{cw}: --port is not a container port")
            binary = c["command"][0]
            if binary == "relay-dataplane":
                check(w["kind"] == "Deployment", f"{cw}: data planes are a Deployment")
                token = flags.get("--node-token-file", "")
                mount = next((p for p in mounts if under(token, p)), None)
                check(mount is not None, f"{cw}: --node-token-file {token} is on no volume")
                if mount:
                    vol = volumes.get(mounts[mount], {})
                    sname = vol.get("secret", {}).get("secretName")
                    check(sname in secrets, f"{cw}: the node token is not a Secret of the manifests")
                    if sname in secrets:
                        key = os.path.relpath(token, mount)
                        check(key in secrets[sname].get("stringData", {}),
                              f"{cw}: Secret {sname} has no key {key}")
                stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                pre = int(stop[1]) if len(stop) == 2 and stop[0] == "sleep" else 0
                grace = pod.get("terminationGracePeriodSeconds", 30)
                check(grace > pre + drain_seconds(flags),
                      f"{cw}: terminationGracePeriodSeconds {grace} <= preStop {pre} + drain")
                check(bool(c.get("readinessProbe")), f"{cw}: no readiness probe")
            if binary == "relay-controlplane":
                data = flags.get("--data-dir", "")
                mount = next((p for p in mounts if under(data, p)), None)
                check(mount is not None and "pvc" in volumes.get(mounts[mount], {}),
                      f"{cw}: --data-dir is not on the PersistentVolumeClaim")
                check(spec.get("replicas") == 1, f"{cw}: exactly one control plane replica")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check(ref["key"] in secrets.get(ref["name"], {}).get("stringData", {}),
                          f"{cw}: env {e['name']} reads a Secret key the manifests do not define")
    dp_labels = next(w["spec"]["template"]["metadata"]["labels"] for _, w in workloads
                     if w["kind"] == "Deployment")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    check(len(pdbs) == 1, "k8s: one PodDisruptionBudget")
    for where, p in pdbs:
        sel = p["spec"]["selector"]["matchLabels"]
        check(all(dp_labels.get(k) == v for k, v in sel.items()),
              f"{where}: the PodDisruptionBudget does not select the data planes")
    for where, s in by_kind.get("Service", []):
        sel = s["spec"]["selector"]
        target = [(n, ports) for n, (labels, ports) in container_ports.items()
                  if all(labels.get(k) == v for k, v in sel.items())]
        check(len(target) == 1, f"{where}: Service {s['metadata']['name']} selects no workload")
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            check(any(tp in ports or tp in ports.values() for _, ports in target),
                  f"{where}: Service {s['metadata']['name']} targets unknown port {tp}")
    names = {s["metadata"]["name"]: s for _, s in by_kind.get("Service", [])}
    for where, w in workloads:
        for c in w["spec"]["template"]["spec"]["containers"]:
            cp = check_command(bin_dir, c["command"], where).get("--control-plane")
            if cp:
                host, _, port = cp.rpartition(":")
                svc = names.get(host)
                check(svc is not None and any(p["port"] == int(port) for p in svc["spec"]["ports"]),
                      f"{where}: --control-plane {cp} is no Service port")


def check_compose(bin_dir):
    where = "deploy/compose/compose.yaml"
    with open(os.path.join(ROOT, where)) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    check(set(services) == {"controlplane", "dataplane-1", "dataplane-2"},
          f"{where}: one control plane and two data planes")
    mounts = {}
    flags = {}
    for name, s in services.items():
        sw = f"{where}: {name}"
        check(bool(s.get("image")), f"{sw}: no image")
        check(s.get("restart") in ("unless-stopped", "always", "on-failure"), f"{sw}: no restart")
        flags[name] = check_command(bin_dir, s["command"], sw)
        test = s.get("healthcheck", {}).get("test", [])
        check(test[:2] == ["CMD", "relay-healthcheck"], f"{sw}: healthcheck is not relay-healthcheck")
        grace = seconds(s.get("stop_grace_period", "10s"))
        check(grace is not None and grace > drain_seconds(flags[name]),
              f"{sw}: stop_grace_period does not cover the drain window")
        mounts[name] = {}
        for v in s.get("volumes", []):
            src, dst = v.split(":")[:2]
            check(src in (doc.get("volumes") or {}), f"{sw}: undeclared volume {src}")
            mounts[name][dst] = src
    cp_data = flags["controlplane"].get("--data-dir", "")
    cp_vol = next((src for dst, src in mounts["controlplane"].items() if under(cp_data, dst)), None)
    check(cp_vol is not None, f"{where}: the control plane's --data-dir is on no volume")
    for name in ("dataplane-1", "dataplane-2"):
        sw = f"{where}: {name}"
        s = services[name]
        check(s.get("depends_on", {}).get("controlplane", {}).get("condition") == "service_healthy",
              f"{sw}: must wait for a healthy control plane")
        token = flags[name].get("--node-token-file", "")
        mount = next((dst for dst in mounts[name] if under(token, dst)), None)
        check(mount is not None and mounts[name][mount] == cp_vol
              and os.path.relpath(token, mount) == "node.token",
              f"{sw}: --node-token-file must be node.token of the control plane's volume")
        host, _, port = flags[name].get("--control-plane", "").rpartition(":")
        check(host == "controlplane" and port == str(flags["controlplane"].get("--grpc-port")),
              f"{sw}: --control-plane is not the control plane's gRPC port")
    check(flags["dataplane-1"].get("--node-id") != flags["dataplane-2"].get("--node-id"),
          f"{where}: the data planes need distinct --node-id")


def unit_exec(path):
    with open(path) as f:
        text = f.read()
    execs = re.findall(r"^ExecStart=(.*)$", text, re.M)
    timeout = re.search(r"^TimeoutStopSec=(\S+)$", text, re.M)
    return text, execs, timeout.group(1) if timeout else None


def check_systemd(bin_dir):
    unit_dir = os.path.join(ROOT, "deploy/systemd")
    units = sorted(n for n in os.listdir(unit_dir) if n.endswith(".service"))
    check("relay.service" in units, "deploy/systemd: no relay.service")
    tmp = tempfile.mkdtemp(prefix="relay-units-")
    try:
        verify = []
        for name in units:
            where = f"deploy/systemd/{name}"
            text, execs, timeout = unit_exec(os.path.join(unit_dir, name))
            check(len(execs) == 1, f"{where}: one ExecStart")
            argv = execs[0].replace("%i", "edge-1").replace("%d", "/run/credentials/x").split()
            flags = check_command(bin_dir, argv, where)
            check(timeout is not None and seconds(timeout) > drain_seconds(flags),
                  f"{where}: TimeoutStopSec does not cover the drain window")
            for key in ("User=relay", "NoNewPrivileges=yes", "ProtectSystem=strict",
                        "Restart=on-failure", "KillSignal=SIGTERM", "LimitNOFILE="):
                check(re.search(rf"^{re.escape(key)}", text, re.M) is not None,
                      f"{where}: missing {key}")
            check("relay-dataplane" in argv[0] or "StateDirectory=" in text,
                  f"{where}: no StateDirectory")
            # systemd-analyze checks that ExecStart exists: point it at the built binaries.
            out_name = name.replace("@.service", "@edge-1.service")
            with open(os.path.join(tmp, out_name), "w") as f:
                f.write(text.replace("/usr/local/bin/", os.path.abspath(bin_dir) + "/"))
            verify.append(os.path.join(tmp, out_name))
        if shutil.which("systemd-analyze"):
            r = subprocess.run(["systemd-analyze", "verify", *verify], capture_output=True,
                               text=True, timeout=60)
            # Unknown or misspelled keys are only warnings there: any output fails here.
            relevant = [l for l in (r.stdout + r.stderr).splitlines()
                        if l.strip() and "relay" in l]
            check(r.returncode == 0 and not relevant,
                  "systemd-analyze verify:\n" + r.stdout + r.stderr)
        else:
            print("note: systemd-analyze not found, unit files checked by this script only")
    finally:
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    bin_dir = sys.argv[1]
    for b in BINARIES:
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            print(f"no {b} in {bin_dir}")
            return 1
    check_k8s(bin_dir)
    check_compose(bin_dir)
    check_systemd(bin_dir)
    for f in failures:
        print("FAIL:", f)
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
