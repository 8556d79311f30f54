"""The address plane: what sits at an address, keyed by (IP address domain, address).

004 step 3: "IpAddressDomain <-> Network <-> interface <-> address". Every address the
model knows is one of
  - a pod's interface on a network (an `Attachment`: pod, interface, network, domain,
    and the switch port the interface is wired to);
  - a Service VIP (`ServiceVIP`);
  - a node address (`NodeAddress`); hostNetwork pods share their node's address;
or nothing (an address outside the cluster).

The seed's mapping primitives (addAddress2PodMapping(domain, address, pod), ...) fill
it. Everything that must know what an address is asks here: the policy primitives, the
matrices, the compiler's endpoint table, the packet oracle, the topology and the CLI.
The rules that depend only on what sits at the two ends of a connection are written
here, once: `own_address` and `from_resident_node`.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass
from typing import Iterator, Optional, Union

from .objects import IPAddress

DEFAULT_DOMAIN = "cluster"        # the cluster's own IP address domain (pods' eth0)
DEFAULT_NETWORK = "cluster"       # the pod network every pod's eth0 is attached to
PRIMARY_INTERFACE = "eth0"
DEFAULT_NODE = "node"             # the node pods run on when their spec names none
FIRST_PORT = 1                    # switch port 0 is the uplink (outside the cluster)
MAX_PORT = 65534                  # 65535 means "arrival port unknown"


@dataclass(frozen=True)
class Attachment:
    """One interface of a pod on one network (004 step 2), wired to one switch port."""

    pod: str                      # "ns/name"
    interface: str
    network: str
    domain: str
    port: int
    node: str                     # the node the pod runs on

    def __str__(self) -> str:
        # ns/pod for eth0, ns/pod/ifname for the others: how captures name the interface.
        return self.pod if self.interface == PRIMARY_INTERFACE else f"{self.pod}/{self.interface}"


@dataclass(frozen=True)
class ServiceVIP:
    service: str                  # "ns/name"
    domain: str


@dataclass(frozen=True)
class NodeAddress:
    node: str
    domain: str


Entry = Union[Attachment, ServiceVIP, NodeAddress]


def _ip(address) -> IPAddress:
    """An address object as is (most callers have one: parsing it again costs more
    than the lookup), a string parsed."""
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return address
    return ipaddress.ip_address(address)


class AddressError(ValueError):
    """An address that is already taken in its domain (004: "an address can only be
    assigned once")."""


class AddressPlane:
    def __init__(self):
        self._at: dict[tuple[str, IPAddress], Entry] = {}
        self._addresses: dict[Entry, list[IPAddress]] = {}
        self._attachments: dict[tuple[str, str], Attachment] = {}   # (pod, interface) ->
        self._by_pod: dict[str, dict[str, Attachment]] = {}          # pod -> interface ->
        self._by_port: dict[int, Attachment] = {}
        # The lowest free switch port in O(log n): ports freed below the high-water mark.
        self._free_ports: list[int] = []
        self._next_port = FIRST_PORT
        self._host_pods: dict[str, NodeAddress] = {}               # hostNetwork pod -> its node
        self._kept: dict[tuple[str, str], int] = {}                 # (pod, interface) -> its old port
        self._reserved: set[int] = set()

    # -- what sits at an address ---------------------------------------------------------
    def lookup(self, domain: str, address) -> Optional[Entry]:
        return self._at.get((domain, _ip(address)))

    def attachment_at(self, domain: str, address) -> Optional[Attachment]:
        e = self.lookup(domain, address)
        return e if isinstance(e, Attachment) else None

    def addresses(self, entry: Entry) -> list[IPAddress]:
        """An entry's addresses, primary first."""
        return list(self._addresses.get(entry, ()))

    def address(self, entry: Entry, family: Optional[int] = None) -> Optional[IPAddress]:
        """The entry's address of `family` (its primary when None)."""
        for ip in self._addresses.get(entry, ()):
            if family is None or ip.version == family:
                return ip
        return None

    def check_free(self, domain: str, address, owner: Optional[Entry] = None) -> None:
        """Raises AddressError when `address` is taken in `domain` by another than `owner`."""
        ip = _ip(address)
        e = self._at.get((domain, ip))
        if e is not None and e != owner:
            raise AddressError(f"address {ip} is already assigned to {_describe(e)}"
                               + ("" if domain == DEFAULT_DOMAIN else f" in IP address domain {domain!r}"))

    # -- attachments ---------------------------------------------------------------------
    def attach(self, pod: str, interface: str = PRIMARY_INTERFACE, network: str = DEFAULT_NETWORK,
               domain: str = DEFAULT_DOMAIN, node: str = DEFAULT_NODE) -> Attachment:
        """The pod's interface on `network`, wired to the lowest free switch port."""
        a = self._attachments.get((pod, interface))
        if a is not None:
            return a
        a = Attachment(pod, interface, network, domain, self._take_port(pod, interface), node)
        self._attachments[(pod, interface)] = a
        self._by_pod.setdefault(pod, {})[interface] = a
        self._by_port[a.port] = a
        self._addresses[a] = []
        return a

    def keep_ports(self, ports: dict) -> None:
        """Interfaces of a previous generation keep their ports ((pod, interface) ->
        port), so a running switch rewires only what came and went; new interfaces
        take the lowest port no kept one holds."""
        self._kept = dict(ports)
        self._reserved = set(ports.values())

    def port_map(self) -> dict:
        return {(a.pod, a.interface): a.port for a in self._by_port.values()}

    def _take_port(self, pod: str, interface: str) -> int:
        kept = self._kept.get((pod, interface))
        if kept is not None and kept not in self._by_port:
            return kept
        while self._free_ports:
            port = heapq.heappop(self._free_ports)
            if port not in self._by_port and port not in self._reserved:
                return port
        while True:
            port = self._next_port
            if port > MAX_PORT:
                raise AddressError(f"{pod}: more than {MAX_PORT} interfaces: no switch port left")
            self._next_port += 1
            if port not in self._by_port and port not in self._reserved:
                return port

    def copy(self) -> "AddressPlane":
        """A copy that shares nothing a change writes to (the next generation of a
        delta, Cluster.with_pods): the top-level maps are copied; what they hold is
        replaced, never changed in place, by attach and detach."""
        c = AddressPlane.__new__(AddressPlane)
        c.__dict__.update({k: (v.copy() if isinstance(v, (dict, list, set)) else v) for k, v in vars(self).items()})
        return c

    def detach(self, a: Attachment) -> None:
        for ip in self._addresses.pop(a, []):
            self._at.pop((a.domain, ip), None)
        self._attachments.pop((a.pod, a.interface), None)
        ifaces = {k: v for k, v in self._by_pod.get(a.pod, {}).items() if k != a.interface}
        if ifaces:
            self._by_pod[a.pod] = ifaces
        else:
            self._by_pod.pop(a.pod, None)
        if self._by_port.pop(a.port, None) is not None:
            heapq.heappush(self._free_ports, a.port)

    def attachments(self) -> list[Attachment]:
        """Every attachment, in switch-port order."""
        return [self._by_port[p] for p in sorted(self._by_port)]

    def attachment(self, pod: str, interface: str = PRIMARY_INTERFACE) -> Optional[Attachment]:
        return self._attachments.get((pod, interface))

    def attachments_of(self, pod: str) -> list[Attachment]:
        """The pod's interfaces, in switch-port order."""
        return sorted(self._by_pod.get(pod, {}).values(), key=lambda a: a.port)

    def by_port(self, port: int) -> Optional[Attachment]:
        return self._by_port.get(port)

    # -- the seed's primitives: address <-> pod ------------------------------------------
    def add_address_to_pod_mapping(self, domain: str, address, pod: str,
                                   interface: str = PRIMARY_INTERFACE,
                                   network: str = DEFAULT_NETWORK, node: str = DEFAULT_NODE) -> Attachment:
        ip = _ip(address)
        a = self.attachment(pod, interface)
        self.check_free(domain, ip, a)
        a = a or self.attach(pod, interface, network, domain, node)
        if a.domain != domain:
            raise AddressError(f"{a}: interface is in domain {a.domain!r}, not {domain!r}")
        return self._map(domain, ip, a)

    def remove_address_to_pod_mapping(self, domain: str, address, pod: str) -> None:
        ip = _ip(address)
        e = self._at.get((domain, ip))
        if isinstance(e, Attachment) and e.pod == pod:
            del self._at[(domain, ip)]
            self._addresses[e].remove(ip)
            if not self._addresses[e]:
                self.detach(e)

    def remove_pod_to_address_mappings(self, pod: str) -> None:
        for a in self.attachments_of(pod):
            self.detach(a)
        self._host_pods.pop(pod, None)

    def lookup_pod_to_address_mappings(self, pod: str) -> list[tuple[str, IPAddress]]:
        """(domain, address) of every interface of the pod; a hostNetwork pod has its node's."""
        node = self._host_pods.get(pod)
        if node is not None:
            return [(node.domain, ip) for ip in self._addresses.get(node, ())]
        return [(a.domain, ip) for a in self.attachments_of(pod) for ip in self._addresses[a]]

    def lookup_address_to_pod_mapping(self, domain: str, address) -> Optional[str]:
        a = self.attachment_at(domain, address)
        return a.pod if a else None

    # -- the seed's primitives: address <-> service --------------------------------------
    def add_address_to_service_mapping(self, domain: str, address, service: str) -> None:
        self._map(domain, address, ServiceVIP(service, domain))

    def remove_address_to_service_mapping(self, domain: str, address, service: str) -> None:
        ip = _ip(address)
        vip = ServiceVIP(service, domain)
        if self._at.get((domain, ip)) == vip:
            del self._at[(domain, ip)]
            self._addresses[vip].remove(ip)

    def remove_service_to_address_mappings(self, service: str) -> None:
        for vip in [e for e in self._addresses if isinstance(e, ServiceVIP) and e.service == service]:
            for ip in self._addresses.pop(vip):
                self._at.pop((vip.domain, ip), None)

    def lookup_service_to_address_mappings(self, service: str) -> list[tuple[str, IPAddress]]:
        return [(e.domain, ip) for e, ips in self._addresses.items()
                if isinstance(e, ServiceVIP) and e.service == service for ip in ips]

    def lookup_address_to_service_mapping(self, domain: str, address) -> Optional[str]:
        e = self.lookup(domain, address)
        return e.service if isinstance(e, ServiceVIP) else None

    # -- nodes ---------------------------------------------------------------------------
    def add_node_address(self, domain: str, address, node: str) -> NodeAddress:
        """A node's address. Several hostNetwork pods may share it: it is their node's."""
        return self._map(domain, address, NodeAddress(node, domain))

    def add_host_network_pod(self, pod: str, domain: str, addresses, node: str) -> None:
        """hostNetwork: the pod's addresses are its node's (it has no interface of its own)."""
        entry = NodeAddress(node, domain)
        for ip in addresses:
            self.add_node_address(domain, ip, node)
        self._addresses.setdefault(entry, [])
        self._host_pods[pod] = entry

    def nodes(self) -> list[NodeAddress]:
        return sorted((e for e in self._addresses if isinstance(e, NodeAddress)),
                      key=lambda e: (e.domain, e.node))

    def _map(self, domain: str, address, entry: Entry) -> Entry:
        """(domain, address) -> entry, unless another entry holds it (AddressError)."""
        ip = _ip(address)
        self.check_free(domain, ip, entry)
        self._at[(domain, ip)] = entry
        lst = self._addresses.setdefault(entry, [])
        if ip not in lst:
            lst.append(ip)
        return entry

    # -- the rules that depend only on the two ends --------------------------------------
    @staticmethod
    def network_of(entry: Optional[Entry]) -> str:
        """The network an end is on: a pod interface's own; a node, a Service VIP or an
        address outside the cluster are on the cluster network."""
        return entry.network if isinstance(entry, Attachment) else DEFAULT_NETWORK

    @staticmethod
    def own_address(src: Optional[Entry], dst: Optional[Entry]) -> bool:
        """A pod reaching one of its own addresses, or a node one of its own: the traffic
        never leaves the pod (the node), so it is not policed (docs/semantics.md)."""
        if isinstance(src, Attachment) and isinstance(dst, Attachment):
            return src.pod == dst.pod
        return isinstance(src, NodeAddress) and src == dst

    @staticmethod
    def from_resident_node(src: Optional[Entry], dst: Optional[Entry]) -> bool:
        """Traffic from a node (its address; hostNetwork pods have it) to a pod on that
        node: Kubernetes says pods cannot block it (kubelet probes depend on it)."""
        return (isinstance(src, NodeAddress) and isinstance(dst, Attachment)
                and src.node == dst.node and src.domain == dst.domain)

    def __iter__(self) -> Iterator[tuple[str, IPAddress, Entry]]:
        for (domain, ip), e in sorted(self._at.items(), key=lambda kv: (kv[0][0], kv[0][1].version,
                                                                          kv[0][1])):
            yield domain, ip, e


def _describe(e: Entry) -> str:
    if isinstance(e, Attachment):
        return f"pod {e.pod}" + ("" if e.interface == PRIMARY_INTERFACE else f" ({e.interface})")
    if isinstance(e, ServiceVIP):
        return f"service {e.service}"
    return f"node {e.node}"
