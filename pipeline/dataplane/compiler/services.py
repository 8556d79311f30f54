"""The service mapper's tables (native/service.c): one frontend per (IP address
domain, Service address, protocol, port), and per (node address, protocol, node
port), each with the ready backends of that Service port in the address's family and
their Maglev table (model/services.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...model.addresses import NodeAddress, ServiceVIP
from ...model.cluster import Cluster
from ...model.services import maglev_table, ready_backends
from ..addr16 import addr16
from ..constants import PROTO_NUMBERS


@dataclass(frozen=True)
class Frontend:
    zone: int
    address: object
    proto: int
    port: int
    client_ip: bool          # sessionAffinity: ClientIP
    backends: tuple          # ((address, port), ...)
    slots: tuple             # Maglev table: slot -> backend index; () without backends
    affinity_timeout: int = 10800   # ClientIP: timeoutSeconds

    @property
    def m(self) -> int:
        return len(self.slots) or 1


@dataclass
class ServiceTable:
    frontends: list = field(default_factory=list)

    @property
    def n_backends(self) -> int:
        return sum(len(f.backends) for f in self.frontends)

    @property
    def n_slots(self) -> int:
        return sum(len(f.slots) for f in self.frontends)

    def install(self, lib, ffi, t, check) -> None:
        for f in self.frontends:
            addrs = ffi.new("uint8_t[]", b"".join(addr16(a) for a, _ in f.backends) or b"\0")
            ports = ffi.new("uint16_t[]", [p for _, p in f.backends] or [0])
            slots = ffi.new("uint16_t[]", list(f.slots) or [0])
            check(lib.ns_tables_add_frontend(t, f.zone, addr16(f.address), f.proto, f.port,
                                             lib.NS_FE_CLIENT_IP if f.client_ip else 0, len(f.backends),
                                             addrs, ports, f.m, slots),
                  f"frontend {f.address} {f.proto}/{f.port}")
            if f.client_ip:
                check(lib.ns_tables_set_affinity_timeout(t, f.zone, addr16(f.address), f.proto, f.port,
                                                         f.affinity_timeout),
                      f"affinity timeout of {f.address} {f.proto}/{f.port}")


def build_services(cluster: Cluster, zones: dict) -> ServiceTable:
    """Frontends for every port of every Service address, and for every node port on
    every node address."""
    table = ServiceTable()
    node_ports = [(svc, sp) for svc in cluster.services.values() if svc.node_ports
                  for sp in svc.ports if sp.node_port]
    for domain, ip, e in cluster.plane:
        if isinstance(e, ServiceVIP):
            ports = [(cluster.services[e.service], sp, sp.port) for sp in cluster.services[e.service].ports]
        elif isinstance(e, NodeAddress):
            ports = [(svc, sp, sp.node_port) for svc, sp in node_ports]
        else:
            continue
        for svc, sp, port in ports:
            backends = ready_backends(cluster, svc, sp, ip.version)
            table.frontends.append(Frontend(zones[domain], ip, PROTO_NUMBERS[sp.protocol], port,
                                            svc.session_affinity == "ClientIP",
                                            tuple((b.address, b.port) for b in backends),
                                            tuple(maglev_table(backends)), svc.affinity_timeout))
    return table
