"""From loaded objects to a Cluster: the order the API server's controllers would
apply them in, and the address allocation a CNI and the service IPAM would do.

All or nothing: every problem is collected, with the document it comes from, and
ManifestErrors is raised before anything is returned."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Iterable

from ..model.addresses import DEFAULT_DOMAIN, AddressError, Attachment, ServiceVIP
from ..model.cluster import Cluster, ClusterConfig
from ..model.admin import AdminPolicy
from ..model.objects import (L4_PROTOCOLS, NODE_PORT_RANGE, EndpointSlice, IPAddress, MultiNetworkPolicy,
                             Namespace, NetworkAttachmentDefinition, NetworkPolicy, Node, Pod, Service)
from .errors import ManifestError, ManifestErrors
from .manifests import LoadResult, load
from .admin import add_admin_policies
from .networks import add_multi_network_policies, attach_networks


def build_cluster(result: LoadResult, config: ClusterConfig | None = None,
                  previous: Cluster | None = None) -> Cluster:
    """Applies loaded objects in a fixed order (namespaces, pods, slices, services,
    policies), allocating addresses to pods and services that have none. Raises
    ManifestErrors, with nothing applied, on a duplicate address. `previous`: the
    generation this one follows; its interfaces keep their switch ports and its pods
    their allocated addresses, so a running switch rewires only what came and went."""
    config = config or ClusterConfig()
    cluster = Cluster(config)
    if previous is not None:
        cluster.plane.keep_ports(previous.plane.port_map())
    errors: list[ManifestError] = []
    by_kind: dict[type, list] = {}
    for doc, obj in result.objects:
        by_kind.setdefault(type(obj), []).append((doc, obj))

    def err(doc, field, msg):
        errors.append(ManifestError(doc.source, doc.index,
                                    (f"items[{doc.item}]." if doc.item is not None else "") + field, msg))

    for _, ns in by_kind.get(Namespace, []):
        cluster.add_namespace(ns)
    for doc, node in sorted(by_kind.get(Node, []), key=lambda dn: dn[1].name):
        try:
            cluster.add_node(node)
        except AddressError as e:
            err(doc, "status.addresses", f"Duplicate value: {e}")

    # A finished pod's address is free (kubelet released it): dumps of real clusters
    # with completed Jobs show a running pod on the same address.
    pods = [(d, p) for d, p in by_kind.get(Pod, [])]
    taken: dict[IPAddress, tuple] = {}
    for doc, pod in pods:
        if pod.host_network or pod.finished:
            continue
        for i, ip in enumerate(pod.ips):
            if ip in taken and taken[ip][1].key != pod.key:
                other_doc, other = taken[ip]
                err(doc, f"status.podIPs[{i}].ip",
                    f"Duplicate value: {str(ip)!r}: already assigned to pod {other.key} "
                    f"({other_doc.source}:{other_doc.index})")
            taken[ip] = (doc, pod)
    kept: dict[str, tuple] = {}
    for doc, pod in pods:
        old = previous.pods.get(pod.key) if previous is not None else None
        if old is not None and not pod.ips and not pod.finished and not pod.host_network and \
                old.ips and not old.host_network and not any(ip in taken for ip in old.ips):
            kept[pod.key] = old.ips
    reserved = set(taken) | {ip for ips in kept.values() for ip in ips}
    allocators = [_Allocator(c, set(reserved)) for c in config.pod_cidrs]
    final_pods = {}
    for doc, pod in sorted(pods, key=lambda dp: (dp[1].namespace, dp[1].name)):
        if not pod.ips and not pod.finished:
            if pod.host_network:
                # A hostNetwork pod has its node's address: the Node's, when the
                # manifests have it, else the configured node's.
                node = cluster.nodes.get(pod.node_name or "")
                pod = replace(pod, ips=node.addresses[:1] if node is not None and node.addresses else
                              tuple(ipaddress.ip_address(a) for a in config.node_ips[:1]))
            else:
                pod = replace(pod, ips=kept.get(pod.key) or tuple(a.next() for a in allocators))
        final_pods[pod.key] = (doc, pod)

    slices = by_kind.get(EndpointSlice, [])
    services = by_kind.get(Service, [])
    svc_taken = {ip for _, s in services for ip in s.cluster_ips}
    for doc, s in services:
        for ip in s.cluster_ips:
            if ip in taken:
                err(doc, "spec.clusterIPs", f"Duplicate value: {str(ip)!r}: assigned to a pod")
    kept_vips = {}
    for _, s in services:
        old = previous.services.get(s.key) if previous is not None else None
        if old is not None and not s.cluster_ips and old.cluster_ips and not (set(old.cluster_ips) & svc_taken):
            kept_vips[s.key] = old.cluster_ips
    svc_alloc = _Allocator(config.service_cidrs[0], svc_taken | {ip for v in kept_vips.values() for ip in v})
    services = _allocate_node_ports(services, err)
    if errors:
        raise ManifestErrors(errors)

    for doc, pod in sorted(final_pods.values(), key=lambda dp: dp[1].key):
        try:
            cluster.add_pod(pod)
        except AddressError as e:
            err(doc, "status.podIPs", f"Duplicate value: {e}")
    attach_networks(cluster, by_kind.get(NetworkAttachmentDefinition, []), list(final_pods.values()), err)
    for _, s in slices:
        cluster.add_endpoint_slice(s)
    for doc, svc in sorted(services, key=lambda ds: ds[1].key):
        if not svc.cluster_ips and not svc.headless and svc.type != "ExternalName":
            svc = replace(svc, cluster_ips=kept_vips.get(svc.key) or (svc_alloc.next(),))
        clashes = [(i, ip) for i, ip in enumerate(svc.external_ips)
                   if cluster.plane.lookup(DEFAULT_DOMAIN, ip) is not None]
        for i, ip in clashes:
            err(doc, f"spec.externalIPs[{i}]", f"Duplicate value: {str(ip)!r}: already the address of "
                f"{_what(cluster.plane.lookup(DEFAULT_DOMAIN, ip))}")
        if clashes:
            continue
        try:
            cluster.add_service(svc)
        except AddressError as e:
            err(doc, "spec.clusterIPs", f"Duplicate value: {e}")
    for _, pol in by_kind.get(NetworkPolicy, []):
        cluster.add_network_policy(pol)
    add_multi_network_policies(cluster, by_kind.get(MultiNetworkPolicy, []), err)
    add_admin_policies(cluster, by_kind.get(AdminPolicy, []), err, result.notes)
    if errors:
        raise ManifestErrors(errors)
    return cluster


def _what(entry) -> str:
    if isinstance(entry, Attachment):
        return f"pod {entry.pod}"
    if isinstance(entry, ServiceVIP):
        return f"service {entry.service}"
    return f"node {entry.node}"


def _allocate_node_ports(services: list, err) -> list:
    """NodePort and LoadBalancer Services: a nodePort given is kept (two Services may
    not give the same one for one protocol); the others get the lowest free port of
    the range, in Service name order, as the API server's allocator would for an
    empty cluster."""
    lo, hi = NODE_PORT_RANGE
    used: dict[tuple, str] = {}
    for doc, svc in services:
        for i, p in enumerate(svc.ports):
            if p.node_port is None:
                continue
            other = used.setdefault((p.node_port, p.protocol), svc.key)
            if other != svc.key:
                err(doc, f"spec.ports[{i}].nodePort", f"Invalid value: {p.node_port}: provided port is "
                    f"already allocated (to service {other})")
    free = (n for n in range(lo, hi + 1) if not any((n, pr) in used for pr in L4_PROTOCOLS))
    out = []
    for doc, svc in sorted(services, key=lambda ds: ds[1].key):
        if svc.node_ports and any(p.node_port is None for p in svc.ports):
            ports = []
            for p in svc.ports:
                if p.node_port is None:
                    n = next(free, None)
                    if n is None:
                        err(doc, "spec.ports", f"Internal error: the node port range {lo}-{hi} is full")
                        n = 0
                    p = replace(p, node_port=n)
                ports.append(p)
            svc = replace(svc, ports=tuple(ports))
        out.append((doc, svc))
    return out


class _Allocator:
    """Deterministic: the lowest free host address of the CIDR, in pod name order."""

    def __init__(self, cidr: str, taken: set):
        self.net = ipaddress.ip_network(cidr)
        self.taken = taken
        self.cursor = 1

    def next(self) -> IPAddress:
        while self.cursor < self.net.num_addresses - 1:
            ip = self.net.network_address + self.cursor
            self.cursor += 1
            if ip not in self.taken:
                self.taken.add(ip)
                return ip
        raise ManifestErrors([ManifestError("-", 0, "-", f"pod CIDR {self.net} is exhausted")])


def load_cluster(paths: Iterable[str], config: ClusterConfig | None = None, stdin=None,
                 previous: Cluster | None = None, texts: dict | None = None):
    """Loads manifests into a new Cluster: (cluster, notes). Raises ManifestErrors.
    texts: filled with each file's text as read (manifests.load)."""
    result = load(paths, stdin=stdin, texts=texts)
    return build_cluster(result, config, previous), result.notes
