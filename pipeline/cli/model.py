"""The model's commands: `reach`, `verdict`, `policies`."""

from __future__ import annotations

import ipaddress
import json
import sys

from .common import UsageError, add_manifest_args, load, network_named, parse_ports, parse_protocols


def add_model_parsers(sub) -> None:
    r = sub.add_parser("reach", help="reachability matrix of every pod to every pod",
                       description="Print the reachability matrix (rows: from, columns: to) for each "
                                   "protocol and port. '.' allowed, 'X' denied.")
    add_manifest_args(r)
    r.add_argument("--ports", help="comma-separated ports (default: the ports the pods' containers declare)")
    r.add_argument("--protocols", default=None,
                   help="comma-separated subset of TCP,UDP,SCTP (default: TCP,UDP,SCTP with --ports; "
                        "with declared ports, the declared protocols)")
    r.add_argument("-n", "--namespace", help="only pods of this namespace (as sources and destinations)")
    r.add_argument("--network", metavar="NS/NAME",
                   help="the network of this NetworkAttachmentDefinition instead of the cluster network: the "
                        "pods attached to it, their addresses on it, its MultiNetworkPolicies")
    r.add_argument("--services", action="store_true",
                   help="also every pod to every port of every Service with a virtual IP (all their ports, "
                        "whatever --ports says), policed against each ready backend; JSON cells gain "
                        "\"service\" and \"backends\"")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table for people, json for programs (default table)")
    r.set_defaults(func=cmd_reach)

    v = sub.add_parser("verdict", help="explain one connection",
                       description="Open one connection in the model and explain the verdict: which "
                                   "policies select each end, and which rule allowed it (or that none did). "
                                   "Exit 0 when allowed, 1 when denied.")
    add_manifest_args(v)
    v.add_argument("--from", dest="src", required=True, metavar="SRC", help="ns/pod or an IP address")
    v.add_argument("--to", dest="dst", required=True, metavar="DST",
                   help="ns/pod, ns/service (when no such pod), or an IP address (pod, service or external)")
    v.add_argument("--protocol", default="TCP", type=str.upper, choices=("TCP", "UDP", "SCTP", "ICMP"),
                   help="default TCP; ICMP takes no port")
    v.add_argument("--port", type=int, default=None, help="destination port, 1-65535 (required except for ICMP)")
    v.add_argument("--network", metavar="NS/NAME",
                   help="decide on the network of this NetworkAttachmentDefinition: pods are reached at their "
                        "addresses on it, IP addresses are in its IP address domain (default: the cluster network)")
    v.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text for people, json for programs (default text)")
    v.set_defaults(func=cmd_verdict)

    pl = sub.add_parser("policies", help="which policies apply to a pod or namespace",
                        description="Show how policies relate to a pod or a namespace: which select it "
                                    "(per direction) and which admit it as a peer.")
    add_manifest_args(pl)
    g = pl.add_mutually_exclusive_group(required=True)
    g.add_argument("--pod", metavar="NS/POD", help="the policies that select this pod and those that admit it as a peer")
    g.add_argument("--namespace", metavar="NS", help="every policy of this namespace and the pods it selects")
    pl.add_argument("-o", "--output", choices=("text", "json"), default="text",
                    help="text for people, json for programs (default text)")
    pl.set_defaults(func=cmd_policies)


def cmd_reach(args) -> int:
    from ..model.reach import ReachComputer, declared_ports, service_reach
    from .render import print_matrix_table, print_service_table, service_cell_dict, stream_matrix_json
    cluster = load(args)
    protocols = parse_protocols(args.protocols)
    if args.namespace and args.namespace not in cluster.namespaces:
        raise UsageError(f"-n: no namespace {args.namespace!r} in the manifests")
    pods = cluster.pod_list(args.namespace)
    if args.ports:
        combos = [(proto, port) for proto in (protocols or ["TCP", "UDP", "SCTP"])
                  for port in parse_ports(args.ports)]
    else:
        combos = declared_ports(cluster, protocols)
        if not combos:
            print("note: no pod declares a container port; pass --ports", file=sys.stderr)
    net = network_named(cluster, getattr(args, "network", None))
    if net is not None:
        from ..model.reach import network_matrix
        if args.services:
            raise UsageError("--services: Services are reachable on the cluster network only")
        matrices = (network_matrix(cluster, net.name, proto, port, pods) for proto, port in combos)
    else:
        computer = ReachComputer(cluster, pods)
        matrices = (computer.matrix(proto, port) for proto, port in combos)
    services = service_reach(cluster, pods, args.namespace) if args.services else None
    if args.output == "json":
        stream_matrix_json(matrices, sys.stdout, map(service_cell_dict, services or ()))
    else:
        for i, m in enumerate(matrices):
            if i:
                print()
            print_matrix_table(m, sys.stdout)
        if services is not None:
            print()
            print_service_table(services, sys.stdout)
    return 0


def _on_network(cluster, end, net, what: str):
    """An end of --network's verdict: a pod's address on the network, or an address."""
    if end[0] == "service":
        raise UsageError(f"{what}: Services are reachable on the cluster network only")
    if end[0] == "ip":
        return end[1]
    a = next((a for a in cluster.plane.attachments_of(end[1].key) if a.network == net.name), None)
    if a is None or not cluster.plane.addresses(a):
        raise UsageError(f"{what}: pod {end[1].key} is not attached to network {net.name}")
    return cluster.plane.addresses(a)[0]


def _resolve_end(cluster, text: str, what: str):
    """ns/pod -> the address the pod is reached at (through the address plane);
    ns/service (for --to) -> ('service', key); an IP address -> itself."""
    try:
        return ("ip", ipaddress.ip_address(text))
    except ValueError:
        pass
    if "/" not in text:
        raise UsageError(f"{what}: {text!r} is neither ns/pod nor an IP address")
    if text in cluster.pods:
        pod = cluster.pods[text]
        if pod.finished:
            raise UsageError(f"{what}: pod {text} has finished ({pod.phase}): it holds no address")
        return ("pod", pod)
    if text in cluster.services and what == "--to":
        return ("service", text)
    raise UsageError(f"{what}: no pod {text!r} in the manifests"
                     + (" (nor a service)" if what == "--to" else ""))


def cmd_verdict(args) -> int:
    from ..model.connections import (Connections, open_connection_with_ip_addresses,
                                     open_pod_connection, open_service_connection)
    cluster = load(args)
    if args.port is None:
        if args.protocol != "ICMP":
            raise UsageError("--port is required for TCP, UDP and SCTP")
        args.port = 0
    elif args.protocol == "ICMP":
        raise UsageError("--port: ICMP has no ports")
    elif not 1 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a port number (1-65535)")
    src = _resolve_end(cluster, args.src, "--from")
    dst = _resolve_end(cluster, args.dst, "--to")
    conns = Connections()
    net = network_named(cluster, args.network)
    if net is not None:
        s, d = _on_network(cluster, src, net, "--from"), _on_network(cluster, dst, net, "--to")
        v = open_connection_with_ip_addresses(cluster, conns, s, d, args.protocol, args.port, net.domain, net.domain)
    elif src[0] == "pod" and dst[0] == "pod":
        v = open_pod_connection(cluster, conns, src[1], dst[1], args.protocol, args.port)
    elif src[0] == "pod" and dst[0] == "service" and cluster.attachment(src[1].key) is not None:
        v = open_service_connection(cluster, conns, src[1], dst[1], args.protocol, args.port)
    else:
        if dst[0] == "service":
            ips = cluster.plane.lookup_service_to_address_mappings(dst[1])
            if not ips:
                raise UsageError(f"--to: service {dst[1]} has no cluster IP")
            dst = ("ip", ips[0][1])
        # A pod end is the address the plane has for it, of the other end's family.
        d = cluster.pod_address(dst[1].key) if dst[0] == "pod" else dst[1]
        s = cluster.pod_address(src[1].key, d.version) if src[0] == "pod" else src[1]
        if src[0] == "ip" and dst[0] == "pod":
            d = cluster.pod_address(dst[1].key, s.version) or d
        if s is None or d is None:
            raise UsageError("--from/--to: the two ends have no addresses of one family")
        v = open_connection_with_ip_addresses(cluster, conns, s, d, args.protocol, args.port)
    if args.output == "json":
        json.dump(v.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(v.explain())
    return 0 if v.allowed else 1


def cmd_policies(args) -> int:
    from ..model.relations import namespace_relations, pod_relations
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
