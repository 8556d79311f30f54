"""The packet pipeline of docs/pipeline.md written plainly on top of the model: a
parser with struct, conntrack in a dict, policy decisions from policy.check_direction
(the readable primitives, not the compiled tables). It is the reference every native
result is compared with, so it favours the obvious over the fast."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Optional

from ..cluster import Cluster
from ..policy import EGRESS, INGRESS, check_direction
from ..results import Result

SECOND = 1_000_000_000
PORT_UPLINK, PORT_UNKNOWN = 0, 0xFFFF
TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58
PROTO_NAMES = {TCP: "TCP", UDP: "UDP", SCTP: "SCTP", ICMP: "ICMP", ICMPV6: "ICMP"}
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SCTP_INIT, SCTP_INIT_ACK, SCTP_ABORT, SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK, SCTP_SHUTDOWN_COMPLETE = 1, 2, 6, 7, 8, 14

# Conntrack states and their timeouts (docs/pipeline.md).
SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSED = 1, 2, 3, 4, 5, 6
UDP_FIRST, UDP_REPLIED, SCTP_INIT_STATE, SCTP_ESTABLISHED, SCTP_CLOSED, ICMP_STATE = 7, 8, 9, 10, 11, 12
TIMEOUTS = {SYN_SENT: 30, SYN_RECV: 30, ESTABLISHED: 86400, FIN_WAIT: 120, TIME_WAIT: 30, CLOSED: 10,
            UDP_FIRST: 30, UDP_REPLIED: 180, SCTP_INIT_STATE: 30, SCTP_ESTABLISHED: 86400,
            SCTP_CLOSED: 10, ICMP_STATE: 30}
REOPENABLE = {TIME_WAIT, CLOSED, SCTP_CLOSED}
FRAGMENT_TIMEOUT = 30


class Drop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@dataclass
class Packet:
    family: int = 0
    proto: int = 0
    src: Optional[ipaddress._BaseAddress] = None
    dst: Optional[ipaddress._BaseAddress] = None
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    sctp_chunk: int = 0
    icmp_kind: str = ""           # request | reply | error | nd | other
    inner: Optional[tuple] = None  # ICMP error: (src, dst, sport, dport, proto)
    fragment: str = ""            # "" | first | later
    frag_key: Optional[tuple] = None


@dataclass
class Connection:
    key: tuple                    # original direction (src, dst, sport, dport, proto)
    state: int
    expiry: int
    fin_from: Optional[str] = None  # which direction sent the first FIN


def _map(ip) -> tuple:
    return (ip.version, ip.packed)


# ---- parsing (the sanity filter) ---------------------------------------------------

def parse(frame: bytes, pkt: Packet) -> None:
    """Fills `pkt` as far as parsing gets; raises Drop with the reason."""
    if len(frame) < 14:
        raise Drop("truncated_ethernet")
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    l3 = 14
    if ethertype == 0x8100:
        if len(frame) < 18:
            raise Drop("truncated_ethernet")
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        l3 = 18
    if ethertype == 0x0806:
        raise Drop("arp")
    if ethertype == 0x0800:
        l4, l4len = parse_ipv4(frame[l3:], pkt)
    elif ethertype == 0x86DD:
        l4, l4len = parse_ipv6(frame[l3:], pkt)
    else:
        raise Drop("unsupported_ethertype")
    if pkt.fragment != "later":
        parse_l4(pkt, l4[:l4len])
    check_addresses(pkt)


def parse_ipv4(ip: bytes, pkt: Packet):
    if len(ip) < 20:
        raise Drop("truncated_ip")
    if ip[0] >> 4 != 4:
        raise Drop("bad_ip_version")
    pkt.family, pkt.proto = 4, ip[9]
    pkt.src, pkt.dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
    hlen = (ip[0] & 0x0F) * 4
    if hlen < 20 or hlen > len(ip):
        raise Drop("bad_ip_header_length")
    total = struct.unpack_from("!H", ip, 2)[0]
    if total < hlen or total > len(ip):
        raise Drop("bad_ip_total_length")
    s = sum(struct.unpack_from(f"!{hlen // 2}H", ip, 0))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    if s != 0xFFFF:
        raise Drop("bad_ip_checksum")
    ident, frag = struct.unpack_from("!HH", ip, 4)
    if frag & 0x1FFF:
        pkt.fragment = "later"
    elif frag & 0x2000:
        pkt.fragment = "first"
    if pkt.fragment:
        pkt.frag_key = (4, pkt.src, pkt.dst, ident, pkt.proto)
    return ip[hlen:], total - hlen


def parse_ipv6(ip: bytes, pkt: Packet):
    if len(ip) < 40:
        raise Drop("truncated_ip")
    if ip[0] >> 4 != 6:
        raise Drop("bad_ip_version")
    pkt.family, pkt.proto = 6, ip[6]
    pkt.src, pkt.dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
    end = 40 + struct.unpack_from("!H", ip, 4)[0]
    if end > len(ip):
        raise Drop("bad_ip_total_length")
    nh, off, count = ip[6], 40, 0
    while nh in (0, 43, 60, 44):
        count += 1
        if count > 8:
            raise Drop("bad_ipv6_extension")
        if nh == 44:
            if off + 8 > end:
                raise Drop("bad_ipv6_extension")
            fo = struct.unpack_from("!H", ip, off + 2)[0]
            ident = struct.unpack_from("!I", ip, off + 4)[0]
            # An atomic fragment (offset 0, no more fragments) is a whole packet.
            pkt.fragment = "later" if fo & 0xFFF8 else ("first" if fo & 1 else "")
            pkt.frag_key = (6, pkt.src, pkt.dst, ident, ip[off]) if pkt.fragment else None
            nh = ip[off]
            off += 8
            if pkt.fragment == "later":
                break
        else:
            if off + 2 > end:
                raise Drop("bad_ipv6_extension")
            hl = (ip[off + 1] + 1) * 8
            if off + hl > end:
                raise Drop("bad_ipv6_extension")
            nh = ip[off]
            off += hl
    pkt.proto = nh
    return ip[off:end], end - off


def parse_l4(pkt: Packet, l4: bytes) -> None:
    if pkt.proto == TCP:
        if len(l4) < 20:
            raise Drop("truncated_l4")
        doff = (l4[12] >> 4) * 4
        if doff < 20 or doff > len(l4):
            raise Drop("bad_l4_header")
        pkt.sport, pkt.dport = struct.unpack_from("!HH", l4)
        pkt.tcp_flags = l4[13]
    elif pkt.proto == UDP:
        if len(l4) < 8:
            raise Drop("truncated_l4")
        ulen = struct.unpack_from("!H", l4, 4)[0]
        # A first fragment carries only part of the datagram its length counts.
        if ulen < 8 or (ulen > len(l4) and pkt.fragment != "first"):
            raise Drop("bad_l4_header")
        pkt.sport, pkt.dport = struct.unpack_from("!HH", l4)
    elif pkt.proto == SCTP:
        if len(l4) < 16:
            raise Drop("truncated_l4")
        pkt.sport, pkt.dport = struct.unpack_from("!HH", l4)
        pkt.sctp_chunk = l4[12]
    elif (pkt.proto == ICMP and pkt.family == 4) or (pkt.proto == ICMPV6 and pkt.family == 6):
        parse_icmp(pkt, l4)
    else:
        raise Drop("unsupported_protocol")


def parse_icmp(pkt: Packet, l4: bytes) -> None:
    if len(l4) < 8:
        raise Drop("truncated_l4")
    t = l4[0]
    if pkt.family == 4:
        kind = {8: "request", 0: "reply"}.get(t, "error" if t in (3, 4, 5, 11, 12) else "other")
    else:
        kind = {128: "request", 129: "reply"}.get(t, "error" if 1 <= t <= 4 else
                                                  "nd" if 133 <= t <= 137 else "other")
    pkt.icmp_kind = kind
    if kind in ("request", "reply"):
        pkt.sport = pkt.dport = struct.unpack_from("!H", l4, 4)[0]
    elif kind == "error":
        pkt.inner = parse_inner(pkt.family, l4[8:])


def parse_inner(family: int, q: bytes) -> tuple:
    """The quoted IP header of an ICMP error, plus 8 bytes of its L4 header."""
    if family == 4:
        if len(q) < 20:
            raise Drop("truncated_l4")
        if q[0] >> 4 != 4 or q[0] & 0x0F < 5:
            raise Drop("bad_l4_header")
        l4 = (q[0] & 0x0F) * 4
        if len(q) < l4 + 8:
            raise Drop("truncated_l4")
        proto, src, dst = q[9], ipaddress.IPv4Address(q[12:16]), ipaddress.IPv4Address(q[16:20])
    else:
        if len(q) < 48:
            raise Drop("truncated_l4" if len(q) < 40 or q[0] >> 4 == 6 else "bad_l4_header")
        if q[0] >> 4 != 6:
            raise Drop("bad_l4_header")
        l4 = 40
        proto, src, dst = q[6], ipaddress.IPv6Address(q[8:24]), ipaddress.IPv6Address(q[24:40])
    t = q[l4:]
    sport = dport = 0
    if proto in (TCP, UDP, SCTP):
        sport, dport = struct.unpack_from("!HH", t)
    elif (proto == ICMP and family == 4 and t[0] in (0, 8)) or (proto == ICMPV6 and family == 6 and t[0] in (128, 129)):
        sport = dport = struct.unpack_from("!H", t, 4)[0]
    return (src, dst, sport, dport, proto)


def _bad_source(ip) -> bool:
    if ip.version == 4:
        return ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255") \
            or ip.is_unspecified or ip.is_loopback
    return ip.is_multicast or ip.is_unspecified or ip.is_loopback


def _bad_destination(ip) -> bool:
    if ip.version == 4:
        return _bad_source(ip) or ip in ipaddress.ip_network("169.254.0.0/16")
    return _bad_source(ip) or ip in ipaddress.ip_network("fe80::/10")


def check_addresses(pkt: Packet) -> None:
    if _bad_source(pkt.src):
        raise Drop("bad_source_address")
    if pkt.icmp_kind == "nd":
        raise Drop("neighbor_discovery")
    if _bad_destination(pkt.dst):
        raise Drop("bad_destination_address")


# ---- the pipeline ------------------------------------------------------------------

@dataclass
class OraclePipeline:
    cluster: Cluster
    connections_limit: int = 1 << 20
    fragments_limit: int = 4096
    connections: dict = field(default_factory=dict)   # key (either direction) -> Connection
    fragments: dict = field(default_factory=dict)     # frag key -> (out port, expiry)

    def __post_init__(self):
        self.ports = self.cluster.switch_ports()
        self.last_now = 0

    def install(self, cluster: Cluster, recheck: bool = False) -> int:
        """A policy change: established connections survive unless `recheck`."""
        self.cluster = cluster
        self.ports = cluster.switch_ports()
        deleted = 0
        if recheck:
            for conn in list(self._live_connections(self.last_now)):
                src, dst, sport, dport, proto = conn.key
                if self._policy(src, dst, proto, dport)[0] is not None:
                    self._delete(conn)
                    deleted += 1
        return deleted

    # -- helpers
    def _pod_at(self, ip):
        key = self.cluster.lookup_address_to_pod_mapping(ip)
        return self.cluster.pods[key] if key is not None and key in self.ports else None

    def _live_connections(self, now):
        seen = set()
        for c in self.connections.values():
            if id(c) not in seen and c.expiry > now:
                seen.add(id(c))
                yield c

    def _find(self, key: tuple, now: int):
        conn = self.connections.get(key)
        if conn is None or conn.expiry <= now:
            return None, None
        return conn, ("orig" if conn.key == key else "reply")

    def _delete(self, conn: Connection) -> None:
        src, dst, sport, dport, proto = conn.key
        self.connections.pop(conn.key, None)
        self.connections.pop((dst, src, dport, sport, proto), None)

    def _policy(self, src, dst, proto: int, dport: int):
        """(drop reason or None, egress rule id, ingress rule id)."""
        src_pod, dst_pod = self._pod_at(src), self._pod_at(dst)
        if src_pod is not None and dst_pod is not None and src_pod.key == dst_pod.key:
            return None, None, None          # a pod's own address is not policed
        name = PROTO_NAMES.get(proto, "ICMP")
        port = 0 if name == "ICMP" else dport
        e = check_direction(self.cluster, EGRESS, src_pod, dst_pod, dst, name, port)
        if not e.allowed:
            return "denied_egress", None, None
        i = check_direction(self.cluster, INGRESS, dst_pod, src_pod, src, name, port)
        if not i.allowed:
            return "denied_ingress", (e.rule.rule_id if e.rule else None), None
        return None, (e.rule.rule_id if e.rule else None), (i.rule.rule_id if i.rule else None)

    def process(self, frame: bytes, in_port: int, now: int) -> Result:
        self.last_now = now
        pkt = Packet()
        rules = [None, None]
        out = 0
        try:
            parse(frame, pkt)
            out, reason = self._forwarding(pkt, in_port, now, rules)
        except Drop as d:
            reason = d.reason
        verdict = "forward" if reason in ("established", "reply", "new", "related", "fragment") else \
            "local" if reason in ("arp", "neighbor_discovery") else "drop"
        ct_state = {"new": "new", "established": "established", "reply": "reply",
                    "related": "related"}.get(reason, "none")
        return Result(verdict, reason, out if verdict == "forward" else 0, ct_state, rules[0], rules[1],
                      pkt.family, pkt.proto, str(pkt.src) if pkt.src else None,
                      str(pkt.dst) if pkt.dst else None, pkt.sport, pkt.dport)

    def _forwarding(self, pkt: Packet, in_port: int, now: int, rules: list):
        src_pod, dst_pod = self._pod_at(pkt.src), self._pod_at(pkt.dst)
        # Anti-spoofing, and the effective arrival port.
        if in_port != PORT_UNKNOWN:
            if in_port != PORT_UPLINK:
                if src_pod is None or self.ports[src_pod.key] != in_port:
                    raise Drop("spoofed_source")
            elif src_pod is not None:
                raise Drop("spoofed_source")
            arrival = in_port
        else:
            arrival = self.ports[src_pod.key] if src_pod else PORT_UPLINK
        # Route.
        if dst_pod is not None:
            out = self.ports[dst_pod.key]
        elif arrival != PORT_UPLINK:
            out = PORT_UPLINK
        else:
            raise Drop("no_route")
        # A later fragment follows its first fragment.
        if pkt.fragment == "later":
            rec = self.fragments.get(pkt.frag_key)
            if rec is None or rec[1] <= now:
                raise Drop("fragment_unknown")
            return rec[0], "fragment"
        # Connection tracker.
        if pkt.icmp_kind == "other":
            raise Drop("unsupported_icmp")
        if pkt.icmp_kind == "error":
            if self._find(pkt.inner, now)[0] is None:
                raise Drop("icmp_error_no_connection")
            return self._record_fragment(pkt, out, now), "related"
        key = (pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto)
        opener = self._can_open(pkt)
        conn, direction = self._find(key, now)
        if conn is not None and opener and conn.state in REOPENABLE:
            self._delete(conn)
            conn = None
        if conn is not None:
            self._update(conn, direction, pkt, now)
            return self._record_fragment(pkt, out, now), ("reply" if direction == "reply" else "established")
        if not opener:
            raise Drop("no_connection")
        # Service mapper: passes everything on (Services come later).
        reason, rules[0], rules[1] = self._policy(pkt.src, pkt.dst, pkt.proto, pkt.dport)
        if reason:
            raise Drop(reason)
        if sum(1 for _ in self._live_connections(now)) >= self.connections_limit:
            raise Drop("conntrack_full")
        state = {TCP: SYN_SENT, UDP: UDP_FIRST, SCTP: SCTP_INIT_STATE}.get(pkt.proto, ICMP_STATE)
        conn = Connection(key, state, now + TIMEOUTS[state] * SECOND)
        self.connections[key] = conn
        self.connections[(pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.proto)] = conn
        return self._record_fragment(pkt, out, now), "new"

    def _record_fragment(self, pkt: Packet, out: int, now: int) -> int:
        if pkt.fragment == "first":
            live = {k: v for k, v in self.fragments.items() if v[1] > now}
            if pkt.frag_key not in live and len(live) >= self.fragments_limit:
                raise Drop("fragment_table_full")
            self.fragments = live
            self.fragments[pkt.frag_key] = (out, now + FRAGMENT_TIMEOUT * SECOND)
        return out

    @staticmethod
    def _can_open(pkt: Packet) -> bool:
        if pkt.proto == TCP:
            return bool(pkt.tcp_flags & SYN) and not pkt.tcp_flags & (ACK | RST)
        if pkt.proto == UDP:
            return True
        if pkt.proto == SCTP:
            return pkt.sctp_chunk == SCTP_INIT
        return pkt.icmp_kind == "request"

    @staticmethod
    def _update(conn: Connection, direction: str, pkt: Packet, now: int) -> None:
        """The state table of docs/pipeline.md; every packet refreshes."""
        s = conn.state
        if pkt.proto == TCP:
            f = pkt.tcp_flags
            if f & RST:
                s = CLOSED
            elif s == SYN_SENT and direction == "reply" and f & SYN and f & ACK:
                s = SYN_RECV
            elif s == SYN_RECV and direction == "orig" and f & ACK and not f & SYN:
                s = ESTABLISHED
            elif s == ESTABLISHED and f & FIN:
                s, conn.fin_from = FIN_WAIT, direction
            elif s == FIN_WAIT and f & FIN and direction != conn.fin_from:
                s = TIME_WAIT
        elif pkt.proto == UDP:
            if direction == "reply":
                s = UDP_REPLIED
        elif pkt.proto == SCTP:
            c = pkt.sctp_chunk
            if c in (SCTP_ABORT, SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK, SCTP_SHUTDOWN_COMPLETE):
                s = SCTP_CLOSED
            elif s == SCTP_INIT_STATE and direction == "reply" and c == SCTP_INIT_ACK:
                s = SCTP_ESTABLISHED
        conn.state = s
        conn.expiry = now + TIMEOUTS[s] * SECOND
