"""The seed's connection primitives (004): newConnection/deleteConnection,
openPodConnection, openServiceConnection and openConnectionWithIpAddresses, each
returning <allowed, connection> plus an explanation of the decision.

Every primitive resolves its two ends through the address plane and hands them to one
decision, `_decide`: the own-address and resident-node rules come from the plane,
the rest from the policy filter system. The packet oracle calls these primitives for
every new connection, so the model and the oracle cannot drift apart."""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field
from typing import Optional, Union

from .addresses import DEFAULT_DOMAIN, Attachment, Entry, NodeAddress, ServiceVIP
from .cluster import Cluster
from .objects import IPAddress, Pod
from .services import Backend, node_port_service, ready_backends, select_one_backend, service_backends
from .policy import (DirectionVerdict, allow_new_connection_from_ip_address,
                     allow_new_connection_from_pod, allow_new_connection_to_ip_address,
                     allow_new_connection_to_pod)

Endpoint = Union[str, IPAddress]     # "ns/pod" or an address outside the cluster


@dataclass(frozen=True)
class Connection:
    connection_id: int
    source: Endpoint
    destination: Endpoint
    protocol: str
    port: int


@dataclass
class Verdict:
    """The answer of an open*Connection primitive: <allowed, connection> and why."""

    allowed: bool
    connection: Optional[Connection]
    source: str
    destination: str
    protocol: str
    port: int
    egress: Optional[DirectionVerdict] = None
    ingress: Optional[DirectionVerdict] = None
    notes: list[str] = field(default_factory=list)
    backend: Optional[str] = None        # openServiceConnection: the pod chosen (or address)
    backend_port: Optional[int] = None   # and its target port
    apart: bool = False                  # the ends are on networks that never meet

    @property
    def connection_id(self) -> int:
        return self.connection.connection_id if self.connection else 0

    def rule_ids(self) -> tuple[Optional[int], Optional[int]]:
        """(egress rule id, ingress rule id) of the rules that decided, as the C tables
        number them; None where no rule did."""
        e = self.egress.rule_id if self.egress is not None else None
        i = self.ingress.rule_id if self.ingress is not None else None
        return e, i

    def explain(self) -> str:
        head = "ALLOWED" if self.allowed else "DENIED"
        lines = [f"{head}: {self.source} -> {self.destination} {self.protocol}/{self.port}"]
        lines += [f"  {n}" for n in self.notes]
        for d in (self.egress, self.ingress):
            if d is not None:
                lines.append("  " + d.explain())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"from": self.source, "to": self.destination, "protocol": self.protocol,
                "port": self.port, "allowed": self.allowed, "connectionId": self.connection_id,
                "notes": self.notes, "backend": self.backend, "backendPort": self.backend_port,
                "egress": self.egress.to_dict() if self.egress else None,
                "ingress": self.ingress.to_dict() if self.ingress else None}


class Connections:
    """newConnection / deleteConnection: the set of open connections."""

    def __init__(self):
        self._ids = itertools.count(1)
        self.open: dict[int, Connection] = {}

    def new_connection(self, source: Endpoint, destination: Endpoint, protocol: str, port: int) -> Connection:
        conn = Connection(next(self._ids), source, destination, protocol, port)
        self.open[conn.connection_id] = conn
        return conn

    def delete_connection(self, connection_id: int) -> None:
        self.open.pop(connection_id, None)

    close_pod_connection = delete_connection


def _name(cluster: Cluster, entry: Optional[Entry], ip) -> str:
    if isinstance(entry, Attachment):
        return f"{entry} ({ip})"
    if isinstance(entry, ServiceVIP):
        return f"{entry.service} ({ip})"
    if isinstance(entry, NodeAddress):
        return f"node {entry.node} ({ip})"
    return str(ip)


def _decide(cluster: Cluster, v: Verdict, src: Optional[Entry], src_ip, dst: Optional[Entry], dst_ip,
            protocol: str, port: int) -> None:
    """The one decision every primitive ends in: both ends are what the address plane
    says sits at their addresses (an Attachment is a pod's interface)."""
    plane = cluster.plane
    src_pod = cluster.pods[src.pod] if isinstance(src, Attachment) else None
    dst_pod = cluster.pods[dst.pod] if isinstance(dst, Attachment) else None
    # Each end's policies are its own network's: NetworkPolicies police the cluster
    # network, each other network its own MultiNetworkPolicies (001).
    src_net, dst_net = plane.network_of(src), plane.network_of(dst)
    across = src_net != dst_net
    if plane.own_address(src, dst):
        v.notes.append("traffic to one's own address is not policed")
        v.allowed = True
    elif not cluster.networks_meet(src_net, dst_net):
        v.apart = True
        v.notes.append(f"the ends are on different networks ({src_net}, {dst_net}), not declared routable "
                       f"to each other: traffic never crosses between them")
    elif src_pod is None and dst_pod is None:
        v.notes.append("neither address belongs to a pod: not a connection of this cluster")
    elif src_pod is not None and dst_pod is not None and not across:
        # allowNewConnectionToPod and allowNewConnectionFromPod; both are evaluated so
        # the explanation is complete, and both must allow.
        v.egress = allow_new_connection_to_pod(cluster, src_pod, dst_pod, protocol, port, dst_ip, src_net)
        v.ingress = allow_new_connection_from_pod(cluster, dst_pod, src_pod, protocol, port, src_ip, dst_net)
        v.allowed = v.egress.allowed and v.ingress.allowed
    elif src_pod is not None and dst_pod is not None:
        # Two networks routable to each other: each side's selectors see pods by their
        # addresses on its own network, so the peer is only an address (ipBlocks).
        v.notes.append(f"across routable networks {src_net} -> {dst_net}: each end is policed on its own "
                       f"network, the peer matched by address only")
        v.egress = allow_new_connection_to_ip_address(cluster, src_pod, dst_ip, protocol, port, src_net)
        v.ingress = allow_new_connection_from_ip_address(cluster, src_ip, dst_pod, protocol, port, dst_net)
        v.allowed = v.egress.allowed and v.ingress.allowed
    elif dst_pod is None:
        v.egress = allow_new_connection_to_ip_address(cluster, src_pod, dst_ip, protocol, port, src_net)
        v.allowed = v.egress.allowed
    elif plane.from_resident_node(src, dst) and not cluster.config.police_node_traffic:
        v.notes.append(f"from node {src.node} to a pod on it: always allowed (pods cannot block "
                       f"their node; see docs/semantics.md)")
        v.allowed = True
    else:
        v.ingress = allow_new_connection_from_ip_address(cluster, src_ip, dst_pod, protocol, port, dst_net)
        v.allowed = v.ingress.allowed


def _pod_end(cluster: Cluster, pod: Pod, family: Optional[int]):
    """(domain, entry, address) a pod is reached at or connects from, of `family`."""
    for domain, ip in cluster.plane.lookup_pod_to_address_mappings(pod.key):
        if family is None or ip.version == family:
            return domain, cluster.plane.lookup(domain, ip), ip
    return None


def open_pod_connection(cluster: Cluster, connections: Connections, source: Pod, destination: Pod,
                        protocol: str, port: int, family: Optional[int] = None) -> Verdict:
    """openPodConnection: the destination's address (of `family`, its primary by
    default) and the source's address of the same family, then the one decision."""
    v = Verdict(False, None, source.key, destination.key, protocol, port)
    dst = _pod_end(cluster, destination, family)
    src = _pod_end(cluster, source, dst[2].version) if dst else None
    if dst is None or src is None:
        v.notes.append("no address of that family at one end")
        return v
    _decide(cluster, v, src[1], src[2], dst[1], dst[2], protocol, port)
    if v.allowed:
        v.connection = connections.new_connection(source.key, destination.key, protocol, port)
    return v


def select_one_pod(cluster: Cluster, service: str, protocol: str, port: int) -> Optional[Pod]:
    """The seed's selectOnePod(), for one port of the Service (see services.py): the
    pod of the first ready backend."""
    svc = cluster.services.get(service)
    sp = svc.port(protocol, port) if svc else None
    b = select_one_backend(cluster, svc, sp) if sp else None
    return cluster.pods[b.pod] if b is not None and b.pod is not None else None


def open_service_connection(cluster: Cluster, connections: Connections, source: Pod, service: str,
                            protocol: str, port: int, backend: Optional[Backend] = None) -> Verdict:
    """openServiceConnection: the service mapper picks a ready backend of that Service
    port, then the connection is policed as one to the backend's address, on its
    target port (what kube-proxy's DNAT makes of it). A pod the Service sends back to
    itself is not policed: the own-address rule holds on the backend. `backend` asks for one
    of the port's ready backends (what a dataplane may pick instead of the first)."""
    svc = cluster.services.get(service)
    v = Verdict(False, None, source.key, service, protocol, port)
    if svc is None:
        v.notes.append(f"no service {service}")
        return v
    if svc.headless:
        v.notes.append(f"service {service} is headless: it has no virtual IP; clients connect to its pods")
        return v
    if svc.type == "ExternalName":
        v.notes.append(f"service {service} is an ExternalName: a DNS alias, with no virtual IP and no backends")
        return v
    sp = svc.port(protocol, port)
    if sp is None:
        v.notes.append(f"service {service} has no port {protocol}/{port}: dropped, never delivered")
        return v
    mine = {ip.version for _, ip in cluster.plane.lookup_pod_to_address_mappings(source.key)}
    ready = [b for b in ready_backends(cluster, svc, sp) if b.address.version in mine]
    if backend is not None:
        ready = [b for b in ready if b == backend]
    if not ready:
        listed = service_backends(cluster, svc, sp)
        why = f"{len(listed)} listed, none ready" if listed else "none listed"
        v.notes.append(f"service {service} port {protocol}/{port} has no ready backend ({why}): "
                       f"rejected, as kube-proxy does (TCP reset, ICMP port unreachable otherwise)")
        return v
    chosen = ready[0]
    v.backend, v.backend_port = chosen.pod or str(chosen.address), chosen.port
    v.notes.append(f"service {service} maps to backend {chosen} "
                   f"(the first of {len(ready)} ready; the dataplane balances over all)")
    src_ip = next(ip for _, ip in cluster.plane.lookup_pod_to_address_mappings(source.key)
                  if ip.version == chosen.address.version)
    dst_entry = cluster.plane.lookup(DEFAULT_DOMAIN, chosen.address)
    src_entry = cluster.plane.lookup(DEFAULT_DOMAIN, src_ip)
    # Back to the pod itself (hairpin), the plane's own-address rule holds on the
    # backend reached: not policed, as with kube-proxy (whose hairpin masquerade makes it
    # node traffic) and Cilium (which skips policy for it).
    _decide(cluster, v, src_entry, src_ip, dst_entry, chosen.address, protocol, chosen.port)
    if v.allowed:
        v.connection = connections.new_connection(source.key, chosen.pod or chosen.address, protocol, chosen.port)
    return v


def open_connection_with_ip_addresses(cluster: Cluster, connections: Connections, source_ip,
                                      destination_ip, protocol: str, port: int,
                                      source_domain: str = DEFAULT_DOMAIN,
                                      destination_domain: str = DEFAULT_DOMAIN) -> Verdict:
    """openConnectionWithIpAddresses (004 step 3: each address with its IP address
    domain, the cluster's by default): what sits at each address decides; a Service
    address (ClusterIP, externalIP), or a node port of a node's address, is mapped to
    one ready backend first."""
    src_ip = ipaddress.ip_address(source_ip)
    dst_ip = ipaddress.ip_address(destination_ip)
    src = cluster.plane.lookup(source_domain, src_ip)
    dst = cluster.plane.lookup(destination_domain, dst_ip)
    if isinstance(dst, ServiceVIP) and isinstance(src, Attachment):
        v = open_service_connection(cluster, connections, cluster.pods[src.pod], dst.service, protocol, port)
        v.source, v.destination = _name(cluster, src, src_ip), _name(cluster, dst, dst_ip)
        return v
    v = Verdict(False, None, _name(cluster, src, src_ip), _name(cluster, dst, dst_ip), protocol, port)
    front = _frontend(cluster, dst, protocol, port)
    if front is not None:
        return _through_frontend(cluster, connections, v, src, src_ip, front, dst_ip.version)
    if not routes_from_outside(cluster, src, dst):
        # Policy still answers (it is what a routed pod network would enforce); the
        # dataplane drops such a packet before policy (pod_address_not_routed).
        v.notes.append("from outside the cluster straight to a pod's address: the dataplane does not "
                       "route it (pod_address_not_routed; the outside reaches pods through Services, "
                       "or --route-pod-addresses); policy would decide as follows")
    _decide(cluster, v, src, src_ip, dst, dst_ip, protocol, port)
    if v.allowed:
        ends = [e.pod if isinstance(e, Attachment) else ip for e, ip in ((src, src_ip), (dst, dst_ip))]
        v.connection = connections.new_connection(ends[0], ends[1], protocol, port)
    return v


def routes_from_outside(cluster: Cluster, src: Optional[Entry], dst: Optional[Entry]) -> bool:
    """False for a connection an address outside the cluster opens straight to a pod's
    address (not through a Service): pod addresses are not routed outside the cluster,
    as with an overlay or masquerading CNI, unless the cluster routes them
    (ClusterConfig.route_pod_addresses). Nodes are inside."""
    return not (src is None and isinstance(dst, Attachment)) or cluster.config.route_pod_addresses


def _frontend(cluster: Cluster, dst: Optional[Entry], protocol: str, port: int):
    """(Service, its port or None, what the address is) when `dst` is a Service
    address, or a node address and `port` one of the node ports; otherwise None."""
    if isinstance(dst, ServiceVIP):
        svc = cluster.services[dst.service]
        return svc, svc.port(protocol, port), f"service {svc.key}"
    if isinstance(dst, NodeAddress):
        found = node_port_service(cluster, protocol, port)
        if found is not None:
            return found[0], found[1], f"node port {port} of service {found[0].key}"
    return None


def _through_frontend(cluster: Cluster, connections: Connections, v: Verdict, src, src_ip, front,
                      family: int) -> Verdict:
    """A connection to a Service's frontend from anything but a pod's ClusterIP
    client path (open_service_connection): from outside, from a node, to a node port."""
    svc, sp, what = front
    if sp is None:
        v.notes.append(f"{what} has no port {v.protocol}/{v.port}: dropped, never delivered")
        return v
    b = select_one_backend(cluster, svc, sp, family)
    if b is None:
        v.notes.append(f"{what} has no ready backend: rejected, as kube-proxy does")
        return v
    v.backend, v.backend_port = b.pod or str(b.address), b.port
    v.notes.append(f"{what} maps to backend {b} (the first ready; the dataplane balances over all)")
    _decide(cluster, v, src, src_ip, cluster.plane.lookup(DEFAULT_DOMAIN, b.address), b.address,
            v.protocol, b.port)
    if v.allowed:
        ends = [src.pod if isinstance(src, Attachment) else src_ip, b.pod or b.address]
        v.connection = connections.new_connection(ends[0], ends[1], v.protocol, b.port)
    return v
