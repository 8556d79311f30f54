"""A pipeline that can rewrite: a new connection to a Service VIP is translated to a
ready backend (and refused with its own reason where the VIP cannot take it); a connection whose destination is translated (as the service mapper
will commit one) has its packets translated and its replies reverse-translated, the
same in C and in the oracle; ns_rewrite_frame writes it into frames with correct
checksums."""

import os

from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.all import ICMP, IP, SCTP, TCP, UDP, IPv6, Raw, SCTPChunkData, raw
from scapy.layers.l2 import Ether

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.constants import REWRITE_DST, REWRITE_SRC
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.load.build import load_cluster

from .packets import ether
from .strategies import clusters
from .test_regressions import PODS, Both

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEC = 1_000_000_000
VIP = "198.19.0.50"


def test_a_new_connection_to_a_service_vip_goes_to_a_ready_backend_and_back():
    """The shop's backend Service: VIP:80 -> backend-0:8080 (policed there: frontend
    is allowed), replies from the VIP; a port the Service does not expose is dropped;
    db's Service is refused to frontend by db's policy, as backend-0's own address is."""
    cluster, _ = load_cluster([os.path.join(ROOT, "examples", "shop")])
    vip = str(cluster.plane.lookup_service_to_address_mappings("shop/backend")[0][1])
    fe, be = (str(cluster.pod_address(k)) for k in ("shop/frontend-0", "shop/backend-0"))
    pfe, pbe = (cluster.attachment(k).port for k in ("shop/frontend-0", "shop/backend-0"))
    dp = Datapath()
    dp.install(compile_cluster(cluster))
    oracle = OraclePipeline(cluster)

    def run(pkt, port, now):
        frame = raw(ether() / pkt)
        native = dp.run_batch([frame], [port], now)[0]
        assert native.comparable() == oracle.process(frame, port, now).comparable()
        return native
    r = run(IP(src=fe, dst=vip) / TCP(sport=1, dport=80, flags="S"), pfe, SEC)
    assert (r.reason, r.rewrite, r.dst, r.dport, r.out_port) == ("new", REWRITE_DST, be, 8080, pbe)
    r = run(IP(src=be, dst=fe) / TCP(sport=8080, dport=1, flags="SA"), pbe, 2 * SEC)
    assert (r.reason, r.rewrite, r.src, r.sport, r.out_port) == ("reply", REWRITE_SRC, vip, 80, pfe)
    assert run(IP(src=fe, dst=vip) / TCP(sport=2, dport=81, flags="S"), pfe, 3 * SEC).reason == "service_port_unknown"
    assert run(IP(src=fe, dst=vip) / UDP(sport=2, dport=80), pfe, 3 * SEC).reason == "service_port_unknown"
    assert run(IP(src=fe, dst=vip) / ICMP(), pfe, 3 * SEC).reason == "service_port_unknown"
    db = str(cluster.plane.lookup_service_to_address_mappings("data/db")[0][1])
    r = run(IP(src=fe, dst=db) / TCP(sport=3, dport=5432, flags="S"), pfe, 4 * SEC)
    assert (r.verdict, r.reason) == ("drop", "denied_ingress")


def translated(both, proto="TCP"):
    """a -> VIP:80 translated to b:8080, committed on both sides."""
    from .test_regressions import A, B, PA
    n = {"TCP": 6, "UDP": 17, "SCTP": 132}[proto]
    both.dp.commit_translated(A, VIP, 1000, 80, n, B, 8080, PA, SEC)
    both.oracle.commit_translated(A, VIP, 1000, 80, n, B, 8080, SEC)


def test_translated_connection_both_ways():
    from .test_regressions import A, B, PA, PB
    both = Both(PODS)
    translated(both)
    r = both.run(ether() / IP(src=A, dst=VIP) / TCP(sport=1000, dport=80, flags="A"), PA)
    assert (r.reason, r.rewrite, r.dst, r.dport, r.out_port) == ("established", REWRITE_DST, B, 8080, PB)
    r = both.run(ether() / IP(src=B, dst=A) / TCP(sport=8080, dport=1000, flags="SA"), PB)
    assert (r.reason, r.rewrite, r.src, r.sport, r.out_port) == ("reply", REWRITE_SRC, VIP, 80, PA)
    # the backend's own address is another connection
    r = both.run(ether() / IP(src=A, dst=B) / TCP(sport=1000, dport=8080, flags="A"), PA)
    assert (r.reason, r.rewrite) == ("no_connection", 0)
    # a dropped packet is reported as it arrived (no rewrite)
    r = both.run(ether() / IP(src=B, dst=A) / TCP(sport=8080, dport=1000, flags="SA"), PA)
    assert (r.reason, r.rewrite, r.src) == ("spoofed_source", 0, B)


def checksums_ok(frame: bytes) -> bool:
    """scapy recomputes every checksum of a copy with them deleted: equal = correct."""
    pkt = Ether(frame)
    clean = pkt.copy()
    for layer in (IP, TCP, UDP, SCTP):
        if layer in clean and hasattr(clean[layer], "chksum"):
            del clean[layer].chksum
    return raw(Ether(raw(clean))) == frame


def test_rewrite_frame_fixes_every_checksum():
    from .test_regressions import A, A6, B, B6, PA, PB
    both = Both(PODS)
    dp = both.dp
    cases = [
        (A, VIP, B, lambda s, d, sp, dp_: IP(src=s, dst=d) / TCP(sport=sp, dport=dp_, flags="A") / Raw(b"hello")),
        (A, VIP, B, lambda s, d, sp, dp_: IP(src=s, dst=d) / UDP(sport=sp, dport=dp_) / Raw(b"hi there")),
        (A6, "2001:db8:2::50", B6,
         lambda s, d, sp, dp_: IPv6(src=s, dst=d) / TCP(sport=sp, dport=dp_, flags="A") / Raw(b"x" * 33)),
        (A6, "2001:db8:2::50", B6, lambda s, d, sp, dp_: IPv6(src=s, dst=d) / UDP(sport=sp, dport=dp_) / Raw(b"y")),
        (A, VIP, B, lambda s, d, sp, dp_: IP(src=s, dst=d) / SCTP(sport=sp, dport=dp_) / SCTPChunkData(data=b"z")),
    ]
    for i, (src, vip, backend, make) in enumerate(cases):
        sport = 2000 + i
        proto = make(src, vip, sport, 80).lastlayer()
        n = 132 if isinstance(proto, SCTPChunkData) else (6 if TCP in make(src, vip, 1, 1) else 17)
        dp.commit_translated(src, vip, sport, 80, n, backend, 8080, PA, SEC)
        out = raw(ether() / make(src, vip, sport, 80))
        r = dp.run_batch([out], [PA], SEC)[0]
        assert r.rewrite == REWRITE_DST, (i, r)
        sent = dp.rewritten(out, r)
        assert checksums_ok(sent), i
        assert Ether(sent).getlayer(1).dst == backend and Ether(sent).getlayer(2).dport == 8080
        back = raw(ether() / make(backend, src, 8080, sport))
        r = dp.run_batch([back], [PB], SEC)[0]
        assert r.rewrite == REWRITE_SRC, (i, r)
        sent = dp.rewritten(back, r)
        assert checksums_ok(sent), i
        assert Ether(sent).getlayer(1).src == vip and Ether(sent).getlayer(2).sport == 80
    # an IPv4 UDP checksum of 0 (none) stays 0
    dp.commit_translated(A, VIP, 3000, 80, 17, B, 8080, PA, SEC)
    out = raw(ether() / IP(src=A, dst=VIP) / UDP(sport=3000, dport=80, chksum=0) / Raw(b"q"))
    r = dp.run_batch([out], [PA], SEC)[0]
    assert Ether(dp.rewritten(out, r))[UDP].chksum == 0


@settings(max_examples=max(1, int(os.environ.get("NETSEM_DIFF_EXAMPLES", "120")) // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_translated_connections_agree_on_random_packets(data):
    """Random clusters, a few translated connections between random pods, and random
    packets of them (both directions, any flags, also to the untranslated ends)."""
    c = data.draw(clusters(max_pods=5, max_policies=3))
    plane = c.plane
    atts = [a for a in plane.attachments() if plane.address(a, 4)]
    if len(atts) < 2:
        return
    dp, oracle = Datapath(), OraclePipeline(c)
    dp.install(compile_cluster(c))
    now = SEC
    flows = []
    for i in range(data.draw(st.integers(1, 3))):
        a, b = data.draw(st.sampled_from(atts)), data.draw(st.sampled_from(atts))
        proto = data.draw(st.sampled_from([6, 17]))
        src, dst = str(plane.address(a, 4)), str(plane.address(b, 4))
        vip = f"198.19.0.{60 + i}"
        sport, vport, bport = 3000 + i, 80, data.draw(st.sampled_from([80, 8080]))
        dp.commit_translated(src, vip, sport, vport, proto, dst, bport, a.port, now)
        oracle.commit_translated(src, vip, sport, vport, proto, dst, bport, now)
        flows.append((a, b, src, dst, vip, sport, vport, bport, proto))
    for _ in range(data.draw(st.integers(1, 25))):
        a, b, src, dst, vip, sport, vport, bport, proto = data.draw(st.sampled_from(flows))
        kind = data.draw(st.sampled_from(["orig", "reply", "direct", "reply-as-vip"]))
        flags = data.draw(st.sampled_from(["S", "SA", "A", "F", "R", "PA"]))
        if kind == "orig":
            ip, port, sp, dpt = IP(src=src, dst=vip), a.port, sport, vport
        elif kind == "reply":
            ip, port, sp, dpt = IP(src=dst, dst=src), b.port, bport, sport
        elif kind == "direct":
            ip, port, sp, dpt = IP(src=src, dst=dst), a.port, sport, bport
        else:
            ip, port, sp, dpt = IP(src=vip, dst=src), 0, vport, sport
        l4 = TCP(sport=sp, dport=dpt, flags=flags) if proto == 6 else UDP(sport=sp, dport=dpt) / Raw(b"u")
        frame = raw(ether() / ip / l4)
        now += data.draw(st.sampled_from([0, SEC, 40 * SEC]))
        got = dp.run_batch([frame], [port], now)[0]
        want = oracle.process(frame, port, now)
        assert got.comparable() == want.comparable(), (kind, got, want)
