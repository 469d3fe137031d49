#!/usr/bin/python3
"""Turns a service of deploy/compose/compose.yaml, or a workload of deploy/k8s/*.yaml, into
`podman run` arguments on the host's network (what these machines support), so the container
test runs the files' own commands, volumes and healthchecks:
- the listening ports (--port, --grpc-port, --internal-grpc-port) become the free ports given;
- an address of another service or workload (--control-plane=controlplane:50051, or
  relay-controlplane-internal:50052) becomes 127.0.0.1 with that workload's port;
- Kubernetes' $(POD_NAME) and $(POD_IP) become the workload's name and 127.0.0.1;
- compose's named volumes get a per-run prefix, its ${VAR:-default} their value as Compose would.

usage: deploy_commands.py compose|k8s FILE NAME PREFIX PORTS_JSON
  PORTS_JSON: {"NAME": {"--port": 1, "--grpc-port": 2}, ...}; for k8s, also
  {"services": {"relay-controlplane-internal": ["relay-controlplane", "--internal-grpc-port"]}}
prints one argument per line: volume options, `--`, the command, `--`, the health command.
"""
import json
import os
import re
import sys

import yaml


def substitute(argv, name, ports, addresses):
    out = []
    for arg in argv:
        flag, eq, value = str(arg).partition("=")
        if eq and flag in ports.get(name, {}):
            arg = f"{flag}={ports[name][flag]}"
        elif eq and flag == "--control-plane":
            host = value.rpartition(":")[0]
            target, target_flag = addresses[host]
            arg = f"{flag}=127.0.0.1:{ports[target][target_flag]}"
        arg = arg.replace("$(POD_NAME)", name).replace("$(POD_IP)", "127.0.0.1")
        out.append(arg)
    return out


def compose(path, name, prefix, ports):
    with open(path) as f:
        s = yaml.safe_load(f)["services"][name]
    out = []
    for v in s.get("volumes", []):
        parts = v.split(":")
        out += ["-v", ":".join([prefix + parts[0]] + parts[1:])]
    out.append("--")
    command = [re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m[1], m[2] or ""), a)
               for a in s["command"]]
    out += substitute(command, name, ports, {"controlplane": ("controlplane", "--grpc-port")})
    return out + ["--"] + s["healthcheck"]["test"][1:]


def k8s(path, name, prefix, ports):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    w = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
             and d["metadata"]["name"] == name)
    c = w["spec"]["template"]["spec"]["containers"][0]
    out = []
    for m in c.get("volumeMounts", []):
        # The Secret, the claim and the emptyDir become podman volumes at the same paths.
        out += ["-v", f"{prefix}{name}-{m['name']}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
    out.append("--")
    addresses = {svc: tuple(t) for svc, t in ports.get("services", {}).items()}
    out += substitute(list(c["command"]) + list(c.get("args", [])), name, ports, addresses)
    return out + ["--", "relay-healthcheck", c["readinessProbe"]["httpGet"]["path"]]


def main():
    mode, path, name, prefix, ports_json = sys.argv[1:6]
    fn = {"compose": compose, "k8s": k8s}[mode]
    print("\n".join(str(x) for x in fn(path, name, prefix, json.loads(ports_json))))


if __name__ == "__main__":
    main()
