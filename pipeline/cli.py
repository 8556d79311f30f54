"""The `netsem` command line. Exit codes: 0 success, 1 a check found a difference or a
connection is denied where that is the answer asked for, 2 bad input."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys

from .cluster import ClusterConfig, DEFAULT_POD_CIDRS, load_cluster
from .errors import ManifestErrors

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A bad argument: message to stderr, exit 2."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="PATH",
                   help="manifest file or directory (recursive, sorted), or - for stdin; repeatable. "
                        "YAML or JSON, multi-document, kind: List and *List dumps as `kubectl get -o yaml` prints")
    p.add_argument("--pod-cidr", action="append", metavar="CIDR",
                   help=f"CIDR to allocate pod addresses from for pods with none in their manifest; "
                        f"give one IPv4 and/or one IPv6 (dual-stack). Default {DEFAULT_POD_CIDRS[0]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsem",
        description="Kubernetes networking semantics: what NetworkPolicies really allow, "
                    "computed from ordinary manifests by the reference model.")
    parser.add_argument("--version", action="version", version=f"netsem {__import__('pipeline').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("reach", help="reachability matrix of every pod to every pod",
                       description="Print the reachability matrix (rows: from, columns: to) for each "
                                   "protocol and port. '.' allowed, 'X' denied.")
    _common(r)
    r.add_argument("--ports", help="comma-separated ports (default: the ports the pods' containers declare)")
    r.add_argument("--protocols", default=None,
                   help="comma-separated subset of TCP,UDP,SCTP (default: TCP,UDP,SCTP with --ports; "
                        "with declared ports, the declared protocols)")
    r.add_argument("-n", "--namespace", help="only pods of this namespace (as sources and destinations)")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.set_defaults(func=cmd_reach)

    v = sub.add_parser("verdict", help="explain one connection",
                       description="Open one connection in the model and explain the verdict: which "
                                   "policies select each end, and which rule allowed it (or that none did). "
                                   "Exit 0 when allowed, 1 when denied.")
    _common(v)
    v.add_argument("--from", dest="src", required=True, metavar="SRC", help="ns/pod or an IP address")
    v.add_argument("--to", dest="dst", required=True, metavar="DST",
                   help="ns/pod, ns/service (when no such pod), or an IP address (pod, service or external)")
    v.add_argument("--protocol", default="TCP", type=str.upper, choices=("TCP", "UDP", "SCTP", "ICMP"))
    v.add_argument("--port", type=int, default=None, help="destination port (required except for ICMP)")
    v.add_argument("-o", "--output", choices=("text", "json"), default="text")
    v.set_defaults(func=cmd_verdict)

    pl = sub.add_parser("policies", help="which policies apply to a pod or namespace",
                        description="Show how policies relate to a pod or a namespace: which select it "
                                    "(per direction) and which admit it as a peer.")
    _common(pl)
    g = pl.add_mutually_exclusive_group(required=True)
    g.add_argument("--pod", metavar="NS/POD")
    g.add_argument("--namespace", metavar="NS")
    pl.add_argument("-o", "--output", choices=("text", "json"), default="text")
    pl.set_defaults(func=cmd_policies)

    from .replay_cli import add_replay_parser   # the packet-level commands
    add_replay_parser(sub, _common)
    from .switch_cli import add_switch_parsers  # the soft switch: up, down, exec, probe
    add_switch_parsers(sub, _common)
    return parser


def load(args):
    config = ClusterConfig(pod_cidrs=tuple(args.pod_cidr)) if args.pod_cidr else ClusterConfig()
    for c in config.pod_cidrs:
        try:
            ipaddress.ip_network(c)
        except ValueError:
            raise UsageError(f"--pod-cidr: {c!r} is not a valid CIDR")
    cluster, notes = load_cluster(args.files, config)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return cluster


def _parse_ports(text: str) -> list[int]:
    ports = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, _, hi = part.partition("-")
            if not (lo.isdigit() and hi.isdigit()) or not 1 <= int(lo) <= int(hi) <= 65535:
                raise UsageError(f"--ports: bad range {part!r}")
            ports.extend(range(int(lo), int(hi) + 1))
        elif part.isdigit() and 1 <= int(part) <= 65535:
            ports.append(int(part))
        else:
            raise UsageError(f"--ports: {part!r} is not a port number (1-65535)")
    return ports


def _parse_protocols(text):
    if text is None:
        return None
    out = [p.strip().upper() for p in text.split(",") if p.strip()]
    for p in out:
        if p not in ("TCP", "UDP", "SCTP"):
            raise UsageError(f"--protocols: {p!r} is not one of TCP, UDP, SCTP")
    return out


def cmd_reach(args) -> int:
    from .reach import ReachComputer, declared_ports
    from .render import print_matrix_table, stream_matrix_json
    cluster = load(args)
    protocols = _parse_protocols(args.protocols)
    if args.namespace and args.namespace not in cluster.namespaces:
        raise UsageError(f"-n: no namespace {args.namespace!r} in the manifests")
    pods = cluster.pod_list(args.namespace)
    if args.ports:
        combos = [(proto, port) for proto in (protocols or ["TCP", "UDP", "SCTP"])
                  for port in _parse_ports(args.ports)]
    else:
        combos = declared_ports(cluster, protocols)
        if not combos:
            print("note: no pod declares a container port; pass --ports", file=sys.stderr)
    computer = ReachComputer(cluster, pods)
    matrices = (computer.matrix(proto, port) for proto, port in combos)
    if args.output == "json":
        stream_matrix_json(matrices, sys.stdout)
    else:
        for i, m in enumerate(matrices):
            if i:
                print()
            print_matrix_table(m, sys.stdout)
    return 0


def _resolve_end(cluster, text: str, what: str):
    """-> ('pod', Pod) | ('service', key) | ('ip', address)"""
    try:
        return ("ip", ipaddress.ip_address(text))
    except ValueError:
        pass
    if "/" not in text:
        raise UsageError(f"{what}: {text!r} is neither ns/pod nor an IP address")
    if text in cluster.pods:
        return ("pod", cluster.pods[text])
    if text in cluster.services and what == "--to":
        return ("service", text)
    raise UsageError(f"{what}: no pod {text!r} in the manifests"
                     + (" (nor a service)" if what == "--to" else ""))


def cmd_verdict(args) -> int:
    from .connections import (Connections, open_connection_with_ip_addresses,
                              open_pod_connection, open_service_connection)
    cluster = load(args)
    if args.port is None:
        if args.protocol != "ICMP":
            raise UsageError("--port is required for TCP, UDP and SCTP")
        args.port = 0
    elif not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 1 and 65535")
    src = _resolve_end(cluster, args.src, "--from")
    dst = _resolve_end(cluster, args.dst, "--to")
    conns = Connections()
    if src[0] == "pod" and src[1].host_network:
        src = ("ip", src[1].ips[0])
    if dst[0] == "pod" and dst[1].host_network:
        dst = ("ip", dst[1].ips[0])
    if src[0] == "pod" and dst[0] == "pod":
        v = open_pod_connection(cluster, conns, src[1], dst[1], args.protocol, args.port)
    elif src[0] == "pod" and dst[0] == "service":
        v = open_service_connection(cluster, conns, src[1], dst[1], args.protocol, args.port)
    else:
        if dst[0] == "service":
            ips = cluster.lookup_service_to_address_mappings(dst[1])
            if not ips:
                raise UsageError(f"--to: service {dst[1]} has no cluster IP")
            dst = ("ip", ips[0])
        s = src[1].ips[0] if src[0] == "pod" else src[1]
        d = dst[1].ips[0] if dst[0] == "pod" else dst[1]
        if src[0] == "pod" and dst[0] == "ip":
            s = src[1].address(d.version) or s
        if dst[0] == "pod" and src[0] == "ip":
            d = dst[1].address(s.version) or d
        v = open_connection_with_ip_addresses(cluster, conns, s, d, args.protocol, args.port)
    if args.output == "json":
        json.dump(v.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(v.explain())
    return 0 if v.allowed else 1


def cmd_policies(args) -> int:
    from .relations import namespace_relations, pod_relations
    cluster = load(args)
    if args.pod:
        if args.pod not in cluster.pods:
            raise UsageError(f"--pod: no pod {args.pod!r} in the manifests")
        rel = pod_relations(cluster, cluster.pods[args.pod])
    else:
        if args.namespace not in cluster.namespaces:
            raise UsageError(f"--namespace: no namespace {args.namespace!r} in the manifests")
        rel = namespace_relations(cluster, args.namespace)
    if args.output == "json":
        json.dump(rel.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(rel.render())
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ManifestErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        print(f"netsem: {len(e.errors)} error(s); nothing applied", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as e:
        print(f"netsem {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
