"""A mutation fuzzer over real captures: the example capture's frames (and a few more
kinds) with bits flipped, bytes rewritten, tails cut, resent on other ports and at
other times, run through the C pipeline and the oracle; every packet's fate must
agree. It found the IPv4-mapped, jumbo-frame and clock-wrap holes within minutes.

The budget is NETSEM_FUZZ_PACKETS (CI: 20,000; the documented long run: 10,000,000,
see docs/testing.md); NETSEM_FUZZ_SEED reproduces a run."""

import os
import random

from scapy.all import (ICMP, IP, SCTP, TCP, UDP, Dot1Q, ICMPv6DestUnreach, ICMPv6EchoRequest,
                       IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw, SCTPChunkInit, raw)

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.dataplane.pcap import read_capture
from pipeline.load.build import load_cluster

from .packets import ether

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKETS = int(os.environ.get("NETSEM_FUZZ_PACKETS", "20000"))
SEED = int(os.environ.get("NETSEM_FUZZ_SEED", "7"))
SEC = 1_000_000_000
CLOCK_END = (1 << 64) - 1


def corpus(cluster):
    """The example capture, plus frames of kinds it lacks."""
    frames = [p.frame for p in read_capture(os.path.join(ROOT, "examples", "captures", "shop.pcapng"))]
    fe, be, db = (str(cluster.pod_address(k)) for k in ("shop/frontend-0", "shop/backend-0", "data/db-0"))
    syn = IP(src=fe, dst=be) / TCP(sport=4000, dport=8080, flags="S")
    more = [
        ether() / IPv6(src="2001:db8::4", dst="2001:db8::3") / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2),
        ether() / IPv6(src="2001:db8::4", dst="2001:db8::3") / IPv6ExtHdrFragment(id=5, m=1) / UDP(sport=1, dport=2),
        ether() / IPv6(src="::ffff:" + fe, dst="2001:db8::3") / ICMPv6EchoRequest(id=3),
        ether() / IPv6(src="2001:db8:f::1", dst="::ffff:" + fe) / ICMPv6DestUnreach() /
        raw(IPv6(src="::ffff:" + fe, dst="::ffff:" + db) / TCP(sport=1, dport=2))[:48],
        ether() / Dot1Q(vlan=7) / syn,
        ether() / IP(src=be, dst=fe) / ICMP(type=3, code=3) / raw(syn)[:28],
        ether() / IP(src=be, dst=db) / ICMP(type=11) / raw(syn)[:28],
        ether() / IP(src=fe, dst=be) / SCTP(sport=5, dport=8080) / SCTPChunkInit(),
        ether() / IP(src="198.19.128.1", dst=be) / TCP(sport=9, dport=8080, flags="S"),
        ether() / IP(src=fe, dst="198.19.0.1") / TCP(sport=9, dport=80, flags="S"),   # a Service VIP
        ether() / IP(src=fe, dst=be) / UDP(sport=1, dport=8080) / Raw(b"j" * 9000),
    ]
    return frames + [raw(f) for f in more]


def mutate(rnd: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    for _ in range(rnd.choice([0, 1, 1, 2, 3])):
        kind = rnd.choice(["flip", "flip", "byte", "cut", "grow", "header"])
        if not b:
            break
        if kind == "flip":
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
        elif kind == "byte":
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif kind == "cut":
            del b[rnd.randrange(len(b)):]
        elif kind == "grow":
            b += bytes(rnd.randrange(256) for _ in range(rnd.choice([1, 8, 100])))
        else:   # a header field: Ethernet type, IP version/length/protocol/addresses, L4 ports/flags
            i = rnd.choice([12, 13, 14, 16, 17, 20, 23, 26, 29, 30, 33, 34, 36, 47, 54, 62])
            if i < len(b):
                b[i] = rnd.choice([0, 1, 6, 17, 58, 0x45, 0x60, 0x86, 0xdd, 0xff, rnd.randrange(256)])
    return bytes(b)


def test_native_and_oracle_agree_on_mutated_captures():
    cluster, _ = load_cluster([os.path.join(ROOT, "examples", "shop")])
    compiled = compile_cluster(cluster)
    rnd = random.Random(SEED)
    base = corpus(cluster)
    ports = [a.port for a in cluster.plane.attachments()] + [0, 0xFFFF]
    dp = Datapath(connections=512, fragments=16)
    dp.install(compiled)
    oracle = OraclePipeline(cluster, connections_limit=512, fragments_limit=16)
    now, done, reasons = SEC, 0, set()
    while done < PACKETS:
        r = rnd.random()
        if r < 0.02:
            now = min(now + rnd.choice([1, 31, 200, 90000]) * SEC, CLOCK_END)
        elif r < 0.021:   # near the end of the clock (time never runs backwards)
            now = max(now, CLOCK_END - rnd.choice([1, 40]) * SEC)
        batch = [(mutate(rnd, rnd.choice(base)), rnd.choice(ports)) for _ in range(rnd.randrange(1, 64))]
        got = dp.run_batch([f for f, _ in batch], [p for _, p in batch], now)
        for (frame, port), g in zip(batch, got):
            want = oracle.process(frame, port, now)
            assert g.comparable() == want.comparable(), \
                f"seed {SEED}, packet {done}: native {g} != oracle {want}; port {port} now {now} frame {frame.hex()}"
            reasons.add(g.reason)
            done += 1
    # The mutations reach every stage.
    assert {"new", "established", "reply", "related", "spoofed_source", "no_connection", "bad_ip_checksum",
            "truncated_ip", "v4_mapped_address", "service_port_unknown"} <= reasons, reasons
