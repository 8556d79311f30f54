"""The sanity filter (native/sanity.c), written plainly: a parser with struct, and the
address checks. Fills a Packet as far as parsing gets; raises Drop with the reason."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional

from ..constants import ICMP, ICMPV6, SCTP, TCP, UDP


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
    echo: int = 0                 # ICMP echo: 0 request, 1 reply
    inner: Optional[tuple] = None  # ICMP error: (src, dst, sport, dport, proto, echo)
    fragment: str = ""            # "" | first | later
    frag_key: Optional[tuple] = None
    l4_at: int = 0                # offset of the L4 header in the frame


def parse(frame: bytes, pkt: Packet) -> None:
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
    pkt.l4_at += l3
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
    pkt.l4_at = hlen
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
    pkt.l4_at = off
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
        # ND (133-137) and MLD (130-132, 143): link-local control, handled locally
        kind = {128: "request", 129: "reply"}.get(t, "error" if 1 <= t <= 4 else
                                                  "nd" if 133 <= t <= 137 or t in (130, 131, 132, 143)
                                                  else "other")
    pkt.icmp_kind = kind
    if kind in ("request", "reply"):
        pkt.sport = pkt.dport = struct.unpack_from("!H", l4, 4)[0]
        pkt.echo = 1 if kind == "reply" else 0
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
    sport = dport = echo = 0
    if proto in (TCP, UDP, SCTP):
        sport, dport = struct.unpack_from("!HH", t)
    elif (proto == ICMP and family == 4 and t[0] in (0, 8)) or (proto == ICMPV6 and family == 6 and t[0] in (128, 129)):
        sport = dport = struct.unpack_from("!H", t, 4)[0]
        echo = 1 if t[0] in (0, 129) else 0
    elif proto in (ICMP, ICMPV6):
        proto = 0          # an error about an error relates to no connection (native/sanity.c)
    return (src, dst, sport, dport, proto, echo)


def _bad_source(ip) -> bool:
    if ip.version == 4:
        return ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255") \
            or ip.is_unspecified or ip.is_loopback
    return ip.is_multicast or ip.is_unspecified or ip.is_loopback


def _bad_destination(ip) -> bool:
    if ip.version == 4:
        return _bad_source(ip) or ip in ipaddress.ip_network("169.254.0.0/16")
    return _bad_source(ip) or ip in ipaddress.ip_network("fe80::/10")


def _mapped(ip) -> bool:
    return ip.version == 6 and ip.ipv4_mapped is not None


def check_addresses(pkt: Packet) -> None:
    if _bad_source(pkt.src):
        raise Drop("bad_source_address")
    # An IPv6 packet from or to ::ffff:a.b.c.d (RFC 4291 keeps them off the wire), or an
    # ICMPv6 error quoting one, is never taken for the IPv4 address.
    if _mapped(pkt.src) or _mapped(pkt.dst) or (pkt.inner is not None and pkt.family == 6 and (
            _mapped(pkt.inner[0]) or _mapped(pkt.inner[1]))):
        raise Drop("v4_mapped_address")
    if pkt.icmp_kind == "nd":
        raise Drop("neighbor_discovery")
    if _bad_destination(pkt.dst):
        raise Drop("bad_destination_address")


NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 1, 1, 4, 5, 0x80


def check_offload(pkt: Packet, offload: Optional[tuple]) -> None:
    """A frame's virtio-net header (flags, gso_type, hdr_len, gso_size, csum_start,
    csum_offset) must describe it: a partial checksum is the TCP or UDP checksum of
    a whole packet, and a GSO super-frame is TCP of its family or UDP, with one."""
    if not offload:
        return
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = offload
    if not flags & NEEDS_CSUM:
        if gso_type:
            raise Drop("bad_offload")
        return
    tcp, udp = pkt.proto == TCP, pkt.proto == UDP
    if pkt.fragment or not (tcp or udp) or csum_start != pkt.l4_at or csum_offset != (16 if tcp else 6):
        raise Drop("bad_offload")
    if not gso_type:
        return
    kind = gso_type & ~GSO_ECN
    if gso_size == 0 or (gso_type & GSO_ECN and not tcp) or not (
            (kind == GSO_TCPV4 and tcp and pkt.family == 4) or (kind == GSO_TCPV6 and tcp and pkt.family == 6)
            or (kind == GSO_UDP_L4 and udp)):
        raise Drop("bad_offload")
