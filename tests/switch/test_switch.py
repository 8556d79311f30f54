"""The soft switch with real namespaces and sockets (root only; see conftest)."""
import json
import os
import socket
import struct

import pytest

from pipeline.switch.netns import down, in_netns, list_runs
from pipeline.switch.topology import Topology
from tests.switch.conftest import TWO_PODS

DENY_ALL_B = TWO_PODS + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny, namespace: t}
    spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
    """

# a may open connections to b; b may not open any to a.
A_TO_B_ONLY = TWO_PODS + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: isolate, namespace: t}
    spec: {podSelector: {}, policyTypes: [Ingress]}
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: b-from-a, namespace: t}
    spec:
      podSelector: {matchLabels: {app: b}}
      ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]
    """


def echo(c, a, payload: bytes) -> bytes:
    c.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += a.recv(65536)
    return got


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_through_switch(switch_run, family):
    r = switch_run()
    ls = r.listen_tcp("t/b", 8080, family)
    c = r.connect_tcp("t/a", "t/b", 8080, family)
    assert c is not None
    a, _ = ls.accept()
    data = os.urandom(200_000)
    assert echo(c, a, data) == data
    assert echo(a, c, b"back") == b"back"
    st = r.sw.stats()
    assert st.reasons["new"] >= 1 and st.reasons["established"] > 0 and st.reasons["reply"] > 0
    # the switch answered the pods' ARP / neighbour solicitations for the gateway
    assert st.switch["arp_replies" if family == 4 else "nd_replies"] >= 1


@pytest.mark.parametrize("family", [4, 6])
def test_udp_through_switch(switch_run, family):
    r = switch_run()
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    srv = r.sock("t/b", fam, socket.SOCK_DGRAM)
    srv.bind((r.ip("t/b", family), 5353))
    srv.settimeout(2)
    cli = r.sock("t/a", fam, socket.SOCK_DGRAM)
    cli.settimeout(2)
    cli.sendto(b"ping", (r.ip("t/b", family), 5353))
    data, addr = srv.recvfrom(100)
    assert data == b"ping" and addr[0] == r.ip("t/a", family)
    srv.sendto(b"pong", addr)
    assert cli.recv(100) == b"pong"


def test_ttl_decremented(switch_run):
    r = switch_run()
    srv = r.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((r.ip("t/b"), 5353))
    srv.setsockopt(socket.IPPROTO_IP, 12, 1)      # IP_RECVTTL
    srv.settimeout(2)
    cli = r.sock("t/a", socket.AF_INET, socket.SOCK_DGRAM)
    cli.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 9)
    cli.sendto(b"x", (r.ip("t/b"), 5353))
    _, anc, _, _ = srv.recvmsg(10, 64)
    assert struct.unpack("i", anc[0][2])[0] == 8      # one L3 hop


def test_default_deny(switch_run):
    r = switch_run(DENY_ALL_B)
    r.listen_tcp("t/b", 8080)
    assert r.connect_tcp("t/a", "t/b", 8080, timeout=0.5) is None
    assert r.counter("denied_ingress") >= 1


def test_allow_by_selector_and_replies_pass(switch_run):
    r = switch_run(A_TO_B_ONLY)
    lb = r.listen_tcp("t/b", 8080)
    r.listen_tcp("t/a", 8080)
    c = r.connect_tcp("t/a", "t/b", 8080)
    assert c is not None, "allowed by podSelector"
    a, _ = lb.accept()
    assert echo(a, c, b"reply direction") == b"reply direction"   # replies pass
    assert r.connect_tcp("t/b", "t/a", 8080, timeout=0.5) is None  # the reverse is new: denied


def test_policy_change_keeps_established(switch_run):
    r = switch_run()
    ls = r.listen_tcp("t/b", 8080)
    c = r.connect_tcp("t/a", "t/b", 8080)
    a, _ = ls.accept()
    assert echo(c, a, b"before") == b"before"
    r.reload(DENY_ALL_B)
    assert echo(c, a, b"after the swap") == b"after the swap"
    assert echo(a, c, b"and back") == b"and back"
    assert r.connect_tcp("t/a", "t/b", 8080, timeout=0.5) is None   # new ones are denied


def _raw_send(r, key: str, frames: list[bytes]) -> None:
    pp = r.topo.by_key(key)
    with in_netns(pp.netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.bind(("eth0", 0))
        for f in frames:
            s.send(f)


def _ipv4_udp(src: str, dst: str, payload: bytes = b"x" * 8, ttl: int = 64, bad_csum=False) -> bytes:
    udp = struct.pack("!HHHH", 1234, 5353, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, ttl, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    csum = (~s & 0xFFFF) ^ (0x0101 if bad_csum else 0)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + udp


def _eth(r, key: str, payload: bytes, ethertype=0x0800) -> bytes:
    pp = r.topo.by_key(key)
    return pp.gw_mac + pp.pod_mac + struct.pack("!H", ethertype) + payload


def test_spoofed_source_dropped(switch_run):
    r = switch_run()
    srv = r.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((r.ip("t/b"), 5353))
    srv.settimeout(0.5)
    before = r.counter("spoofed_source")
    # from a's port, claiming an address that is not a's
    _raw_send(r, "t/a", [_eth(r, "t/a", _ipv4_udp("198.18.0.99", r.ip("t/b")))] * 5)
    with pytest.raises(socket.timeout):
        srv.recvfrom(100)
    assert r.counter("spoofed_source") - before == 5
    # the same frame with a's real address goes through
    _raw_send(r, "t/a", [_eth(r, "t/a", _ipv4_udp(r.ip("t/a"), r.ip("t/b")))])
    assert srv.recvfrom(100)[0] == b"x" * 8


def test_malformed_frames_counted_switch_survives(switch_run):
    r = switch_run()
    a, b = r.ip("t/a"), r.ip("t/b")
    good = _ipv4_udp(a, b)
    frames = [
        _eth(r, "t/a", good[:12]),                          # truncated IP
        _eth(r, "t/a", _ipv4_udp(a, b, bad_csum=True)),     # bad header checksum
        _eth(r, "t/a", bytes([0x65]) + good[1:]),           # IP version 6 in an IPv4 frame
        _eth(r, "t/a", b"\x00" * 30, ethertype=0x88B5),     # unknown ethertype
        _eth(r, "t/a", good[:20] + b"\x01\x02"),            # truncated UDP
        _eth(r, "t/a", _ipv4_udp(a, b, ttl=1)),             # TTL would reach 0
        _eth(r, "t/a", b""),                                # Ethernet header only
    ] * 3
    _raw_send(r, "t/a", frames)
    r.sync()
    st = r.sw.stats()
    assert st.reasons["bad_ip_checksum"] >= 3
    assert st.reasons["unsupported_ethertype"] >= 3
    assert st.switch["ttl_exceeded"] >= 3
    assert st.ports[r.topo.by_key("t/a").port]["drops"] >= 18
    # still forwarding
    ls = r.listen_tcp("t/b", 8080)
    c = r.connect_tcp("t/a", "t/b", 8080)
    assert c is not None
    acc, _ = ls.accept()
    assert echo(c, acc, b"alive") == b"alive"


def test_tap_ports(switch_run):
    r = switch_run(port_type="tap")
    ls = r.listen_tcp("t/b", 8080)
    c = r.connect_tcp("t/a", "t/b", 8080)
    assert c is not None
    a, _ = ls.accept()
    data = os.urandom(50_000)
    assert echo(c, a, data) == data


def test_down_removes_everything():
    prefix = "nsm" + os.urandom(3).hex()
    Topology.build([("t/a", 1, ["198.18.0.10"]), ("t/b", 2, ["198.18.0.11"])], prefix=prefix)
    # no teardown: as if the process had crashed
    assert prefix in list_runs()
    removed = down(prefix)
    assert any(x.startswith("netns") for x in removed)
    assert prefix not in list_runs()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    assert not os.path.exists(f"/run/netsem/{prefix}.json")


def test_refuses_addresses_outside_test_ranges():
    with pytest.raises(ValueError):
        Topology.build([("t/a", 1, ["10.0.0.1"])], prefix="nsm" + os.urandom(3).hex())


def test_probe_shop_agrees_with_model():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from pipeline.load.build import load_cluster
    from pipeline.cli.render import render_probe
    from pipeline.switch.probe import probe
    import io
    cluster, _ = load_cluster([os.path.join(root, "examples", "shop")])
    report = probe(cluster, timeout=0.5, prefix="nsm" + os.urandom(3).hex())
    out = io.StringIO()
    render_probe(report, "json", out)
    cells = json.loads(out.getvalue())
    assert not report.differ, [c for c in cells if c["allowed"] != c["expected"]]
    assert cells and all(c["allowed"] == c["expected"] for c in cells)
    assert any(c["allowed"] for c in cells) and any(not c["allowed"] for c in cells)
