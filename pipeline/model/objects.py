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
class Node:
    """A Node: its labels (what `nodes` peers select) and its InternalIP addresses."""

    name: str
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    addresses: tuple = ()            # IPAddress, InternalIP only


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: Optional[str] = None


@dataclass(frozen=True)
class NetworkRequest:
    """One attachment a pod asks for (`k8s.v1.cni.cncf.io/networks`): the
    NetworkAttachmentDefinition by namespace and name, the interface (None: Multus's
    default, net1, net2, ... in order) and addresses asked for."""
    namespace: str
    name: str
    interface: Optional[str] = None
    ips: tuple = ()


@dataclass(frozen=True)
class NetworkStatus:
    """One attachment a pod reports (`k8s.v1.cni.cncf.io/network-status`)."""
    network: str                           # "ns/nad"
    interface: str
    ips: tuple = ()


@dataclass(frozen=True)
class NetworkAttachmentDefinition:
    """k8s.cni.cncf.io/v1: `network` is the CNI config's `name` (two definitions with one
    name are one network), `domain` its `ipAddressDomain` (004), `subnets` what its IPAM
    config allocates from, `routable` its `routableNetworks` (netsem's key: networks of
    the same domain it has L3 reachability with)."""
    namespace: str
    name: str
    network: str
    domain: str
    subnets: tuple = ()
    routable: tuple = ()     # networks declared L3-routable to this one (004 "type 1")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


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
    ready: bool = True                     # status.conditions Ready (absent: ready)
    networks: tuple = field(default=(), hash=False, compare=False)        # NetworkRequest, ...
    network_status: tuple = field(default=(), hash=False, compare=False)  # NetworkStatus, ...

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
    node_port: Optional[int] = None             # NodePort/LoadBalancer: given or allocated


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
NODE_PORT_RANGE = (30000, 32767)                # kube-apiserver's default --service-node-port-range
DEFAULT_AFFINITY_TIMEOUT = 10800                # sessionAffinityConfig.clientIP.timeoutSeconds


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Optional[dict] = field(default=None, hash=False, compare=False)
    ports: tuple[ServicePort, ...] = ()
    cluster_ips: tuple[IPAddress, ...] = ()
    headless: bool = False
    type: str = "ClusterIP"
    external_ips: tuple[IPAddress, ...] = ()
    session_affinity: str = "None"              # or "ClientIP"
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    publish_not_ready: bool = False             # publishNotReadyAddresses

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def node_ports(self) -> bool:
        return self.type in ("NodePort", "LoadBalancer")

    def port(self, protocol: str, port: int) -> Optional[ServicePort]:
        return next((p for p in self.ports if p.port == port and p.protocol == protocol), None)


@dataclass(frozen=True)
class SliceEndpoint:
    """One endpoint of an EndpointSlice. ready None (the condition left out) means
    ready, as consumers of the API must read it."""

    addresses: tuple[IPAddress, ...]
    ready: Optional[bool] = None

    @property
    def is_ready(self) -> bool:
        return self.ready is not False


@dataclass(frozen=True)
class SlicePort:
    """A port of an EndpointSlice: named as the Service port it serves; port None
    means the endpoints serve all ports (the API's own reading of a nil port)."""

    port: Optional[int]
    protocol: str = "TCP"
    name: Optional[str] = None


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service: Optional[str]                    # kubernetes.io/service-name label
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[SlicePort, ...] = ()

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(ip for e in self.endpoints for ip in e.addresses)


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


@dataclass(frozen=True)
class MultiNetworkPolicy(NetworkPolicy):
    """k8s.cni.cncf.io MultiNetworkPolicy (001): a NetworkPolicy's spec for the networks
    its `k8s.v1.cni.cncf.io/policy-for` names: `policy_for` as written ((namespace,
    NetworkAttachmentDefinition name), ...), `networks` the network names they are."""
    policy_for: tuple = ()
    networks: tuple = ()
