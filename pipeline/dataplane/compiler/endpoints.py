"""The endpoint table: what sits at each (zone, address), from the address plane.

Zones are the IP address domains and networks have numbers too (zones.py numbers
both); every port is on one network, in one zone. Pods get one owner number shared by all their interfaces (so a pod reaching
its own address on another interface is still its own), nodes a node number."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...model.addresses import Attachment, NodeAddress, ServiceVIP
from ...model.cluster import Cluster
from .. import constants as K
from ..addr16 import addr16
from ..zones import network_numbers, zone_numbers


@dataclass(frozen=True)
class EndpointRow:
    """A frozen mirror of one ns_tables_add_endpoint call."""

    zone: int
    address: object
    kind: int
    port: int
    identity: int
    node: int
    owner: int
    a16: bytes = b""                 # the address as the tables hold it

COLUMNS = (("zone", np.uint16), ("kind", np.uint8), ("port", np.uint16), ("identity", np.uint32),
           ("node", np.uint16), ("owner", np.uint32))


@dataclass
class EndpointTable:
    zones: dict = field(default_factory=dict)        # domain -> zone number
    rows: list = field(default_factory=list)          # EndpointRow
    port_zones: dict = field(default_factory=dict)   # switch port -> zone
    networks: dict = field(default_factory=dict)     # network name -> number
    port_networks: dict = field(default_factory=dict)  # switch port -> network number
    routable: list = field(default_factory=list)     # (a, b) network numbers that meet
    nodes: dict = field(default_factory=dict)        # node name -> number
    packed: Optional[dict] = None                    # the rows as columns (numpy), built once

    def columns(self) -> dict:
        """The rows as ns_tables_add_endpoints takes them; a delta that only moves
        identities patches a copy of the identity column instead."""
        if self.packed is None:
            rows = self.rows
            col = {name: np.array([getattr(r, name) for r in rows], dtype=dt) for name, dt in COLUMNS}
            col["a16"] = np.frombuffer(b"".join(r.a16 for r in rows), dtype=np.uint8)
            self.packed = col
        return self.packed

    def install(self, lib, t, check) -> None:
        from ..._native import ffi
        c = self.columns()
        failed = ffi.new("uint32_t *")
        types = {"zone": "uint16_t *", "a16": "uint8_t *", "kind": "uint8_t *", "port": "uint16_t *",
                 "identity": "uint32_t *", "node": "uint16_t *", "owner": "uint32_t *"}
        buf = {k: ffi.cast(types[k], ffi.from_buffer(v)) for k, v in c.items()}
        if lib.ns_tables_add_endpoints(t, len(self.rows), buf["zone"], buf["a16"], buf["kind"], buf["port"],
                                       buf["identity"], buf["node"], buf["owner"], failed):
            check(-1, f"endpoint {self.rows[failed[0]].address}")
        for port, zone in self.port_zones.items():
            if zone != K.ZONE_DEFAULT:
                check(lib.ns_tables_set_port_zone(t, port, zone), f"port {port}")
        for port, net in self.port_networks.items():
            if net:
                check(lib.ns_tables_set_port_network(t, port, net), f"port {port} network")
        for a, b in self.routable:
            check(lib.ns_tables_set_routable(t, a, b), f"routable networks {a}, {b}")


def build_endpoints(cluster: Cluster, identity_on: dict) -> EndpointTable:
    plane = cluster.plane
    zones = zone_numbers(cluster)
    node_names = sorted({a.node for a in plane.attachments()} | {n.node for n in plane.nodes()})
    nodes = {n: i + 1 for i, n in enumerate(node_names)}
    pods = sorted({a.pod for a in plane.attachments()})
    pod_owner = {p: i + 1 for i, p in enumerate(pods)}
    services = sorted({e.service for _, _, e in plane if isinstance(e, ServiceVIP)})
    svc_owner = {s: i + 1 for i, s in enumerate(services)}
    table = EndpointTable(zones, networks=network_numbers(cluster), nodes=nodes)
    table.routable = sorted(tuple(sorted(table.networks[n] for n in pair)) for pair in cluster.routable)
    for domain, ip, e in plane:
        z = zones[domain]
        if isinstance(e, Attachment):
            table.rows.append(EndpointRow(z, ip, K.EP_POD, e.port, identity_on[(e.pod, e.network)], nodes[e.node],
                                          pod_owner[e.pod], addr16(ip)))
        elif isinstance(e, ServiceVIP):
            table.rows.append(EndpointRow(z, ip, K.EP_SERVICE, 0, 0, 0, svc_owner[e.service], addr16(ip)))
        elif isinstance(e, NodeAddress):
            table.rows.append(EndpointRow(z, ip, K.EP_NODE, 0, 0, nodes[e.node], nodes[e.node], addr16(ip)))
    for a in plane.attachments():
        table.port_zones[a.port] = zones[a.domain]
        table.port_networks[a.port] = table.networks[a.network]
    return table
