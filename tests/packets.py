"""Random packet sequences for differential tests: flows and their continuations,
spoofing, outside traffic, malformed frames, fragments, ICMP errors, time jumps."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st
from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoReply,
                       ICMPv6EchoRequest, ICMPv6ND_NS, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       Raw, SCTP, SCTPChunkAbort, SCTPChunkData, SCTPChunkInit, SCTPChunkInitAck,
                       SCTPChunkShutdown, raw)

SECOND = 1_000_000_000


def ether():
    """Explicit MACs: a bare Ether() makes scapy resolve the destination by sending
    ARP requests on the host's network (and waiting for them)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
OUTSIDE4 = ["198.19.0.7", "198.19.200.5", "198.18.0.250"]
OUTSIDE6 = ["2001:db8::ff", "2001:db8:f::1"]
NODE4, NODE6 = "198.19.128.1", "2001:db8:3::1"      # the default node's addresses
CLOCK_END = (1 << 64) - 1
DPORTS = [53, 80, 81, 90, 8080, 100, 0, 65535]


def l3(src, dst, **kw):
    if ipaddress.ip_address(src).version == 4:
        return IP(src=src, dst=dst, **kw)
    return IPv6(src=src, dst=dst)


def l4(proto, sport, dport, what="open"):
    if proto == "TCP":
        flags = {"open": "S", "synack": "SA", "ack": "A", "fin": "FA", "rst": "R", "data": "PA"}[what]
        return TCP(sport=sport, dport=dport, flags=flags)
    if proto == "UDP":
        return UDP(sport=sport, dport=dport) / Raw(b"x" * 4)
    if proto == "SCTP":
        chunk = {"open": SCTPChunkInit(), "synack": SCTPChunkInitAck(), "ack": SCTPChunkData(data=b"d"),
                 "fin": SCTPChunkShutdown(), "rst": SCTPChunkAbort(), "data": SCTPChunkData(data=b"d")}[what]
        return SCTP(sport=sport, dport=dport) / chunk
    return None


def icmp_echo(family, ident, reply=False):
    if family == 4:
        return ICMP(type=0 if reply else 8, id=ident)
    return (ICMPv6EchoReply if reply else ICMPv6EchoRequest)(id=ident)


def mapped(ip: str) -> str:
    """An IPv4 address as IPv4-mapped IPv6 (what must never be taken for it)."""
    return "::ffff:" + ip


def padded(pkt, size: int):
    """The packet grown to `size` bytes of frame (jumbo and GSO-sized frames)."""
    room = size - len(raw(ether() / pkt))
    return pkt / Raw(b"p" * room) if room > 0 else pkt


@st.composite
def sequences(draw, pods, ports, max_len=30, extra_dsts=()):
    """pods: [(key, [ip str])], ports: key -> switch port; extra_dsts: addresses that
    are not pods' (Service VIPs, nodes). Yields (frame, in_port, now)."""
    addrs = [(k, ip) for k, ips in pods for ip in ips]
    now = SECOND
    if draw(st.integers(0, 9)) == 0:
        now = CLOCK_END - draw(st.sampled_from([1, 5, 40, 200])) * SECOND   # the end of the clock
    flows = []          # (src, dst, sport, dport, proto, src_port, dst_port)
    pending_later = []
    out = []
    for _ in range(draw(st.integers(1, max_len))):
        op = draw(st.sampled_from(["new", "new", "new", "cont", "cont", "cont", "spoof", "outside",
                                   "bad", "frag", "icmperr", "time", "vlan", "icmp3rd", "mapped", "big",
                                   "node", "extra", "close"]))
        if op == "time":
            now = min(now + draw(st.sampled_from([1, 5, 31, 121, 200, 90000])) * SECOND, CLOCK_END)
            continue
        if op in ("new", "spoof", "vlan") and addrs:
            k1, a = draw(st.sampled_from(addrs))
            fam = ipaddress.ip_address(a).version
            cands = [x for x in addrs if ipaddress.ip_address(x[1]).version == fam] + \
                    [(None, o) for o in (OUTSIDE4 if fam == 4 else OUTSIDE6)]
            k2, b = draw(st.sampled_from(cands))
            proto = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP", "ICMP"]))
            sport = draw(st.sampled_from([1000, 2000, 40000]))
            dport = draw(st.sampled_from(DPORTS))
            what = draw(st.sampled_from(["open", "open", "open", "ack", "synack"]))
            if proto == "ICMP":
                pkt = l3(a, b) / icmp_echo(fam, sport, reply=what == "synack")
                dport = sport
            else:
                pkt = l3(a, b) / l4(proto, sport, dport, what)
            in_port = ports[k1]
            if op == "spoof":
                in_port = draw(st.sampled_from([p for p in ports.values()] + [0, 0xFFFF]))
            eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            frame = raw((eth / Dot1Q(vlan=5) / pkt) if op == "vlan" else (eth / pkt))
            out.append((frame, in_port, now))
            flows.append((a, b, sport, dport, proto, ports[k1], ports.get(k2, 0)))
        elif op == "cont" and flows:
            a, b, sport, dport, proto, pa, pb = draw(st.sampled_from(flows))
            what = draw(st.sampled_from(["synack", "ack", "fin", "rst", "data", "open"]))
            reverse = draw(st.booleans())
            if reverse:
                a, b, sport, dport, pa, pb = b, a, dport, sport, pb, pa
            fam = ipaddress.ip_address(a).version
            if proto == "ICMP":
                # the other end answering, or pinging back with the same identifier
                pkt = l3(a, b) / icmp_echo(fam, sport, reply=reverse and what != "open")
            else:
                pkt = l3(a, b) / l4(proto, sport, dport, what)
            out.append((raw(ether() / pkt), pa, now))
        elif op == "outside" and addrs:
            k, b = draw(st.sampled_from(addrs))
            fam = ipaddress.ip_address(b).version
            a = draw(st.sampled_from(OUTSIDE4 if fam == 4 else OUTSIDE6))
            proto = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
            dport = draw(st.sampled_from(DPORTS))
            out.append((raw(ether() / l3(a, b) / l4(proto, 3333, dport)), draw(st.sampled_from([0, 0xFFFF])), now))
            flows.append((a, b, 3333, dport, proto, 0, ports[k]))
        elif op == "icmperr" and flows:
            a, b, sport, dport, proto, pa, pb = draw(st.sampled_from(flows))
            if proto == "ICMP":
                continue
            fam = ipaddress.ip_address(a).version
            quoted = raw(l3(a, b) / l4(proto, sport, dport))[:(20 if fam == 4 else 40) + 8]
            err = ICMP(type=3, code=3) if fam == 4 else ICMPv6DestUnreach(code=4)
            out.append((raw(ether() / l3(b, a) / err / Raw(quoted)), pb, now))
        elif op == "frag" and addrs:
            k1, a = draw(st.sampled_from(addrs))
            fam = ipaddress.ip_address(a).version
            k2, b = draw(st.sampled_from([x for x in addrs if ipaddress.ip_address(x[1]).version == fam]))
            dport = draw(st.sampled_from(DPORTS))
            ident = draw(st.integers(1, 3))
            first = draw(st.booleans())
            if first and draw(st.booleans()):
                # Often the later fragment follows its first one.
                pending_later.append((k1, a, b, dport, ident, fam))
            if fam == 4:
                hdr = IP(src=a, dst=b, id=ident, flags="MF" if first else 0, frag=0 if first else 3)
                body = UDP(sport=7, dport=dport) / Raw(b"y" * 32) if first else Raw(b"z" * 24)
                pkt = hdr / body
                if first:
                    pkt = IP(raw(pkt))
                    pkt[UDP].len = 200      # the datagram is longer than this fragment
                    del pkt[UDP].chksum
            else:
                fh = IPv6ExtHdrFragment(id=ident, m=1 if first else 0, offset=0 if first else 3, nh=17)
                body = UDP(sport=7, dport=dport) / Raw(b"y" * 32) if first else Raw(b"z" * 24)
                pkt = IPv6(src=a, dst=b) / fh / body
            frame = raw(ether() / pkt)
            out.append((frame, ports[k1], now))
            while pending_later:
                k1, a, b, dport, ident, fam = pending_later.pop()
                if fam == 4:
                    later = IP(src=a, dst=b, id=ident, frag=3, proto=17) / Raw(b"z" * 24)
                else:
                    later = IPv6(src=a, dst=b) / IPv6ExtHdrFragment(id=ident, m=0, offset=3, nh=17) / Raw(b"z" * 24)
                out.append((raw(ether() / later), ports[k1], now))
        elif op == "bad":
            out.append((draw(malformed(addrs, ports)), draw(st.sampled_from(list(ports.values()) + [0, 0xFFFF])), now))
        elif op == "icmp3rd" and flows and addrs:
            # An ICMP error quoting a flow, from one of its ends or a router, to anyone:
            # only the quoted packet's sender may receive it.
            a, b, sport, dport, proto, pa, pb = draw(st.sampled_from(flows))
            if proto == "ICMP":
                continue
            fam = ipaddress.ip_address(a).version
            k3, c = draw(st.sampled_from([x for x in addrs if ipaddress.ip_address(x[1]).version == fam]
                                         + [(None, a), (None, b)]))
            sender = draw(st.sampled_from([(b, pb), (a, pa), (OUTSIDE4[1] if fam == 4 else OUTSIDE6[1], 0)]))
            quoted = raw(l3(a, b) / l4(proto, sport, dport))[:(20 if fam == 4 else 40) + 8]
            err = ICMP(type=3, code=1) if fam == 4 else ICMPv6DestUnreach(code=1)
            out.append((raw(ether() / l3(sender[0], c) / err / Raw(quoted)), sender[1], now))
        elif op == "mapped" and addrs:
            # IPv6 packets from or to ::ffff:<a pod's IPv4 address>, and errors quoting one.
            k, a = draw(st.sampled_from(addrs))
            v4 = [x for _, x in addrs if ipaddress.ip_address(x).version == 4] or ["198.18.0.1"]
            b = draw(st.sampled_from(v4))
            kind = draw(st.sampled_from(["src", "dst", "error"]))
            if kind == "src":
                pkt = IPv6(src=mapped(b), dst=a if ":" in a else "2001:db8::1") / TCP(sport=1, dport=80, flags="S")
                port = draw(st.sampled_from([ports[k], 0, 0xFFFF]))
            elif kind == "dst":
                pkt = IPv6(src=a if ":" in a else "2001:db8::1", dst=mapped(b)) / UDP(sport=1, dport=80)
                port = draw(st.sampled_from([ports[k], 0xFFFF]))
            else:
                quoted = raw(IPv6(src=mapped(b), dst=mapped(OUTSIDE4[0])) / TCP(sport=1000, dport=80))[:48]
                dst = draw(st.sampled_from([mapped(b)] + [x for _, x in addrs if ":" in x]))
                pkt = IPv6(src=OUTSIDE6[1], dst=dst) / ICMPv6DestUnreach() / Raw(quoted)
                port = 0
            out.append((raw(ether() / pkt), port, now))
        elif op == "big" and addrs:
            # Frames over 2 KB: jumbo and GSO-sized, new or of a flow.
            size = draw(st.sampled_from([2049, 9000, 65000]))
            if flows and draw(st.booleans()):
                a, b, sport, dport, proto, pa, pb = draw(st.sampled_from(flows))
                if proto == "ICMP":
                    continue
                pkt, port = l3(a, b) / l4(proto, sport, dport, "data"), pa
            else:
                k, a = draw(st.sampled_from(addrs))
                b = draw(st.sampled_from([x for _, x in addrs if ipaddress.ip_address(x).version ==
                                          ipaddress.ip_address(a).version]))
                pkt, port = l3(a, b) / UDP(sport=7, dport=draw(st.sampled_from(DPORTS))), ports[k]
            if ipaddress.ip_address(pkt.src).version == 6 and size > 65000:
                size = 65000 - 40
            out.append((raw(ether() / padded(pkt, size)), port, now))
        elif op == "close" and flows:
            # A TCP flow closed by RST or by the FIN handshake, then more of it: only an
            # opening packet may follow.
            tcp_flows = [f for f in flows if f[4] == "TCP"]
            if not tcp_flows:
                continue
            a, b, sport, dport, proto, pa, pb = draw(st.sampled_from(tcp_flows))
            fwd = lambda w: (raw(ether() / l3(a, b) / l4("TCP", sport, dport, w)), pa, now)   # noqa: E731
            back = lambda w: (raw(ether() / l3(b, a) / l4("TCP", dport, sport, w)), pb, now)  # noqa: E731
            if draw(st.booleans()):
                out += [fwd("open"), back("synack"), fwd("ack"), back("rst")]
            else:
                out += [fwd("open"), back("synack"), fwd("ack"), fwd("fin"), back("fin"), fwd("ack")]
            out += [draw(st.sampled_from([fwd("data"), back("data"), fwd("ack"), fwd("open")]))]
        elif op == "node" and addrs:
            # The node (kubelet probes, hostNetwork pods) opens connections to pods.
            k, b = draw(st.sampled_from(addrs))
            fam = ipaddress.ip_address(b).version
            # the pods' node, or another address that is not a pod's (another node, a VIP)
            a = draw(st.sampled_from([NODE4 if fam == 4 else NODE6] +
                                     [x for x in extra_dsts if ipaddress.ip_address(x).version == fam]))
            if draw(st.integers(0, 4)) == 0:       # to no pod: nowhere to route it
                b = OUTSIDE4[0] if fam == 4 else OUTSIDE6[0]
            proto = draw(st.sampled_from(["TCP", "UDP", "ICMP"]))
            if proto == "ICMP":
                pkt, sport, dport = l3(a, b) / icmp_echo(fam, 77), 77, 77
            else:
                sport, dport = 4444, draw(st.sampled_from(DPORTS))
                pkt = l3(a, b) / l4(proto, sport, dport)
            out.append((raw(ether() / pkt), draw(st.sampled_from([0, 0xFFFF])), now))
            flows.append((a, b, sport, dport, proto, 0, ports.get(k, 0) if b not in OUTSIDE4 + OUTSIDE6 else 0))
        elif op == "extra" and addrs and extra_dsts:
            # To a Service VIP or a node: from a pod, and replies from there.
            k, a = draw(st.sampled_from(addrs))
            fam = ipaddress.ip_address(a).version
            dsts = [x for x in extra_dsts if ipaddress.ip_address(x).version == fam]
            if not dsts:
                continue
            b = draw(st.sampled_from(dsts))
            proto = draw(st.sampled_from(["TCP", "UDP"]))
            dport = draw(st.sampled_from(DPORTS))
            out.append((raw(ether() / l3(a, b) / l4(proto, 5555, dport)), ports[k], now))
            flows.append((a, b, 5555, dport, proto, ports[k], 0))
    return out


@st.composite
def malformed(draw, addrs, ports):
    k, a = draw(st.sampled_from(addrs)) if addrs else (None, "198.18.0.1")
    fam = ipaddress.ip_address(a).version
    b = "198.18.0.2" if fam == 4 else "2001:db8::2"
    good = raw(ether() / l3(a, b) / TCP(sport=1, dport=80, flags="S"))
    kind = draw(st.sampled_from(["trunc", "csum", "version", "ihl", "arp", "nd", "ethertype", "hbh",
                                 "mcast", "short_udp", "tcp_doff", "icmp_other", "totlen",
                                 "trunc_l4", "gre", "bad_src"]))
    if kind == "trunc_l4":
        # The IP header is whole; its total length leaves only 10 bytes of TCP.
        p = l3(a, b) / TCP(sport=1, dport=80, flags="S")
        p = p.__class__(raw(p))
        if fam == 4:
            p.len = 30
            del p.chksum
            return raw(ether() / IP(raw(p)[:30]))
        p.plen = 10
        return raw(ether() / p)[:14 + 50]
    if kind == "gre":
        return raw(ether() / l3(a, b) / Raw(b"\x00" * 8)) if fam == 6 else raw(ether() / IP(src=a, dst=b, proto=47) / Raw(b"\x00" * 8))
    if kind == "bad_src":
        return raw(ether() / l3("0.0.0.0" if fam == 4 else "::1", b) / UDP(sport=1, dport=2))
    if kind == "trunc":
        return good[:draw(st.integers(0, len(good) - 1))]
    if kind == "csum" and fam == 4:
        b2 = bytearray(good)
        b2[24] ^= 0xFF
        return bytes(b2)
    if kind == "version":
        b2 = bytearray(good)
        b2[14] = (b2[14] & 0x0F) | 0x50
        return bytes(b2)
    if kind == "ihl" and fam == 4:
        b2 = bytearray(good)
        b2[14] = 0x43
        return bytes(b2)
    if kind == "totlen":
        b2 = bytearray(good)
        if fam == 4:
            b2[16:18] = (2000).to_bytes(2, "big")
        else:
            b2[18:20] = (2000).to_bytes(2, "big")
        return bytes(b2)
    if kind == "arp":
        return raw(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=a if fam == 4 else "198.18.0.1", pdst="169.254.1.1"))
    if kind == "nd":
        return raw(ether() / IPv6(src="fe80::1:2", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::1"))
    if kind == "ethertype":
        return raw(Ether(type=0x88CC) / Raw(b"\x00" * 40))
    if kind == "hbh" and fam == 6:
        return raw(ether() / IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / TCP(sport=1, dport=80, flags="S"))
    if kind == "mcast":
        return raw(ether() / l3(a, "224.0.0.5" if fam == 4 else "ff02::5") / UDP(sport=1, dport=2))
    if kind == "short_udp":
        p = l3(a, b) / UDP(sport=1, dport=2, len=4)
        return raw(ether() / p)
    if kind == "tcp_doff":
        return raw(ether() / l3(a, b) / TCP(sport=1, dport=80, flags="S", dataofs=15))
    if kind == "icmp_other":
        return raw(ether() / IP(src=a if fam == 4 else "198.18.0.1", dst="198.18.0.2") / ICMP(type=13))
    return good
