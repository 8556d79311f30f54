"""Fragments: the first fragment decides, later ones follow its out port."""
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from conftest import A, A6, B, B6, ENDPOINTS, ID_B, SEC, X, E, Pipe, make_tables


def first(src=A, dst=B, fid=1, sport=10, proto_l4=None):
    l4 = proto_l4 if proto_l4 is not None else UDP(sport=sport, dport=53)
    return E / IP(src=src, dst=dst, id=fid, flags="MF") / l4 / Raw(b"x" * 16)


def later(src=A, dst=B, fid=1, proto=17, mf=False):
    return E / IP(src=src, dst=dst, id=fid, frag=3, proto=proto, flags="MF" if mf else 0) / Raw(b"y" * 24)


def test_first_decides(pipe):
    r = pipe.one(first(), 1, now=0)
    assert (r.reason, r.out_port, r.sport, r.dport) == ("new", 2, 10, 53)
    assert pipe.state(A, B, 10, 53, 17) == "UDP_FIRST"
    assert __import__("conftest").lib.ns_pipeline_fragments(pipe.p) == 1
    r = pipe.one(later(mf=True), 1, now=SEC)
    assert (r.verdict, r.reason, r.out_port, r.sport, r.dport, r.ct, r.proto) == \
        ("FORWARD", "fragment", 2, 0, 0, "none", 17)
    assert pipe.one(later(), 1, now=2 * SEC).reason == "fragment"
    assert pipe.one(later(fid=2), 1, now=2 * SEC).reason == "fragment_unknown"
    assert pipe.one(later(proto=6), 1, now=2 * SEC).reason == "fragment_unknown"
    # an unsupported protocol is not parsed in a later fragment
    assert pipe.one(later(proto=47), 1).reason == "fragment_unknown"
    # the entry lives 30 s from the first fragment
    assert pipe.one(later(), 1, now=30 * SEC - 1).reason == "fragment"
    assert pipe.one(later(), 1, now=30 * SEC).reason == "fragment_unknown"
    # later fragments still pass anti-spoofing first; their route is their first's
    assert pipe.one(later(), 2).reason == "spoofed_source"
    assert pipe.one(later(src=X, dst="9.9.9.9"), 0).reason == "fragment_unknown"


def test_denied_first_fragment_drops_the_rest():
    p = Pipe(make_tables(endpoints=ENDPOINTS, isolation={ID_B: 1}))
    assert p.one(first(), 1).reason == "denied_ingress"
    assert p.one(later(), 1).reason == "fragment_unknown"
    assert p.counter("fragment_unknown") == 1


def test_fragment_of_established_flow(pipe):
    pipe.one(E / IP(src=A, dst=B) / TCP(sport=5, dport=80, flags="S"), 1)
    r = pipe.one(first(proto_l4=TCP(sport=5, dport=80, flags="A"), fid=9), 1)
    assert r.reason == "established"
    assert pipe.one(later(fid=9, proto=6), 1).reason == "fragment"


def test_fragment_table_full():
    p = Pipe(make_tables(endpoints=ENDPOINTS), fragments=2)
    res = p.run([(first(fid=i, sport=i), 1) for i in (1, 2, 3)], now=0)
    assert [r.reason for r in res] == ["new", "new", "fragment_table_full"]
    assert res[2].out_port == 0 and res[2].verdict == "DROP"
    # the third connection stays committed
    assert p.state(A, B, 3, 53, 17) == "UDP_FIRST"
    assert p.one(later(fid=3), 1).reason == "fragment_unknown"
    # re-recording an existing key is not an insert
    assert p.one(first(fid=1, sport=1), 1).reason == "established"
    # expired entries are reclaimed when the table is full
    assert p.one(first(fid=3, sport=3), 1, now=31 * SEC).reason == "new"
    assert p.one(later(fid=3), 1, now=32 * SEC).reason == "fragment"


def test_ipv6_fragments(pipe):
    f1 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=77, m=1, offset=0) / UDP(sport=1, dport=2) / Raw(b"z" * 8)
    f2 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=77, m=0, offset=2, nh=17) / Raw(b"z" * 48)
    f3 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=78, m=0, offset=2, nh=17) / Raw(b"z" * 48)
    assert pipe.one(f1, 1).reason == "new"
    r = pipe.one(f2, 1)
    assert (r.reason, r.out_port, r.family, r.proto) == ("fragment", 2, 6, 17)
    assert pipe.one(f3, 1).reason == "fragment_unknown"
    # an atomic fragment (offset 0, M=0) is a whole packet
    f4 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=79, m=0, offset=0) / UDP(sport=3, dport=4)
    assert pipe.one(f4, 1).reason == "new"


def test_first_fragment_udp_length_beyond_payload(pipe):
    # docs/pipeline.md: a first fragment may claim a UDP length beyond its payload
    r = pipe.one(first(proto_l4=UDP(sport=1, dport=53, len=100)), 1)
    assert (r.reason, r.sport, r.dport) == ("new", 1, 53)
    assert pipe.one(later(), 1).reason == "fragment"
    # a whole datagram may not
    assert pipe.one(E / IP(src=A, dst=B) / UDP(sport=1, dport=53, len=100), 1).reason == "bad_l4_header"


def test_ipv6_later_fragment_is_not_walked(pipe):
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt
    f1 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=5, m=1) / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2)
    # the later fragment's data would be a bad extension header if it were walked
    f2 = E / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=5, m=0, offset=3, nh=60) / Raw(b"\xff" * 8)
    assert pipe.one(f1, 1).reason == "new"
    r = pipe.one(f2, 1)
    assert (r.reason, r.proto) == ("fragment", 60)
