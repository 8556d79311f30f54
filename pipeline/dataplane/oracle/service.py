"""The service mapper (native/service.c): a new connection to a Service VIP goes to
one of the ready backends of the Service port it names, through the Maglev table of
the model (model/services.py), at slot flow_hash(tuple) % m. The hash is written
here again, from its definition, rather than called in C: the differential tests then
hold the two together, key layout included."""

from __future__ import annotations

import struct
from typing import Optional

from ...model.addresses import NodeAddress, ServiceVIP
from ...model.services import Backend, maglev_table, node_port_service, ready_backends
from ..constants import AFF_HASH_SEED, AFF_PROBE, FLOW_HASH_SEED, PROTO_NAMES
from .sanity import Drop

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    return h ^ (h >> 33)


def hash_words(key: bytes, seed: int) -> int:
    """native/nsint.h ns_hash_words: 64-bit little-endian words, then a 64-bit mix."""
    h = seed ^ ((len(key) * GOLDEN) & M64)
    for (w,) in struct.iter_unpack("<Q", key):
        h = (((h ^ w) * GOLDEN) & M64) + (h >> 29) & M64
    return _mix64(h) & 0xFFFFFFFF


def flow_hash(src, dst, sport: int, dport: int, proto: int) -> int:
    """ns_flow_hash: of the tuple as the service mapper sees it (IPv4 mapped)."""
    def a16(ip):
        return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed
    return hash_words(struct.pack("<16s16sHHB3x", a16(src), a16(dst), sport, dport, proto), FLOW_HASH_SEED)


def _a16(ip) -> bytes:
    return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed


class Affinity:
    """ClientIP affinity records (native/service.h), written plainly but with the same
    bounded layout, since which key finds no room depends on it: 2^k slots, a key in
    one of AFF_PROBE slots from its hash; a slot is free when empty or expired."""

    def __init__(self, capacity: int = 65536):
        n = AFF_PROBE
        while n < capacity and n < (1 << 26):
            n <<= 1
        self.slots: list = [None] * n         # [key, (address, port), expiry]
        self.full = 0

    def backend(self, key: tuple, ready: list, hashed, timeout_s: int, now: int):
        """The (address, port) a client goes to: its live record's while that backend is
        ready, else `hashed`, recorded; every new connection refreshes the record."""
        zone, client, vip, proto, port = key
        h = hash_words(struct.pack("<16s16sHHB3x", _a16(client), _a16(vip), zone, port, proto),
                       AFF_HASH_SEED)
        mask = len(self.slots) - 1
        match = room = None
        for i in range(AFF_PROBE):
            j = (h + i) & mask
            e = self.slots[j]
            if e is not None and e[0] == key:
                match = j
                break
            if room is None and (e is None or e[2] <= now):
                room = j
        chosen = None
        if match is not None and self.slots[match][2] > now and self.slots[match][1] in ready:
            chosen = self.slots[match][1]
        if chosen is None:
            j = match if match is not None else room
            if j is None:
                self.full += 1
                return hashed
            chosen, match = hashed, j
        self.slots[match] = [key, chosen, min(now + timeout_s * 1_000_000_000, (1 << 64) - 1)]
        return chosen


class ServiceMapper:
    """One cluster generation's frontends, each Maglev table computed once."""

    def __init__(self, cluster):
        self.cluster = cluster
        self._tables: dict = {}

    def frontend(self, service: str, protocol: str, port: int, family: int, sp=None):
        """(ready backends, Maglev table) of one frontend, or None if the Service
        does not expose that protocol/port (`sp`: the Service port, for a node port)."""
        key = (service, protocol, port, family)
        if key not in self._tables:
            svc = self.cluster.services[service]
            sp = sp or svc.port(protocol, port)
            backends = ready_backends(self.cluster, svc, sp, family) if sp else None
            self._tables[key] = None if sp is None else (backends, maglev_table(backends))
        return self._tables[key]

    def map(self, entry, pkt, zone: int = 0, affinity: Optional[Affinity] = None,
            now: int = 0) -> Optional[tuple]:
        """The translation (backend address, port) of a new connection; None when the
        destination is neither a Service address nor a node port of a node address;
        Drop when a Service address refuses it."""
        proto = PROTO_NAMES[pkt.proto]        # sanity let only these through
        if isinstance(entry, NodeAddress):
            # A node's address is its own on every port but its node ports.
            found = node_port_service(self.cluster, proto, pkt.dport)
            if found is None:
                return None
            svc, sp = found
            fe = self.frontend(svc.key, proto, ("node", pkt.dport), pkt.family, sp)
        elif isinstance(entry, ServiceVIP):
            svc = self.cluster.services[entry.service]
            fe = self.frontend(svc.key, proto, pkt.dport, pkt.family)
            if fe is None:
                raise Drop("service_port_unknown")
        else:
            return None
        backends, table = fe
        if not backends:
            raise Drop("service_no_backend")
        if svc.session_affinity == "ClientIP":
            h = flow_hash(pkt.src, pkt.dst, 0, 0, pkt.proto)      # the client's every connection alike
        else:
            h = flow_hash(pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto)
        b: Backend = backends[table[h % len(table)]]
        if svc.session_affinity == "ClientIP" and affinity is not None:
            return affinity.backend((zone, pkt.src, pkt.dst, pkt.proto, pkt.dport),
                                    [(x.address, x.port) for x in backends], (b.address, b.port),
                                    svc.affinity_timeout, now)
        return b.address, b.port
