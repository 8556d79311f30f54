"""Sanity filter: every parse/address reason, ordering, tuple filling."""

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NS, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrHopByHop)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.packet import Raw

from conftest import A, A6, B, B6, ENDPOINTS, REASONS, X, Pipe, a16, lib, make_tables

from conftest import E  # noqa: E402


def syn(src=A, dst=B, **kw):
    return E / IP(src=src, dst=dst, **kw) / TCP(sport=1234, dport=80, flags="S")


def test_reason_table():
    assert REASONS == [
        "established", "reply", "new", "related", "fragment", "arp", "neighbor_discovery",
        "truncated_ethernet", "unsupported_ethertype", "truncated_ip", "bad_ip_version",
        "bad_ip_header_length", "bad_ip_total_length", "bad_ip_checksum",
        "bad_ipv6_extension", "unsupported_protocol", "truncated_l4", "bad_l4_header",
        "bad_source_address", "bad_destination_address", "spoofed_source", "no_route",
        "fragment_unknown", "fragment_table_full", "no_connection",
        "icmp_error_no_connection", "unsupported_icmp", "denied_egress", "denied_ingress",
        "conntrack_full", "v4_mapped_address", "icmp_error_misdirected", "connection_closed",
        "service_port_unknown", "conntrack_clash", "service_no_backend", "snat_ports_exhausted",
        "pod_address_not_routed", "network_unreachable", "denied_admin_egress", "denied_admin_ingress",
        "denied_baseline_egress", "denied_baseline_ingress", "conntrack_pod_limit", "bad_offload"]
    assert lib.ns_reason_name(len(REASONS)) == lib.ns_reason_name(-1)


def test_ethernet(pipe):
    assert pipe.one(b"\0" * 13, 1).reason == "truncated_ethernet"
    assert pipe.one(bytes(E)[:12] + b"\x81\x00\x00", 1).reason == "truncated_ethernet"
    r = pipe.one(E / ARP(), 1)
    assert (r.verdict, r.reason, r.family, r.proto, r.src) == ("LOCAL", "arp", 0, 0, b"\0" * 16)
    assert pipe.one(E / Dot1Q(vlan=5) / ARP(), 1).reason == "arp"
    assert pipe.one(Ether(type=0x88cc) / Raw(b"x" * 40), 1).reason == "unsupported_ethertype"
    # a second VLAN tag is an unsupported ethertype
    assert pipe.one(E / Dot1Q() / Dot1Q() / IP(), 1).reason == "unsupported_ethertype"
    r = pipe.one(E / Dot1Q(vlan=7) / IP(src=A, dst=B) / TCP(flags="S"), 1)
    assert (r.reason, r.out_port) == ("new", 2)


def test_ipv4_header(pipe):
    good = bytes(syn())
    assert pipe.one(good[:14 + 19], 1).reason == "truncated_ip"
    r = pipe.one(good[:14 + 19], 1)
    assert r.family == 0
    bad = bytearray(good)
    bad[14] = 0x55
    assert pipe.one(bytes(bad), 1).reason == "bad_ip_version"
    assert pipe.one(bytes(E / IP(src=A, dst=B, ihl=4) / TCP()), 1).reason == "bad_ip_header_length"
    assert pipe.one(bytes(E / IP(src=A, dst=B, ihl=15) / TCP()), 1).reason == "bad_ip_header_length"
    assert pipe.one(bytes(E / IP(src=A, dst=B, len=19) / TCP()), 1).reason == "bad_ip_total_length"
    assert pipe.one(bytes(E / IP(src=A, dst=B, len=200) / TCP()), 1).reason == "bad_ip_total_length"
    r = pipe.one(bytes(E / IP(src=A, dst=B, chksum=0x1234) / TCP()), 1)
    # the tuple is filled as far as parsing got
    assert (r.reason, r.family, r.proto, r.src) == ("bad_ip_checksum", 4, 6, a16(A))
    # options are skipped; padding after the total length is ignored
    assert pipe.one(E / IP(src=A, dst=B, options=[b"\x01" * 4]) / TCP(flags="S"), 1).reason == "new"
    assert pipe.one(bytes(syn()) + b"\0" * 30, 1).reason == "new"
    assert pipe.one(bytes(syn()) + b"\0" * 30, 1).reason == "established"


def test_ipv6_header(pipe):
    g = bytes(E / IPv6(src=A6, dst=B6) / TCP(flags="S"))
    assert pipe.one(g[:14 + 39], 1).reason == "truncated_ip"
    bad = bytearray(g)
    bad[14] = 0x40
    assert pipe.one(bytes(bad), 1).reason == "bad_ip_version"
    assert pipe.one(E / IPv6(src=A6, dst=B6, plen=100) / TCP(), 1).reason == "bad_ip_total_length"
    ext = IPv6ExtHdrHopByHop()
    for _ in range(8):
        ext = ext / IPv6ExtHdrDestOpt()
    assert pipe.one(E / IPv6(src=A6, dst=B6) / ext / TCP(flags="S"), 1).reason == "bad_ipv6_extension"
    ok = IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    r = pipe.one(E / IPv6(src=A6, dst=B6) / ok / TCP(sport=5, dport=6, flags="S"), 1)
    assert (r.reason, r.proto, r.sport, r.dport, r.family) == ("new", 6, 5, 6, 6)
    # an extension header that runs past the payload
    raw = bytes(E / IPv6(src=A6, dst=B6, nh=60, plen=8) / Raw(bytes([6, 3]) + b"\0" * 6))
    assert pipe.one(raw, 1).reason == "bad_ipv6_extension"
    assert pipe.one(E / IPv6(src=A6, dst=B6, nh=47) / Raw(b"x" * 20), 1).reason == "unsupported_protocol"
    # ICMP (1) is v4 only
    assert pipe.one(E / IPv6(src=A6, dst=B6, nh=1) / Raw(b"\x08" + b"\0" * 7), 1).reason == "unsupported_protocol"


def test_l4(pipe):
    assert pipe.one(E / IP(src=A, dst=B, proto=47) / Raw(b"x" * 20), 1).reason == "unsupported_protocol"
    # ICMPv6 (58) is v6 only
    assert pipe.one(E / IP(src=A, dst=B, proto=58) / Raw(b"x" * 20), 1).reason == "unsupported_protocol"
    assert pipe.one(E / IP(src=A, dst=B, proto=6) / Raw(b"x" * 19), 1).reason == "truncated_l4"
    assert pipe.one(E / IP(src=A, dst=B) / TCP(dataofs=4), 1).reason == "bad_l4_header"
    assert pipe.one(E / IP(src=A, dst=B) / TCP(dataofs=6), 1).reason == "bad_l4_header"
    assert pipe.one(E / IP(src=A, dst=B, proto=17) / Raw(b"x" * 7), 1).reason == "truncated_l4"
    assert pipe.one(E / IP(src=A, dst=B) / UDP(len=7), 1).reason == "bad_l4_header"
    assert pipe.one(E / IP(src=A, dst=B) / UDP(len=30), 1).reason == "bad_l4_header"
    assert pipe.one(E / IP(src=A, dst=B) / SCTP(), 1).reason == "truncated_l4"
    assert pipe.one(E / IP(src=A, dst=B) / SCTP() / SCTPChunkInit(), 1).reason == "new"
    assert pipe.one(E / IP(src=A, dst=B, proto=1) / Raw(b"\x08" * 7), 1).reason == "truncated_l4"
    # ICMP error with a short inner header
    assert pipe.one(E / IP(src=X, dst=A) / ICMP(type=3, code=1) / Raw(b"\x45" + b"\0" * 10), 0).reason == "truncated_l4"
    assert pipe.one(E / IP(src=X, dst=A) / ICMP(type=3, code=1), 0).reason == "truncated_l4"
    inner = bytes(IP(src=A, dst=X) / UDP(sport=1, dport=2))[:24]
    assert pipe.one(E / IP(src=X, dst=A) / ICMP(type=3) / Raw(inner), 0).reason == "truncated_l4"


def test_addresses(pipe):
    for src in ("224.0.0.1", "255.255.255.255", "0.0.0.0", "127.0.0.1"):
        assert pipe.one(syn(src=src), 0).reason == "bad_source_address", src
    for dst in ("224.0.0.1", "255.255.255.255", "0.0.0.0", "127.0.0.1", "169.254.1.1"):
        assert pipe.one(syn(dst=dst), 1).reason == "bad_destination_address", dst
    for src in ("ff02::1", "::", "::1"):
        assert pipe.one(E / IPv6(src=src, dst=B6) / TCP(flags="S"), 0).reason == "bad_source_address"
    for dst in ("ff02::1", "::", "::1", "fe80::1"):
        assert pipe.one(E / IPv6(src=A6, dst=dst) / TCP(flags="S"), 1).reason == "bad_destination_address"
    # link-local IPv4 source is fine (then no route from the uplink)
    assert pipe.one(syn(src="169.254.1.1"), 0).reason == "new"
    # bad source wins over bad destination
    assert pipe.one(syn(src="0.0.0.0", dst="0.0.0.0"), 0).reason == "bad_source_address"


def test_neighbor_discovery(pipe):
    r = pipe.one(E / IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=B6), 1)
    assert (r.verdict, r.reason, r.family, r.proto) == ("LOCAL", "neighbor_discovery", 6, 58)
    # the source check comes first
    r = pipe.one(E / IPv6(src="ff02::1", dst="ff02::1") / ICMPv6ND_NS(tgt=B6), 1)
    assert r.reason == "bad_source_address"


def test_the_outside_reaches_pods_only_through_services_unless_routed():
    p = Pipe(make_tables(endpoints=ENDPOINTS, options=0))
    for port in (0, 0xFFFF):
        r = p.one(syn(src=X, dst=B), port)
        assert (r.verdict, r.reason, r.out_port) == ("DROP", "pod_address_not_routed", 0)
    assert p.one(syn(src=A, dst=B), 1).reason == "new"      # pods are inside
    assert p.one(syn(src=A, dst=X), 1).reason == "new"      # and go out


def test_spoofing_and_routes(pipe):
    assert pipe.one(syn(src=A, dst=B), 2).reason == "spoofed_source"   # A is on port 1
    assert pipe.one(syn(src=X, dst=B), 1).reason == "spoofed_source"   # not an endpoint
    assert pipe.one(syn(src=A, dst=B), 0).reason == "spoofed_source"   # pod from uplink
    r = pipe.one(syn(src=X, dst="9.9.9.9"), 0)
    assert (r.reason, r.out_port) == ("no_route", 0)
    r = pipe.one(syn(src=A, dst=X), 1)
    assert (r.reason, r.out_port, r.verdict) == ("new", 0, "FORWARD")
    r = pipe.one(syn(src=X, dst=B), 0)
    assert (r.reason, r.out_port) == ("new", 2)
    # unknown arrival port: no anti-spoofing, arrival = the source pod's port
    r = pipe.one(syn(src=B, dst="9.9.9.9"), 0xFFFF)
    assert (r.reason, r.out_port) == ("new", 0)
    assert pipe.one(syn(src=X, dst="9.9.9.8"), 0xFFFF).reason == "no_route"


def test_tuple_filled(pipe):
    r = pipe.one(E / IP(src=A, dst=B) / UDP(sport=1000, dport=53), 1)
    assert (r.family, r.proto, r.sport, r.dport, r.src, r.dst) == (4, 17, 1000, 53, a16(A), a16(B))
    assert r.src == b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1])
    r = pipe.one(E / IP(src=A, dst=B) / ICMP(type=8, id=77), 1)
    assert (r.sport, r.dport, r.ct) == (77, 77, "new")
    r = pipe.one(E / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=9), 1)
    assert (r.sport, r.dport, r.proto, r.family) == (9, 9, 58, 6)
    r = pipe.one(E / IP(src=A, dst=B) / ICMP(type=13), 1)
    assert (r.reason, r.sport, r.dport) == ("unsupported_icmp", 0, 0)
    assert pipe.counter("unsupported_icmp") == 1


def test_counters(pipe):
    frames = [(b"\0" * 5, 1)] * 3 + [(E / ARP(), 1)]
    pipe.run(frames)
    assert pipe.counter("truncated_ethernet") == 3
    assert pipe.counter("arp") == 1
    assert pipe.counter("new") == 0
