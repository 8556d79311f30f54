"""Kubernetes objects as the model sees them: identity type<namespace, name> (004),
only the fields that decide connectivity, all immutable once loaded."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional, Union

from .selectors import LabelSelector

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
L4_PROTOCOLS = ("TCP", "UDP", "SCTP")          # what Kubernetes ports and policies name
PROTOCOLS = L4_PROTOCOLS + ("ICMP",)           # what a connection can be (ICMP: echo)


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: Optional[str] = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    ips: tuple[IPAddress, ...] = ()        # status.podIPs, primary first
    phase: str = "Running"                 # status.phase ("" when absent: treated as running)
    node_name: Optional[str] = None        # spec.nodeName

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        """Succeeded or Failed: its containers are gone and its address is free for reuse
        (kubelet releases it), so it holds no address, is selected by nothing and reached
        by nothing."""
        return self.phase in ("Succeeded", "Failed")

    def named_port(self, name: str, protocol: str) -> Optional[int]:
        """Resolves a named port against this pod's container ports (per protocol)."""
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: Optional[str] = None
    target_port: Union[int, str, None] = None   # None: same as port


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Optional[dict] = field(default=None, hash=False, compare=False)
    ports: tuple[ServicePort, ...] = ()
    cluster_ips: tuple[IPAddress, ...] = ()
    headless: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service: Optional[str]                    # kubernetes.io/service-name label
    addresses: tuple[IPAddress, ...] = ()     # ready endpoints
    ports: tuple[ServicePort, ...] = ()


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        return (ip.version == self.cidr.version and ip in self.cidr
                and not any(ip in e for e in self.excepts))

    def __str__(self) -> str:
        if self.excepts:
            return f"ipBlock {self.cidr} except {', '.join(map(str, self.excepts))}"
        return f"ipBlock {self.cidr}"


@dataclass(frozen=True)
class Peer:
    """One element of from/to. pod_selector None with namespace_selector set means all
    pods of the selected namespaces; both None means ip_block is set."""

    pod_selector: Optional[LabelSelector] = None
    namespace_selector: Optional[LabelSelector] = None
    ip_block: Optional[IPBlock] = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            return str(self.ip_block)
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces [{self.namespace_selector}]")
        if self.pod_selector is not None:
            parts.append(f"pods [{self.pod_selector}]")
        return " and ".join(parts)


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: Union[int, str, None] = None        # None: all ports of the protocol
    end_port: Optional[int] = None

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.protocol}/*"
        if self.end_port is not None:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule. peers None means from/to was empty or missing (all
    peers); ports None means all ports and protocols."""

    peers: Optional[tuple[Peer, ...]]
    ports: Optional[tuple[PolicyPort, ...]]


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: tuple[str, ...]            # after defaulting
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
