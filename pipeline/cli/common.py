"""What every command shares: the manifest arguments, loading, argument parsing
helpers, and UsageError (exit 2)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from ..load.build import load_cluster
from ..model.cluster import DEFAULT_NODE_IPS, DEFAULT_POD_CIDRS, ClusterConfig
from ..model.objects import L4_PROTOCOLS

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A bad argument: message to stderr, exit 2."""


def add_manifest_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-f", "--filename", dest="files", action="append", required=required, metavar="PATH",
                   help="manifest file or directory (recursive, sorted), or - for stdin; repeatable. "
                        "YAML or JSON, multi-document, kind: List and *List dumps as `kubectl get -o yaml` prints")
    add_cluster_args(p)


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """How the cluster is modelled where its objects do not say (files or the API)."""
    p.add_argument("--pod-cidr", action="append", metavar="CIDR",
                   help=f"CIDR to allocate pod addresses from for pods with none in their manifest; "
                        f"give one IPv4 and/or one IPv6 (dual-stack). Default {DEFAULT_POD_CIDRS[0]}")
    p.add_argument("--node-address", action="append", metavar="IP",
                   help=f"the node's address (where NodePorts are open; hostNetwork pods without one in "
                        f"their manifest get it); give one IPv4 and/or one IPv6. Default "
                        f"{' and '.join(DEFAULT_NODE_IPS)}")
    p.add_argument("--police-node-traffic", action="store_true",
                   help="police traffic from a node (and its hostNetwork pods) to the pods on it like any "
                        "other; by default it is always allowed, as Kubernetes requires (kubelet probes)")
    p.add_argument("--route-pod-addresses", action="store_true",
                   help="let the outside (the uplink) open connections straight to pod addresses, as a "
                        "routed pod network does; by default it reaches pods only through Services "
                        "(NodePorts, externalIPs) and such packets drop pod_address_not_routed")


def cluster_config(args) -> ClusterConfig:
    pod_cidrs = tuple(args.pod_cidr) if args.pod_cidr else ClusterConfig().pod_cidrs
    for c in pod_cidrs:
        try:
            ipaddress.ip_network(c)
        except ValueError:
            raise UsageError(f"--pod-cidr: {c!r} is not a valid CIDR")
    node_ips = tuple(args.node_address) if getattr(args, "node_address", None) else DEFAULT_NODE_IPS
    families = []
    for a in node_ips:
        try:
            families.append(ipaddress.ip_address(a).version)
        except ValueError:
            raise UsageError(f"--node-address: {a!r} is not an IP address")
    if len(set(families)) != len(families):
        raise UsageError("--node-address: at most one IPv4 and one IPv6 address")
    return ClusterConfig(pod_cidrs=pod_cidrs, node_ips=node_ips, police_node_traffic=args.police_node_traffic,
                         route_pod_addresses=getattr(args, "route_pod_addresses", False))


def load(args):
    cluster, notes = load_cluster(args.files, cluster_config(args))
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return cluster


def parse_ports(text: str) -> list[int]:
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


def parse_protocols(text):
    if text is None:
        return None
    out = [p.strip().upper() for p in text.split(",") if p.strip()]
    for p in out:
        if p not in L4_PROTOCOLS:
            raise UsageError(f"--protocols: {p!r} is not one of {', '.join(L4_PROTOCOLS)}")
    return out


def network_named(cluster, ref):
    """--network NS/NAME: the NetworkAttachmentDefinition's network; None: the cluster's."""
    if ref is None:
        return None
    if "/" not in ref:
        raise UsageError(f"--network: {ref!r} is not NS/NAME (a NetworkAttachmentDefinition)")
    net = cluster.network_of_definition(ref)
    if net is None:
        raise UsageError(f"--network: no NetworkAttachmentDefinition {ref!r} in the manifests")
    return net

