"""The seed's connection primitives (004): newConnection/deleteConnection,
openPodConnection, openServiceConnection and openConnectionWithIpAddresses, each
returning <allowed, connection> plus an explanation of the decision."""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field
from typing import Optional, Union

from .cluster import Cluster
from .objects import IPAddress, Pod
from .policy import (EGRESS, INGRESS, DirectionVerdict, allow_new_connection_from_ip_address,
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

    @property
    def connection_id(self) -> int:
        return self.connection.connection_id if self.connection else 0

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
                "notes": self.notes,
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


def _same_family(pod: Pod, other: Optional[IPAddress]) -> Optional[IPAddress]:
    """The pod's address a connection to/from `other` would use."""
    if other is not None:
        return pod.address(other.version)
    return pod.ips[0] if pod.ips else None


def _police_pod_to_pod(cluster: Cluster, v: Verdict, source: Pod, destination: Pod, protocol: str,
                       port: int, src_ip, dst_ip) -> None:
    """allowNewConnectionToPod and allowNewConnectionFromPod; both are evaluated so
    the explanation is complete, and both must allow."""
    v.egress = allow_new_connection_to_pod(cluster, source, destination, protocol, port, dst_ip)
    v.ingress = allow_new_connection_from_pod(cluster, destination, source, protocol, port, src_ip)
    v.allowed = v.egress.allowed and v.ingress.allowed


def open_pod_connection(cluster: Cluster, connections: Connections, source: Pod, destination: Pod,
                        protocol: str, port: int, family: Optional[int] = None) -> Verdict:
    """openPodConnection: egress of the source and ingress of the destination must both
    allow. A pod reaching its own address is not policed (docs/semantics.md)."""
    v = Verdict(False, None, source.key, destination.key, protocol, port)
    dst_ip = destination.address(family) if family else _same_family(destination, None)
    src_ip = _same_family(source, dst_ip)
    if source.key == destination.key:
        v.notes.append("a pod's traffic to its own address is not policed")
        v.allowed = True
    else:
        _police_pod_to_pod(cluster, v, source, destination, protocol, port, src_ip, dst_ip)
    if v.allowed:
        v.connection = connections.new_connection(source.key, destination.key, protocol, port)
    return v


def select_one_pod(cluster: Cluster, service: str) -> Optional[Pod]:
    """The seed's selectOnePod(): the model picks the first backend in name order, so
    its answers are deterministic (the dataplane may balance differently, but every
    backend is policed the same way)."""
    pods = cluster.lookup_service_to_pod_mappings(service)
    return cluster.pods[pods[0]] if pods else None


def open_service_connection(cluster: Cluster, connections: Connections, source: Pod, service: str,
                            protocol: str, port: int, backend: Optional[Pod] = None) -> Verdict:
    """openServiceConnection: the service mapper picks a backend, then the connection is
    policed as one to that pod, on the target port. Going through its own Service, a
    pod IS policed (unlike its own address)."""
    svc = cluster.services.get(service)
    v = Verdict(False, None, source.key, service, protocol, port)
    if svc is None:
        v.notes.append(f"no service {service}")
        return v
    sp = next((p for p in svc.ports if p.port == port and p.protocol == protocol), None)
    if sp is None:
        v.notes.append(f"service {service} has no port {protocol}/{port}")
        return v
    backend = backend or select_one_pod(cluster, service)
    if backend is None:
        v.notes.append(f"service {service} has no endpoints")
        return v
    target = sp.target_port if sp.target_port is not None else sp.port
    if isinstance(target, str):
        target = backend.named_port(target, protocol)
        if target is None:
            v.notes.append(f"backend {backend.key} has no port named {sp.target_port}")
            return v
    v.notes.append(f"service {service} maps to backend {backend.key} port {target}")
    dst_ip = _same_family(backend, None)
    _police_pod_to_pod(cluster, v, source, backend, protocol, target, _same_family(source, dst_ip), dst_ip)
    if v.allowed:
        v.connection = connections.new_connection(source.key, backend.key, protocol, target)
    return v


def open_connection_with_ip_addresses(cluster: Cluster, connections: Connections, source_ip,
                                      destination_ip, protocol: str, port: int) -> Verdict:
    """openConnectionWithIpAddresses, as the seed defines it: addresses map to at most
    one pod or service; a service address is mapped to one backend pod."""
    src_ip = ipaddress.ip_address(source_ip)
    dst_ip = ipaddress.ip_address(destination_ip)
    src_key = cluster.lookup_address_to_pod_mapping(src_ip)
    svc_key = cluster.lookup_address_to_service_mapping(dst_ip)
    src_pod = cluster.pods[src_key] if src_key else None
    if svc_key is not None and src_pod is not None:
        v = open_service_connection(cluster, connections, src_pod, svc_key, protocol, port)
        v.source, v.destination = f"{src_pod.key} ({src_ip})", f"{svc_key} ({dst_ip})"
        return v
    dst_key = cluster.lookup_address_to_pod_mapping(dst_ip)
    dst_pod = cluster.pods[dst_key] if dst_key else None
    v = Verdict(False, None, f"{src_key} ({src_ip})" if src_key else str(src_ip),
                f"{dst_key} ({dst_ip})" if dst_key else str(dst_ip), protocol, port)
    if src_pod is None and dst_pod is None:
        v.notes.append("neither address belongs to a pod: not a connection of this cluster")
        return v
    if src_pod is not None and dst_pod is not None:
        if src_pod.key == dst_pod.key:
            v.notes.append("a pod's traffic to its own address is not policed")
            v.allowed = True
        else:
            _police_pod_to_pod(cluster, v, src_pod, dst_pod, protocol, port, src_ip, dst_ip)
    elif dst_pod is None:
        v.egress = allow_new_connection_to_ip_address(cluster, src_pod, dst_ip, protocol, port)
        v.allowed = v.egress.allowed
    else:
        v.ingress = allow_new_connection_from_ip_address(cluster, src_ip, dst_pod, protocol, port)
        v.allowed = v.ingress.allowed
    if v.allowed:
        v.connection = connections.new_connection(src_key or src_ip, dst_key or dst_ip, protocol, port)
    return v
