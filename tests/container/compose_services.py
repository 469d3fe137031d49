#!/usr/bin/python3
"""Turns deploy/compose/compose.yaml into `podman run` arguments for one service, on the host's
network (what these machines support): each service's --port/--grpc-port becomes a free port
given on the command line, `controlplane:PORT` becomes 127.0.0.1 with the control plane's port,
and named volumes get a per-run prefix. So the container test runs the compose file's own
commands, volumes and healthchecks.

usage: compose_services.py COMPOSE SERVICE PREFIX PORTS_JSON
  PORTS_JSON: {"controlplane": {"--port": 1, "--grpc-port": 2}, "dataplane-1": {...}, ...}
prints one argument per line: the volume options, then `--`, then the command, then `--`, then the
healthcheck command.
"""
import json
import sys

import yaml


def main():
    compose, service, prefix, ports_json = sys.argv[1:5]
    with open(compose) as f:
        doc = yaml.safe_load(f)
    ports = json.loads(ports_json)
    s = doc["services"][service]
    out = []
    for v in s.get("volumes", []):
        parts = v.split(":")
        out += ["-v", ":".join([prefix + parts[0]] + parts[1:])]
    out.append("--")
    for arg in s["command"]:
        name, eq, value = arg.partition("=")
        if eq and name in ports.get(service, {}):
            arg = f"{name}={ports[service][name]}"
        elif eq and name == "--control-plane":
            host = value.rpartition(":")[0]
            arg = f"{name}=127.0.0.1:{ports[host]['--grpc-port']}"
        out.append(arg)
    out.append("--")
    out += s["healthcheck"]["test"][1:]
    print("\n".join(str(x) for x in out))


if __name__ == "__main__":
    main()
