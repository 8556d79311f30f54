"""Every boundary of the sanity filter, enumerated: header lengths one short, exact and
one long; every version nibble and header length of an ICMP error's quoted packet;
IPv6 extension chains of every kind and length; L4 headers cut at every byte. Each
frame goes through the C pipeline and the oracle, which must agree; random
generators rarely land exactly on a boundary, a grid always does."""

import itertools
import struct

from scapy.all import ICMP, IP, SCTP, TCP, UDP, ICMPv6DestUnreach, IPv6, Raw, SCTPChunkInit, raw

from .packets import ether
from .test_regressions import A, A6, B, B6, PA, PB, PODS, Both

ETH4 = raw(ether())[:12] + b"\x08\x00"
ETH6 = raw(ether())[:12] + b"\x86\xdd"


def checksum(h: bytes) -> int:
    s = sum(struct.unpack(f"!{len(h) // 2}H", h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload: bytes, ihl=5, total=None, frag=0, good_sum=True) -> bytes:
    opts = b"\x01" * (max(ihl, 5) * 4 - 20)
    total = 20 + len(opts) + len(payload) if total is None else total
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total & 0xFFFF, 1, frag, 64, proto, 0,
                              bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))) + opts
    if good_sum:
        h[10:12] = struct.pack("!H", checksum(bytes(h[:max(ihl, 5) * 4])))
    return ETH4 + bytes(h) + payload


def opened(both):
    """Connections for the quoted packets to find: TCP, UDP, SCTP, ICMP echo, both families."""
    for pkt, port in ((IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags="S"), PA),
                      (IP(src=A, dst=B) / UDP(sport=1000, dport=80), PA),
                      (IP(src=A, dst=B) / SCTP(sport=1000, dport=80) / SCTPChunkInit(), PA),
                      (IP(src=A, dst=B) / ICMP(type=8, id=7), PA),
                      (IPv6(src=A6, dst=B6) / TCP(sport=1000, dport=80, flags="S"), PA),
                      (IPv6(src=A6, dst=B6) / UDP(sport=1000, dport=80), PA)):
        assert both.run(ether() / pkt, port).reason == "new"


def test_icmpv4_errors_quoting_every_shape():
    both = Both(PODS)
    opened(both)
    inners = []
    for l4 in (TCP(sport=1000, dport=80), UDP(sport=1000, dport=80), SCTP(sport=1000, dport=80),
               ICMP(type=8, id=7), ICMP(type=0, id=7), ICMP(type=3)):
        inners.append(raw(IP(src=A, dst=B) / l4))
        inners.append(raw(IP(src=B, dst=A, proto=l4.overload_fields.get(IP, {}).get("proto", 6)) / l4))
    inners.append(raw(IP(src=A, dst=B, proto=47) / Raw(b"\x00" * 8)))
    reasons = set()
    for q in inners:
        for version, ihl in itertools.product((4, 5, 6), (4, 5, 6, 15)):
            quoted = bytes([(version << 4) | ihl]) + q[1:]
            hl = ihl * 4
            for cut in sorted({0, 8, 19, 20, 21, hl - 1, hl, hl + 7, hl + 8, hl + 9, len(quoted)}):
                if cut < 0:
                    continue
                for src, dst, port in ((B, A, PB), (A, B, PA), ("198.19.7.7", A, 0)):
                    frame = raw(ether() / IP(src=src, dst=dst) / ICMP(type=3, code=3) / Raw(quoted[:cut]))
                    reasons.add(both.run(frame, port).reason)
    assert {"related", "icmp_error_no_connection", "icmp_error_misdirected", "truncated_l4",
            "bad_l4_header"} <= reasons, reasons


def test_icmpv6_errors_quoting_every_shape():
    both = Both(PODS)
    opened(both)
    reasons = set()
    quotes = [raw(IPv6(src=A6, dst=B6) / TCP(sport=1000, dport=80)),
              raw(IPv6(src=B6, dst=A6) / TCP(sport=80, dport=1000)),
              raw(IPv6(src=A6, dst=B6) / UDP(sport=1000, dport=80)),
              raw(IPv6(src=A6, dst=B6, nh=58) / Raw(bytes([128, 0, 0, 0, 0, 7, 0, 1]))),
              raw(IPv6(src=A6, dst=B6, nh=58) / Raw(bytes([129, 0, 0, 0, 0, 7, 0, 1]))),
              raw(IPv6(src=A6, dst=B6, nh=0) / Raw(b"\x06" + b"\x00" * 7)),
              raw(IP(src=A, dst=B) / TCP(sport=1000, dport=80)) + b"\x00" * 20]
    for q in quotes:
        for version in (4, 6, 7):
            quoted = bytes([(version << 4) | (q[0] & 0x0F)]) + q[1:]
            for cut in (0, 8, 39, 40, 41, 47, 48, 49, len(quoted)):
                for src, dst, port in ((B6, A6, PB), (A6, B6, PA)):
                    frame = raw(ether() / IPv6(src=src, dst=dst) / ICMPv6DestUnreach() / Raw(quoted[:cut]))
                    reasons.add(both.run(frame, port).reason)
    assert {"related", "icmp_error_no_connection", "icmp_error_misdirected", "truncated_l4",
            "bad_l4_header"} <= reasons, reasons


def test_ipv4_headers_at_every_boundary():
    both = Both(PODS)
    reasons = set()
    tcp = raw(TCP(sport=3000, dport=80, flags="S"))
    for ihl, extra, frag, good in itertools.product((0, 4, 5, 6, 15), (-1, 0, 1, 40), (0, 0x2000, 0x0001, 0x2001, 0x4000),
                                                    (True, False)):
        hl = max(ihl, 5) * 4
        total = hl + len(tcp) + extra
        frame = ipv4(A, B, 6, tcp, ihl=ihl, total=total, frag=frag, good_sum=good)
        for cut in (len(frame), 14 + 19, 14 + 20, 14 + hl):
            reasons.add(both.run(frame[:cut], PA).reason)
    assert {"truncated_ip", "bad_ip_header_length", "bad_ip_total_length", "bad_ip_checksum", "new",
            "fragment_unknown"} <= reasons, reasons


def test_ipv6_extension_chains():
    both = Both(PODS)
    reasons = set()
    hops = {0: b"\x00\x00" + b"\x00" * 6, 43: b"\x00\x00" + b"\x00" * 6, 60: b"\x00\x01" + b"\x00" * 14,
            44: None}
    for chain in itertools.chain.from_iterable(itertools.product(hops, repeat=n) for n in range(0, 3)):
        for last, body in ((6, raw(TCP(sport=4000, dport=80, flags="S"))), (17, raw(UDP(sport=4000, dport=80))),
                           (58, bytes([128, 0, 0, 0, 0, 9, 0, 1])), (59, b""), (50, b"\x00" * 8)):
            for frag in (0x0000, 0x0001, 0x0008, 0x0009):
                payload = body
                nexts = list(chain[1:]) + [last]
                for h, nh in reversed(list(zip(chain, nexts))):
                    if h == 44:
                        payload = struct.pack("!BBHI", nh, 0, frag, 77) + payload
                    else:
                        payload = bytes([nh]) + hops[h][1:] + payload
                first = chain[0] if chain else last
                ip6 = raw(IPv6(src=A6, dst=B6, nh=first, plen=len(payload)))
                frame = ETH6 + ip6 + payload
                for cut in sorted({len(frame), 14 + 40, 14 + 41, 14 + 47, 14 + 48, len(frame) - 1}):
                    reasons.add(both.run(frame[:cut], PA).reason)
    # nine headers: one too many
    nine = b"".join(bytes([0]) + b"\x00" * 7 for _ in range(8)) + bytes([6]) + b"\x00" * 7 + \
        raw(TCP(sport=1, dport=80, flags="S"))
    reasons.add(both.run(ETH6 + raw(IPv6(src=A6, dst=B6, nh=0, plen=len(nine))) + nine, PA).reason)
    assert {"bad_ipv6_extension", "bad_ip_total_length", "unsupported_protocol", "new",
            "fragment_unknown"} <= reasons, reasons


def test_l4_headers_cut_at_every_byte():
    both = Both(PODS)
    reasons = set()
    for l4 in (TCP(sport=5000, dport=80, flags="S", dataofs=5), TCP(sport=5001, dport=80, flags="S", dataofs=4),
               TCP(sport=5002, dport=80, flags="S", dataofs=15), TCP(sport=5003, dport=80, flags="S") / Raw(b"x" * 40),
               UDP(sport=5004, dport=80, len=8), UDP(sport=5005, dport=80, len=7), UDP(sport=5006, dport=80, len=30),
               SCTP(sport=5007, dport=80) / SCTPChunkInit(), ICMP(type=8, id=3), ICMP(type=13)):
        for fam in (4, 6):
            pkt = (IP(src=A, dst=B) if fam == 4 else IPv6(src=A6, dst=B6)) / l4
            whole = raw(ether() / pkt)
            head = 14 + (20 if fam == 4 else 40)
            for cut in range(head, min(len(whole), head + 44) + 1):
                body = whole[head:cut]
                if fam == 4:
                    frame = ipv4(A, B, pkt[IP].proto, body)
                else:
                    frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=pkt[IPv6].nh, plen=len(body))) + body
                reasons.add(both.run(frame, PA).reason)
    assert {"truncated_l4", "bad_l4_header", "new", "unsupported_icmp"} <= reasons, reasons


def test_ipv6_extension_limits_and_consistent_truncations():
    both = Both(PODS)
    tcp = raw(TCP(sport=4100, dport=80, flags="S"))
    for n, want in ((8, "new"), (9, "bad_ipv6_extension")):
        chain = b"".join(bytes([0]) + b"\x00" * 7 for _ in range(n - 1)) + bytes([6]) + b"\x00" * 7
        frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=0, plen=len(chain) + len(tcp))) + chain + tcp
        assert both.run(frame, PA).reason == want, n
    # the payload length agrees with the frame, but ends inside an extension header
    # (a hop-by-hop header naming UDP next, too: the cut is the header's, not UDP's)
    for ext in (b"\x00\x01" + b"\x00" * 14, b"\x11\x01" + b"\x00" * 14, struct.pack("!BBHI", 6, 0, 1, 9)):
        nh = 0 if len(ext) == 16 else 44
        for cut in range(0, len(ext) + 1):
            body = ext[:cut]
            frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=nh, plen=len(body))) + body
            r = both.run(frame, PA)
            assert r.reason == ("truncated_l4" if cut == len(ext) and ext[0] else "bad_ipv6_extension"), (ext, cut)
    # a payload length with its top bit set
    big = raw(UDP(sport=4200, dport=80)) + b"b" * 40000
    assert both.run(ETH6 + raw(IPv6(src=A6, dst=B6, nh=17, plen=len(big))) + big, PA).reason == "new"


def test_atomic_fragments_are_whole_packets():
    both = Both(PODS)
    short = struct.pack("!HHHH", 4300, 80, 200, 0) + b"u" * 8     # UDP length > the payload
    atomic = struct.pack("!BBHI", 17, 0, 0, 31)                  # offset 0, M = 0
    frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=44, plen=len(atomic) + len(short))) + atomic + short
    assert both.run(frame, PA).reason == "bad_l4_header"          # not a first fragment
    ok = struct.pack("!HHHH", 4301, 80, 16, 0) + b"u" * 8
    frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=44, plen=len(atomic) + len(ok))) + atomic + ok
    assert both.run(frame, PA).reason == "new"
    later = struct.pack("!BBHI", 17, 0, 8, 31) + b"l" * 8
    frame = ETH6 + raw(IPv6(src=A6, dst=B6, nh=44, plen=len(later))) + later
    assert both.run(frame, PA).reason == "fragment_unknown"       # nothing recorded for it


def test_ipv4_header_checksums_of_every_kind():
    import random
    rnd = random.Random(5)
    both = Both(PODS)
    for i in range(3000):
        ihl = rnd.choice([5, 5, 6, 15])
        frame = bytearray(ipv4(A, B, 17, raw(UDP(sport=i % 60000 + 1, dport=80)), ihl=ihl, frag=rnd.randrange(65536)))
        frame[15] = rnd.randrange(256)                   # TOS
        frame[18:20] = rnd.randrange(65536).to_bytes(2, "big")   # identification
        frame[22] = rnd.randrange(1, 256)                # TTL
        hl = ihl * 4
        frame[24:26] = b"\x00\x00"
        frame[34:14 + hl] = bytes(rnd.randrange(256) for _ in range(hl - 20))
        good = checksum(bytes(frame[14:14 + hl]))
        frame[24:26] = struct.pack("!H", good if rnd.random() < 0.7 else rnd.randrange(65536))
        both.run(bytes(frame), PA)


def test_ethernet_headers_cut_at_every_byte_with_and_without_a_vlan_tag():
    both = Both(PODS)
    udp = raw(IP(src=A, dst=B) / UDP(sport=4400, dport=80))
    tagged = ETH4[:12] + b"\x81\x00\x00\x05" + ETH4[12:] + udp
    for cut in range(0, 19):
        assert both.run(tagged[:cut], PA).reason == ("truncated_ethernet" if cut < 18 else "truncated_ip"), cut
    assert both.run(tagged, PA).reason == "new"
    for cut in range(0, 15):
        assert both.run((ETH4 + udp)[:cut], PA).reason == ("truncated_ethernet" if cut < 14 else "truncated_ip"), cut


def test_every_address_class_as_source_and_destination():
    """Multicast, broadcast, unspecified and loopback sources; those and link-local
    destinations; IPv4-mapped addresses anywhere, including either end of a quoted
    packet alone. Each has one reason, in both families, in C and in the oracle."""
    both = Both(PODS)
    bad_src = {4: ("224.0.0.1", "239.1.2.3", "255.255.255.255", "0.0.0.0", "127.0.0.1", "127.9.9.9"),
               6: ("ff02::1", "ff05::2", "::", "::1")}
    bad_dst = {4: bad_src[4] + ("169.254.1.1", "169.254.255.254"), 6: bad_src[6] + ("fe80::1", "febf::1")}
    fine_src = {4: ("169.254.1.1",), 6: ("fe80::1", "fec0::1")}
    for fam, (l3, a, b, port) in {4: (IP, A, B, PA), 6: (IPv6, A6, B6, PA)}.items():
        for s in bad_src[fam]:
            for d in (b, bad_dst[fam][0]):
                assert both.run(ether() / l3(src=s, dst=d) / UDP(sport=1, dport=80), port).reason \
                    == "bad_source_address", (s, d)
        for s in fine_src[fam]:
            assert both.run(ether() / l3(src=s, dst=b) / UDP(sport=1, dport=80), port).reason \
                not in ("bad_source_address", "bad_destination_address"), s
        for d in bad_dst[fam]:
            assert both.run(ether() / l3(src=a, dst=d) / UDP(sport=1, dport=80), port).reason \
                == "bad_destination_address", d
    mapped = "::ffff:" + B
    for s, d in ((mapped, B6), (A6, mapped)):
        assert both.run(ether() / IPv6(src=s, dst=d) / UDP(sport=1, dport=80), PA).reason == "v4_mapped_address"
        quoted = raw(IPv6(src=s, dst=d) / UDP(sport=1, dport=80))
        frame = ether() / IPv6(src=B6, dst=A6) / ICMPv6DestUnreach() / Raw(quoted)
        assert both.run(frame, PB).reason == "v4_mapped_address", (s, d)


def test_unassigned_ports_and_unparsed_frames_as_users_see_them():
    """A frame on a port no attachment holds is spoofed, whatever its source; a frame
    too short to parse has no addresses in its record (null, not the text "None")."""
    both = Both(PODS)
    for port in (PA + 97, 1000, 0xFFFE):
        assert both.run(ether() / IP(src=A, dst=B) / UDP(sport=1, dport=80), port).reason == "spoofed_source"
    frame = raw(ether() / IP(src=A, dst=B) / UDP(sport=1, dport=80))[:20]
    native = both.run(frame, PA)
    oracle = both.oracle.process(frame, PA, 2 * 10**9)
    for r in (native, oracle):
        assert (r.verdict, r.reason, r.src, r.dst, r.out_port) == ("drop", "truncated_ip", None, None, 0), r


def test_outside_to_outside_is_never_routed_and_a_denial_names_the_side_that_allowed():
    """An ICMP error about a connection from outside, sent from one outside address to
    another, has no port to go to (no_route), on the uplink and in replay alike; sent
    by the pod, it is related. A connection that egress allows by a rule and ingress
    denies reports that egress rule with the denial, in C and in the oracle."""
    from .test_regressions import DENY_INGRESS
    allow_out = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-out, namespace: t}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{ports: [{port: 80}]}]}
"""
    from pipeline.model.cluster import ClusterConfig
    routed = ClusterConfig(route_pod_addresses=True)
    both = Both(PODS + DENY_INGRESS + allow_out, routed)
    syn = IP(src="198.19.200.1", dst=A) / TCP(sport=1000, dport=80, flags="S")
    assert both.run(ether() / syn, 0).reason == "denied_ingress"
    both = Both(PODS + allow_out, routed)
    assert both.run(ether() / syn, 0).reason == "new"
    for port in (0, 0xFFFF):
        away = ether() / IP(src="198.19.200.9", dst="198.19.200.1") / ICMP(type=3, code=4) / Raw(raw(syn)[:28])
        assert both.run(away, port).reason == "no_route"
        back = ether() / IP(src=A, dst="198.19.200.1") / ICMP(type=3, code=4) / Raw(raw(syn)[:28])
        assert both.run(back, PA if port == 0 else port).reason == "related"
        assert both.run(ether() / IP(src="198.19.200.1", dst="198.19.200.2") / TCP(flags="S"), port).reason \
            == "no_route"
    both = Both(PODS + DENY_INGRESS + allow_out)
    r = both.run(ether() / IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags="S"), PA)
    assert r.reason == "denied_ingress" and r.egress_rule is not None and r.ingress_rule is None, r


def test_a_fragmented_icmp_error_is_related_and_its_later_fragment_follows():
    both = Both(PODS)
    syn = IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags="S")
    assert both.run(ether() / syn, PA).reason == "new"
    icmp = raw(ICMP(type=3, code=4) / Raw(raw(syn)[:28] + b"x" * 36))
    first = IP(src=B, dst=A, id=77, flags="MF", proto=1) / Raw(icmp[:40])
    later = IP(src=B, dst=A, id=77, frag=5, proto=1) / Raw(icmp[40:])
    assert both.run(ether() / first, PB, 2 * 10**9).reason == "related"
    r = both.run(ether() / later, PB, 3 * 10**9)
    assert (r.reason, r.out_port) == ("fragment", PA)
