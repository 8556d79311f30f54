"""Source NAT (masquerade to the node's address, hairpin) and ICMP errors about
translated connections, in the C pipeline and the oracle side by side; the frames
ns_rewrite_frame writes are checked with scapy (addresses, ports, every checksum,
the quoted packet's included)."""

from scapy.all import (ICMP, IP, TCP, UDP, ICMPv6DestUnreach, ICMPv6EchoRequest, IPerror, IPerror6,
                       IPv6, TCPerror, UDPerror, raw)
from scapy.layers.l2 import Ether

from pipeline.dataplane.constants import REWRITE_DST, REWRITE_SRC
from pipeline.model.cluster import ClusterConfig

from .packets import NODE4, NODE6, ether
from .test_regressions import A, A6, B, B6, PA, PB, PODS, SEC, Both

SERVICE = PODS + """
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: t}
spec:
  selector: {app: b}
  clusterIPs: [198.19.0.20, "2001:db8:2::20"]
  ipFamilies: [IPv4, IPv6]
  ports: [{name: web, port: 80, targetPort: 80}, {name: u, port: 53, protocol: UDP, targetPort: 5353}]
"""
VIP, VIP6 = "198.19.0.20", "2001:db8:2::20"
OUT, OUT6, ROUTER = "198.19.200.7", "2001:db8:f::7", "198.19.250.1"


def checksums_hold(frame: bytes) -> None:
    """Every checksum scapy knows in the frame equals the one it computes afresh."""
    pkt = Ether(frame)
    layers = [layer for layer in pkt.layers()]
    for cls in layers:
        lay = pkt[cls]
        if hasattr(lay, "chksum") or hasattr(lay, "cksum"):
            field = "chksum" if hasattr(lay, "chksum") else "cksum"
            got = getattr(lay, field)
            clone = Ether(frame)
            setattr(clone[cls], field, None)
            want = getattr(Ether(raw(clone))[cls], field)
            assert got == want, (cls.__name__, hex(got), hex(want), pkt.show(dump=True))


def run(both, pkt, port, now=SEC):
    frame = raw(ether() / pkt)
    r = both.run(frame, port, now)
    out = both.dp.rewritten(frame, r) if r.verdict == "forward" else None
    if out is not None:
        checksums_hold(out)
    return r, (Ether(out) if out else None)


def test_masquerade_keeps_an_ephemeral_port_remaps_others_and_reverses_replies():
    both = Both(SERVICE)
    r, f = run(both, IP(src=A, dst=OUT) / TCP(sport=40000, dport=443, flags="S"), PA)
    assert (r.reason, r.src, r.sport, r.rewrite, r.out_port) == ("new", NODE4, 40000, REWRITE_SRC, 0)
    assert (f[IP].src, f[TCP].sport) == (NODE4, 40000)
    r, f = run(both, IP(src=OUT, dst=NODE4) / TCP(sport=443, dport=40000, flags="SA"), 0)
    assert (r.reason, r.dst, r.dport, r.rewrite, r.out_port) == ("reply", A, 40000, REWRITE_DST, PA)
    # B with the same port to the same place: the node's port is taken, another is chosen
    r, _ = run(both, IP(src=B, dst=OUT) / TCP(sport=40000, dport=443, flags="S"), PB)
    assert r.reason == "new" and r.src == NODE4 and r.sport != 40000 and 32768 <= r.sport <= 60999
    # a port below the range is moved into it (clear of the NodePort range)
    r, _ = run(both, IP(src=A, dst=OUT) / UDP(sport=1000, dport=53), PA)
    assert r.reason == "new" and 32768 <= r.sport <= 60999
    # IPv6 too, with the node's IPv6 address
    r, f = run(both, IPv6(src=A6, dst=OUT6) / UDP(sport=50000, dport=53), PA)
    assert (r.reason, r.src, r.sport) == ("new", NODE6, 50000)
    # pod to pod, and pod to the node: never translated
    assert run(both, IP(src=A, dst=B) / TCP(sport=40001, dport=80, flags="S"), PA)[0].rewrite == 0
    assert run(both, IP(src=A, dst=NODE4) / TCP(sport=40002, dport=22, flags="S"), PA)[0].rewrite == 0


def test_echo_keeps_its_identifier_so_a_second_pod_with_it_is_refused():
    both = Both(SERVICE)
    r, f = run(both, IP(src=A, dst=OUT) / ICMP(id=77), PA)
    assert (r.reason, r.src, f[ICMP].id) == ("new", NODE4, 77)
    assert run(both, IP(src=OUT, dst=NODE4) / ICMP(type=0, id=77), 0)[0].dst == A
    assert run(both, IP(src=B, dst=OUT) / ICMP(id=77), PB)[0].reason == "snat_ports_exhausted"
    r, f = run(both, IPv6(src=B6, dst=OUT6) / ICMPv6EchoRequest(id=9), PB)
    assert (r.reason, r.src) == ("new", NODE6)


def test_hairpin_goes_back_through_the_switch_from_the_node():
    both = Both(SERVICE.replace("selector: {app: b}", "selector: {app: a}"))
    r, f = run(both, IP(src=A, dst=VIP) / TCP(sport=40000, dport=80, flags="S"), PA)
    assert (r.reason, r.src, r.dst, r.dport, r.out_port) == ("new", NODE4, A, 80, PA)
    assert r.rewrite == REWRITE_SRC | REWRITE_DST
    r, f = run(both, IP(src=A, dst=NODE4) / TCP(sport=80, dport=r.sport, flags="SA"), PA)
    assert (r.reason, r.src, r.sport, r.dst, r.dport) == ("reply", VIP, 80, A, 40000)


def test_icmp_errors_about_translated_connections_are_translated_quote_and_all():
    both = Both(SERVICE)
    # A -> VIP:53/UDP goes to B:5353; B's kernel answers port unreachable about what it got
    r, _ = run(both, IP(src=A, dst=VIP) / UDP(sport=41000, dport=53), PA)
    assert (r.reason, r.dst, r.dport) == ("new", B, 5353)
    err = IP(src=B, dst=A) / ICMP(type=3, code=3) / IPerror(src=A, dst=B) / UDPerror(sport=41000, dport=5353)
    r, f = run(both, err, PB)
    assert (r.reason, r.out_port, r.src, r.dst) == ("related", PA, VIP, A)
    assert (f[IP].src, f[IPerror].src, f[IPerror].dst) == (VIP, A, VIP)
    assert (f[UDPerror].sport, f[UDPerror].dport) == (41000, 53)
    # the client's error about a reply it did not want goes to the backend
    err = IP(src=A, dst=VIP) / ICMP(type=3, code=3) / IPerror(src=VIP, dst=A) / UDPerror(sport=53, dport=41000)
    r, f = run(both, err, PA)
    assert (r.reason, r.out_port, r.dst) == ("related", PB, B)
    assert (f[IPerror].src, f[UDPerror].sport, f[IPerror].dst) == (B, 5353, A)
    # IPv6: the ICMPv6 checksum covers the pseudo-header
    run(both, IPv6(src=A6, dst=VIP6) / TCP(sport=41001, dport=80, flags="S"), PA)
    err = IPv6(src=B6, dst=A6) / ICMPv6DestUnreach(code=4) / IPerror6(src=A6, dst=B6) / \
        TCPerror(sport=41001, dport=80, flags="S")
    r, f = run(both, err, PB)
    assert (r.reason, f[IPv6].src, f[IPerror6].dst, f[TCPerror].dport) == ("related", VIP6, VIP6, 80)


def test_an_error_from_a_router_outside_about_a_masqueraded_packet_reaches_the_pod():
    both = Both(SERVICE)
    r, _ = run(both, IP(src=A, dst=OUT) / TCP(sport=40000, dport=443, flags="S"), PA)
    quoted = IPerror(src=NODE4, dst=OUT) / TCPerror(sport=r.sport, dport=443, flags="S")
    r, f = run(both, IP(src=ROUTER, dst=NODE4) / ICMP(type=11, code=0) / quoted, 0)
    assert (r.reason, r.out_port, f[IP].src, f[IP].dst) == ("related", PA, ROUTER, A)
    assert (f[IPerror].src, f[TCPerror].sport, f[IPerror].dst) == (A, 40000, OUT)
    # one quoting the pod's own address was never sent by the node: no connection
    quoted = IPerror(src=A, dst=OUT) / TCPerror(sport=40000, dport=443, flags="S")
    assert run(both, IP(src=ROUTER, dst=A) / ICMP(type=11) / quoted, 0)[0].reason == "icmp_error_no_connection"


def test_the_outside_reaches_pods_through_services_or_when_routed():
    syn = IP(src=OUT, dst=A) / TCP(sport=5, dport=80, flags="S")
    assert run(Both(SERVICE), syn, 0)[0].reason == "pod_address_not_routed"
    r, _ = run(Both(SERVICE, ClusterConfig(route_pod_addresses=True)), syn, 0)
    assert (r.reason, r.rewrite) == ("new", 0)      # routed: no translation either way
    # through a Service address (here its ClusterIP, reached from the uplink) it does
    r, _ = run(Both(SERVICE), IP(src=OUT, dst=VIP) / TCP(sport=5, dport=80, flags="S"), 0)
    assert (r.reason, r.src, r.dst) == ("new", OUT, B)
