"""Offloads (issue 12): GSO super-frames and partial checksums, in C and in the oracle
at once. A frame's virtio-net header must describe it, or it is dropped bad_offload; a
super-frame is judged once, as the one segment it is; and a translation updates a
partial checksum so that the kernel, completing it, writes the right one."""

import struct

from hypothesis import given, settings, strategies as st
from scapy.all import IP, TCP, UDP, ICMP, IPv6, IPv6ExtHdrDestOpt, Raw, raw

from pipeline._native import ffi, lib

from .packets import ether
from .test_regressions import A, A6, B, B6, PA, PODS, Both

SEC = 1_000_000_000
NEEDS_CSUM = 1
TCPV4, UDP_UFO, TCPV6, UDP_L4, ECN = 1, 3, 4, 5, 0x80


def run(both, frame, port, offload, now=SEC):
    frame = raw(frame) if not isinstance(frame, bytes) else frame
    native = both.dp.run_batch([frame], [port], now, [offload])[0]
    oracle = both.oracle.process(frame, port, now, offload)
    assert native.comparable() == oracle.comparable(), (native, oracle, offload)
    return native


def tcp4(payload=b"", flags="S", sport=1000):
    return raw(ether() / IP(src=A, dst=B) / TCP(sport=sport, dport=80, flags=flags) / Raw(payload))


def test_a_super_frame_is_one_segment_of_its_connection():
    both = Both(PODS)
    big = b"x" * 60000
    assert run(both, tcp4(), PA, None).reason == "new"
    ol = (NEEDS_CSUM, TCPV4, 54, 1448, 34, 16)
    r = run(both, tcp4(big, "A"), PA, ol)
    assert r.reason == "established" and r.verdict == "forward"
    # IPv6 and UDP segmentation offload
    f6 = raw(ether() / IPv6(src=A6, dst=B6) / TCP(sport=5, dport=80, flags="S") / Raw(b"y" * 30000))
    assert run(both, f6, PA, (NEEDS_CSUM, TCPV6, 74, 1428, 54, 16)).reason == "new"
    fu = raw(ether() / IP(src=A, dst=B) / UDP(sport=7, dport=80) / Raw(b"z" * 20000))
    assert run(both, fu, PA, (NEEDS_CSUM, UDP_L4, 42, 1472, 34, 6)).reason == "new"
    # behind an IPv6 extension header the checksum starts where the TCP header does
    fx = raw(ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrDestOpt() / TCP(sport=6, dport=80, flags="S") / Raw(b"w" * 9000))
    assert run(both, fx, PA, (NEEDS_CSUM, TCPV6, 82, 1420, 62, 16)).reason == "new"
    assert run(both, fx, PA, (NEEDS_CSUM, TCPV6, 82, 1420, 54, 16)).reason == "bad_offload"
    # a partial checksum alone, and DATA_VALID alone, ask nothing odd
    assert run(both, tcp4(sport=2), PA, (NEEDS_CSUM, 0, 0, 0, 34, 16)).reason == "new"
    assert run(both, tcp4(sport=3), PA, (2, 0, 0, 0, 0, 0)).reason == "new"


def test_a_header_that_does_not_describe_its_frame_is_dropped():
    both = Both(PODS)
    bad = [
        (0, TCPV4, 54, 1448, 34, 16),               # GSO without a partial checksum
        (NEEDS_CSUM, TCPV4, 54, 1448, 36, 16),      # checksum start is not the L4 header
        (NEEDS_CSUM, TCPV4, 54, 1448, 34, 6),       # UDP's checksum offset on TCP
        (NEEDS_CSUM, TCPV6, 54, 1448, 34, 16),      # IPv6 GSO on IPv4
        (NEEDS_CSUM, UDP_L4, 54, 1448, 34, 16),     # UDP GSO on TCP
        (NEEDS_CSUM, UDP_UFO, 54, 1448, 34, 16),    # UFO: the kernel no longer makes it
        (NEEDS_CSUM, TCPV4, 54, 0, 34, 16),         # no segment size
        (NEEDS_CSUM, 9, 54, 1448, 34, 16),          # no such type
    ]
    for i, ol in enumerate(bad):
        assert run(both, tcp4(b"x" * 3000, sport=100 + i), PA, ol).reason == "bad_offload", ol
    icmp = raw(ether() / IP(src=A, dst=B) / ICMP())
    assert run(both, icmp, PA, (NEEDS_CSUM, 0, 0, 0, 34, 2)).reason == "bad_offload"
    frag = raw(ether() / IP(src=A, dst=B, flags="MF") / UDP(sport=1, dport=80) / Raw(b"q" * 64))
    assert run(both, frag, PA, (NEEDS_CSUM, 0, 0, 0, 34, 6)).reason == "bad_offload"
    udp_ecn = raw(ether() / IP(src=A, dst=B) / UDP(sport=7, dport=80) / Raw(b"z" * 3000))
    assert run(both, udp_ecn, PA, (NEEDS_CSUM, UDP_L4 | ECN, 42, 1472, 34, 6)).reason == "bad_offload"
    assert both.dp.counters()["bad_offload"] == len(bad) + 3


FRAMES = st.sampled_from([
    tcp4(b"x" * 4000), tcp4(), raw(ether() / IP(src=A, dst=B) / UDP(sport=9, dport=80) / Raw(b"u" * 4000)),
    raw(ether() / IPv6(src=A6, dst=B6) / TCP(sport=9, dport=80, flags="S") / Raw(b"v" * 4000)),
    raw(ether() / IPv6(src=A6, dst=B6) / UDP(sport=9, dport=80)),
    raw(ether() / IP(src=A, dst=B) / ICMP()),
    raw(ether() / IP(src=A, dst=B, flags="MF") / TCP(sport=9, dport=80)),
    raw(ether() / IP(src="127.0.0.1", dst=B) / TCP(sport=9, dport=80)),    # dropped before the header is read
])
OFFLOADS = st.one_of(st.none(), st.tuples(
    st.sampled_from([0, 1, 2, 3]), st.sampled_from([0, 1, 3, 4, 5, 6, 0x81, 0x84, 0x85, 0xFF]),
    st.sampled_from([0, 54, 65535]), st.sampled_from([0, 1, 1448, 65535]),
    st.sampled_from([0, 14, 34, 54, 36, 65535]), st.sampled_from([0, 2, 6, 8, 16, 65535])))


@settings(max_examples=400, deadline=None)
@given(FRAMES, OFFLOADS)
def test_the_oracle_and_the_fast_path_agree_on_every_header(frame, offload):
    run(Both(PODS), frame, PA, offload)


# -- partial checksums through a translation ------------------------------------------
def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    return sum(struct.unpack(f"!{len(b) // 2}H", b))


def _pseudo(frame: bytes, v4: bool, l4: int) -> int:
    if v4:
        ip = frame[14:34]
        return _sum(ip[12:20]) + frame[23] + len(frame) - l4
    ip = frame[14:54]
    return _sum(ip[8:40]) + (len(frame) - l4) + ip[6]


def _complete(frame: bytes, l4: int, off: int) -> int:
    """What the kernel (or a NIC) writes for CHECKSUM_PARTIAL: the sum from csum_start
    over the segment, the field holding the pseudo-header sum."""
    return ~_fold(_sum(frame[l4:])) & 0xFFFF


def _translate(frame: bytearray, v4: bool, proto: int, dst: str, dport: int, src: str, sport: int,
               partial: bool) -> None:
    r = ffi.new("struct ns_result *")
    r.family, r.proto = (4 if v4 else 6), proto
    r.rewrite = lib.NS_REWRITE_DST | lib.NS_REWRITE_SRC
    r.dport, r.sport = dport, sport
    for field, a in ((r.dst, dst), (r.src, src)):
        import ipaddress
        ffi.memmove(field, ipaddress.ip_address(a).packed.rjust(16, b"\0") if not v4 else
                    b"\0" * 10 + b"\xff\xff" + ipaddress.ip_address(a).packed, 16)
    assert lib.ns_rewrite_frame_offload(ffi.from_buffer(frame), len(frame), r, int(partial)) == 0


def test_a_translated_partial_checksum_completes_to_the_right_one():
    cases = [
        (ether() / IP(src=A, dst="198.18.100.1") / TCP(sport=1000, dport=80, flags="PA") / Raw(b"p" * 5000),
         True, 6, B, 8080, "198.18.0.99", 40000),
        (ether() / IP(src=A, dst="198.18.100.1") / UDP(sport=1000, dport=53) / Raw(b"d" * 3001),
         True, 17, B, 5353, "198.18.0.99", 40001),
        (ether() / IPv6(src=A6, dst="2001:db8:100::1") / TCP(sport=1000, dport=80, flags="A") / Raw(b"s" * 7777),
         False, 6, B6, 8080, "2001:db8::99", 40002),
    ]
    for pkt, v4, proto, dst, dport, src, sport in cases:
        l4 = 34 if v4 else 54
        off = 16 if proto == 6 else 6
        full = bytearray(raw(pkt))
        part = bytearray(full)
        part[l4 + off:l4 + off + 2] = struct.pack("!H", _fold(_pseudo(bytes(part), v4, l4)))
        _translate(full, v4, proto, dst, dport, src, sport, partial=False)
        _translate(part, v4, proto, dst, dport, src, sport, partial=True)
        assert part[:l4] == full[:l4]                        # the same headers, the IPv4 checksum too
        # the kernel completes the partial one to what the full update gave
        assert _complete(bytes(part), l4, off) == struct.unpack_from("!H", full, l4 + off)[0]
        # and that is the checksum of the translated packet, computed afresh
        fresh = (IP if v4 else IPv6)(bytes(full[14:]))
        del fresh[TCP if proto == 6 else UDP].chksum
        want = (fresh.__class__(raw(fresh)))[TCP if proto == 6 else UDP].chksum
        assert struct.unpack_from("!H", full, l4 + off)[0] == want
