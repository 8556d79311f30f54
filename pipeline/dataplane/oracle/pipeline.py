"""The packet pipeline of docs/pipeline.md written plainly on the model (the oracle
the C pipeline, native/pipeline.c, is compared with), stage by stage in the seed's
order: sanity and anti-spoofing -> connection tracker (replies reverse-translated) ->
service mapper -> route -> egress and ingress policy (the model's primitive) ->
commit. What sits at an address comes from the address plane; it favours the
obvious over the fast."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ...model.addresses import DEFAULT_DOMAIN, Attachment, NodeAddress
from ...model.cluster import Cluster
from ..constants import PORT_UNKNOWN, PORT_UPLINK, REASON_VERDICT, REWRITE_DST, REWRITE_SRC
from ..results import Result
from ..zones import zone_numbers
from . import conntrack as ct
from .frag import FragTable
from .policy import decide, routes_from_outside
from .sanity import Drop, Packet, check_offload, parse
from .service import Affinity, ServiceMapper

CT_STATE_OF_REASON = {"new": "new", "established": "established", "reply": "reply", "related": "related"}


@dataclass
class _Out:
    """What the stages fill in besides the reason."""

    port: int = 0
    rules: list = field(default_factory=lambda: [None, None])
    src: object = None
    dst: object = None
    sport: int = 0
    dport: int = 0
    rewrite: int = 0


class OraclePipeline:
    def __init__(self, cluster: Cluster, connections_limit: int = 1 << 20, fragments_limit: int = 4096,
                 affinity_limit: int = 65536, per_port_limit: int = 0):
        self.conns = ct.ConnTable(connections_limit, per_port_limit)
        self.frags = FragTable(fragments_limit)
        self.affinity = Affinity(affinity_limit)      # outlives installs, as in C
        self.last_now = 0
        self._use(cluster)

    def _use(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.services = ServiceMapper(cluster)
        self.zones = zone_numbers(cluster)
        self.domains = {z: d for d, z in self.zones.items()}

    def install(self, cluster: Cluster, recheck: bool = False) -> int:
        """A policy change: established connections survive unless `recheck`."""
        self._use(cluster)
        deleted = 0
        if recheck:
            for conn in self.conns.connections(self.last_now):
                zone, src, dst, sport, dport, proto, _ = conn.key
                xdst, xport = conn.xlate or (dst, dport)
                if decide(cluster, self.domains.get(zone, DEFAULT_DOMAIN), src, xdst, proto, xport)[0]:
                    self.conns.delete(conn)
                    deleted += 1
        return deleted

    def commit_translated(self, src, dst, sport: int, dport: int, proto: int, xdst, xport: int,
                          now: int, zone: int = 0, in_port: int = 0) -> None:
        """As Datapath.commit_translated: a connection whose destination is translated."""
        key = (zone, ipaddress.ip_address(src), ipaddress.ip_address(dst), sport, dport, proto, 0)
        xlate = (ipaddress.ip_address(xdst), xport)
        if self.conns.clashes(key, now, xlate) or \
                self.conns.insert(key, ct.OPEN_STATE.get(proto, ct.S["ICMP"]), now, xlate, port=in_port) is None:
            raise RuntimeError("conntrack full or clash")

    # -- the pipeline ----------------------------------------------------------------
    def process(self, frame: bytes, in_port: int, now: int, offload: tuple | None = None) -> Result:
        """offload: the frame's virtio-net header (flags, gso_type, hdr_len, gso_size,
        csum_start, csum_offset), when it came with one: a GSO super-frame is judged
        once, as the one segment it is."""
        self.last_now = now
        pkt = Packet()
        out = _Out()
        zone = self._zone_of(in_port)
        try:
            parse(frame, pkt)
            check_offload(pkt, offload)
            out.src, out.dst, out.sport, out.dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
            reason = self._run(pkt, in_port, zone, now, out)
        except Drop as d:
            reason = d.reason
        verdict = REASON_VERDICT[reason]
        if verdict != "forward":      # a dropped packet is reported as it arrived
            out = _Out(rules=out.rules, src=pkt.src, dst=pkt.dst, sport=pkt.sport, dport=pkt.dport)
        return Result(verdict, reason, out.port,
                      CT_STATE_OF_REASON.get(reason, "none"), out.rules[0], out.rules[1],
                      pkt.family, pkt.proto, str(out.src) if out.src else None,
                      str(out.dst) if out.dst else None, out.sport, out.dport, zone, out.rewrite)

    def _zone_of(self, port: int) -> int:
        a = self.cluster.plane.by_port(port)
        return self.zones[a.domain] if a is not None and port not in (PORT_UPLINK, PORT_UNKNOWN) else 0

    def _run(self, pkt: Packet, in_port: int, zone: int, now: int, out: _Out) -> str:
        plane = self.cluster.plane
        domain = self.domains[zone]
        src_entry = plane.lookup(domain, pkt.src)
        src_pod = src_entry if isinstance(src_entry, Attachment) else None
        # 1. anti-spoofing: from a pod port only that pod's addresses; from the uplink no
        # pod's nor a Service's. The effective arrival port.
        if in_port != PORT_UNKNOWN:
            if in_port != PORT_UPLINK:
                if src_pod is None or src_pod.port != in_port:
                    raise Drop("spoofed_source")
            elif src_entry is not None and not isinstance(src_entry, NodeAddress):
                raise Drop("spoofed_source")
            arrival = in_port
        else:
            arrival = src_pod.port if src_pod else PORT_UPLINK
        # A later fragment follows its first fragment.
        fkey = (zone,) + pkt.frag_key if pkt.frag_key else None
        if pkt.fragment == "later":
            port = self.frags.lookup(fkey, now)
            if port is None:
                raise Drop("fragment_unknown")
            out.port = port
            return "fragment"
        # 2. connection tracker
        if pkt.icmp_kind == "other":
            raise Drop("unsupported_icmp")
        if pkt.icmp_kind == "error":
            # The quoted packet is one the error's sender received, translated as it
            # travelled: its reversal is the connection's reply key (it went in the
            # original direction) or its original key (it was a reply).
            isrc, idst, isport, idport, iproto, iecho = pkt.inner
            quoted = ct.Connection((zone, isrc, idst, isport, idport, iproto, iecho), 0, 0)
            conn, direction = self.conns.find(quoted.reply_key(), now)
            if conn is None:
                raise Drop("icmp_error_no_connection")
            # As Linux conntrack: the error goes back to whoever sent the quoted packet.
            if pkt.dst != isrc:
                raise Drop("icmp_error_misdirected")
            self._translate(conn, direction, out)
            return self._forward(pkt, arrival, domain, now, out, "related", fkey)
        key = (zone, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto, pkt.echo)
        opener = ct.can_open(pkt.proto, pkt.tcp_flags, pkt.sctp_chunk, pkt.icmp_kind)
        conn, direction = self.conns.find(key, now)
        if conn is not None and conn.state in ct.REOPENABLE:
            if opener:
                self.conns.delete(conn)       # the old connection is over; policed as new
                conn = None
            elif conn.state in ct.CLOSED_TCP:
                raise Drop("connection_closed")
        if conn is not None:
            ct.update(conn, direction, pkt.proto, pkt.tcp_flags, pkt.sctp_chunk, now)
            self._translate(conn, direction, out)
            return self._forward(pkt, arrival, domain, now, out,
                                 "reply" if direction == "reply" else "established", fkey)
        if not opener:
            raise Drop("no_connection")
        # 3. service mapper: a VIP's new connection goes to one ready backend
        dst_entry = plane.lookup(domain, pkt.dst)
        xlate = self.services.map(dst_entry, pkt, zone, self.affinity, now)
        if xlate is not None:
            out.dst, out.dport, out.rewrite = xlate[0], xlate[1], REWRITE_DST
            dst_entry = plane.lookup(domain, out.dst)
        elif arrival == PORT_UPLINK and not routes_from_outside(self.cluster, src_entry, dst_entry):
            raise Drop("pod_address_not_routed")
        # 4. route, 5. egress and ingress policy (the model's primitive), on the backend
        out.port = self._route(domain, out.dst, arrival)
        reason, out.rules[0], out.rules[1] = decide(self.cluster, domain, pkt.src, out.dst, pkt.proto, out.dport)
        if reason:
            raise Drop(reason)
        # 6. commit, with source NAT where it is due (after policy: it saw the real source)
        snat = None
        if self._wants_snat(arrival, out.port, dst_entry, xlate):
            xsrc = self.cluster.snat_address(pkt.family)
            if xsrc is not None:
                snat = self.conns.choose_source_port(key, now, xlate, xsrc)
                if snat is None:
                    raise Drop("snat_ports_exhausted")
                out.src, out.sport = snat
                out.rewrite |= REWRITE_SRC
        if self.conns.clashes(key, now, xlate, snat):
            raise Drop("conntrack_clash")
        if self.conns.port_full(arrival, now):
            raise Drop("conntrack_pod_limit")
        if self.conns.insert(key, ct.OPEN_STATE.get(pkt.proto, ct.S["ICMP"]), now, xlate, snat, arrival) is None:
            raise Drop("conntrack_full")
        return self._forward(pkt, arrival, domain, now, out, "new", fkey, routed=True)

    @staticmethod
    def _translate(conn: ct.Connection, direction: str, out: _Out) -> None:
        """A connection's translation applied to a packet of it (or to an ICMP error
        travelling its way): the original direction goes to the translated destination
        from the translated source; replies come from the original destination to the
        original source."""
        _, src, dst, sport, dport = conn.key[:5]
        if direction == "orig":
            if conn.xlate is not None:
                out.dst, out.dport = conn.xlate
                out.rewrite |= REWRITE_DST
            if conn.snat is not None:
                out.src, out.sport = conn.snat
                out.rewrite |= REWRITE_SRC
        else:
            if conn.xlate is not None:
                out.src, out.sport = dst, dport
                out.rewrite |= REWRITE_SRC
            if conn.snat is not None:
                out.dst, out.dport = src, sport
                out.rewrite |= REWRITE_DST

    @staticmethod
    def _wants_snat(arrival: int, out_port: int, dst_entry, xlate) -> bool:
        """Source NAT for a new connection from a pod: masquerade when it leaves for an
        address outside the cluster, as CNIs do; hairpin when the service mapper sent
        it back to the pod it came from, so the reply comes back through the switch."""
        if arrival == PORT_UPLINK:
            return False
        if out_port == PORT_UPLINK:
            return dst_entry is None
        return xlate is not None and out_port == arrival

    def _route(self, domain: str, dst, arrival: int) -> int:
        entry = self.cluster.plane.lookup(domain, dst)
        if isinstance(entry, Attachment):
            return entry.port
        if arrival != PORT_UPLINK:
            return PORT_UPLINK
        raise Drop("no_route")

    def _forward(self, pkt: Packet, arrival: int, domain: str, now: int, out: _Out, reason: str,
                 fkey, routed: bool = False) -> str:
        if not routed:
            out.port = self._route(domain, out.dst, arrival)
        if pkt.fragment == "first" and not self.frags.record(fkey, out.port, now):
            raise Drop("fragment_table_full")
        return reason
