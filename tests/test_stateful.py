"""The stateful parts row by row, in C and in the oracle at once: every transition of
docs/pipeline.md's state table (checked as states, not only as verdicts: a state
decides a timeout), the fragment table's limits and expiry instants, every ICMP type,
quoted echo identifiers, table accounting across deletions, and rechecks."""

import ipaddress

import pytest
from scapy.all import (ICMP, IP, SCTP, TCP, UDP, ICMPv6EchoRequest, ICMPv6Unknown, IPv6, Raw,
                       SCTPChunkAbort, SCTPChunkData, SCTPChunkInit, SCTPChunkInitAck, SCTPChunkShutdown,
                       SCTPChunkShutdownAck, raw)

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.constants import CT_STATE_NAMES
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline

from .conftest import cluster_from
from .packets import ether
from .test_regressions import A, A6, B, B6, DENY_INGRESS, PA, PB, PC, PODS, Both

SEC = 1_000_000_000


def state(both, key, now):
    """The state both implementations hold for key (src, dst, sport, dport, proto, echo)."""
    src, dst, sport, dport, proto, echo = key
    native = both.dp.ct_state(src, dst, sport, dport, proto, now, echo_reply=bool(echo))
    k = (0, ipaddress.ip_address(src), ipaddress.ip_address(dst), sport, dport, proto, echo)
    conn, _ = both.oracle.conns.find(k, now)
    oracle = CT_STATE_NAMES[conn.state] if conn is not None else None
    assert native == oracle, (key, native, oracle)
    return native


def tcp(f, rev=False):
    return (ether() / (IP(src=B, dst=A) / TCP(sport=80, dport=1000, flags=f) if rev else
                       IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags=f)), PB if rev else PA)


TCP_ROWS = [  # (flags, from the reply side, the state after)
    [("S", 0, "SYN_SENT"), ("S", 1, "SYN_SENT"), ("A", 0, "SYN_SENT"), ("SA", 0, "SYN_SENT"),
     ("SA", 1, "SYN_RECV"), ("A", 1, "SYN_RECV"), ("SA", 0, "SYN_RECV"), ("A", 0, "ESTABLISHED"),
     ("PA", 1, "ESTABLISHED"), ("FA", 1, "FIN_WAIT"), ("F", 1, "FIN_WAIT"), ("FA", 0, "LAST_ACK"),
     ("A", 0, "LAST_ACK"), ("FA", 1, "LAST_ACK"), ("SA", 1, "LAST_ACK"), ("A", 1, "TIME_WAIT")],
    [("S", 0, "SYN_SENT"), ("R", 1, "CLOSED"), ("S", 0, "SYN_SENT"), ("SA", 1, "SYN_RECV"),
     ("RA", 0, "CLOSED")],
    [("S", 0, "SYN_SENT"), ("SA", 1, "SYN_RECV"), ("A", 0, "ESTABLISHED"), ("F", 0, "FIN_WAIT"),
     ("FA", 1, "LAST_ACK"), ("FA", 0, "LAST_ACK"), ("R", 0, "CLOSED")],
]


@pytest.mark.parametrize("rows", TCP_ROWS)
def test_tcp_state_table(rows):
    both = Both(PODS)
    key = (A, B, 1000, 80, 6, 0)
    for i, (flags, rev, want) in enumerate(rows):
        both.run(*tcp(flags, rev), now=SEC + i)
        assert state(both, key, SEC + i) == want, (i, flags, rev)


def test_udp_sctp_icmp_state_tables_and_their_timeouts():
    both = Both(PODS)
    udp, back = (ether() / IP(src=A, dst=B) / UDP(sport=5, dport=80), PA), (ether() / IP(src=B, dst=A) / UDP(sport=80, dport=5), PB)
    both.run(*udp, now=SEC)
    assert state(both, (A, B, 5, 80, 17, 0), SEC) == "UDP_FIRST"
    assert state(both, (A, B, 5, 80, 17, 0), 31 * SEC - 1) == "UDP_FIRST"
    assert state(both, (A, B, 5, 80, 17, 0), 31 * SEC) is None
    both.run(*udp, now=40 * SEC)
    both.run(*back, now=41 * SEC)
    assert state(both, (A, B, 5, 80, 17, 0), 41 * SEC) == "UDP_REPLIED"
    assert state(both, (A, B, 5, 80, 17, 0), 221 * SEC - 1) == "UDP_REPLIED"
    assert state(both, (A, B, 5, 80, 17, 0), 221 * SEC) is None
    s = lambda c, rev=False: (ether() / (IP(src=B, dst=A) / SCTP(sport=80, dport=6) if rev else   # noqa: E731
                                         IP(src=A, dst=B) / SCTP(sport=6, dport=80)) / c, PB if rev else PA)
    key = (A, B, 6, 80, 132, 0)
    for i, (pkt, want) in enumerate([(s(SCTPChunkInit()), "SCTP_INIT"), (s(SCTPChunkInitAck()), "SCTP_INIT"),
                                     (s(SCTPChunkData(data=b"x"), True), "SCTP_INIT"),
                                     (s(SCTPChunkInitAck(), True), "SCTP_ESTABLISHED"),
                                     (s(SCTPChunkData(data=b"x")), "SCTP_ESTABLISHED"),
                                     (s(SCTPChunkShutdown()), "SCTP_CLOSED"), (s(SCTPChunkShutdownAck(), True), "SCTP_CLOSED"),
                                     (s(SCTPChunkInit()), "SCTP_INIT"), (s(SCTPChunkAbort(), True), "SCTP_CLOSED")]):
        both.run(*pkt, now=300 * SEC + i)
        assert state(both, key, 300 * SEC + i) == want, i
    assert state(both, key, 318 * SEC) is None                      # SCTP_CLOSED lasts 10 s
    both.run(ether() / IP(src=A, dst=B) / ICMP(type=8, id=40000), PA, now=400 * SEC)
    assert state(both, (A, B, 40000, 40000, 1, 0), 400 * SEC) == "ICMP"
    assert state(both, (B, A, 40000, 40000, 1, 1), 400 * SEC) == "ICMP"     # the reply's key
    assert state(both, (B, A, 40000, 40000, 1, 0), 400 * SEC) is None       # not a request from b


def test_fragment_table_limits_and_expiry_instants():
    both = Both(PODS)
    both.dp = Datapath(fragments=2)
    both.dp.install(compile_cluster(both.cluster))
    both.oracle = OraclePipeline(both.cluster, fragments_limit=2)

    def first(i):
        return ether() / IP(src=A, dst=B, id=i, flags="MF") / UDP(sport=i, dport=80, len=100) / Raw(b"f" * 16)

    def later(i):
        return ether() / IP(src=A, dst=B, id=i, frag=3, proto=17) / Raw(b"l" * 8)
    assert [both.run(first(i), PA, now=SEC).reason for i in (1, 2, 3)] == ["new", "new", "fragment_table_full"]
    assert both.run(first(1), PA, now=SEC).reason == "established"     # re-recorded: not full
    assert both.run(later(1), PA, now=31 * SEC - 1).reason == "fragment"
    assert both.run(later(2), PA, now=31 * SEC).reason == "fragment_unknown"   # expiry == now: gone
    assert both.run(first(3), PA, now=31 * SEC).reason == "new"         # room again


@pytest.mark.parametrize("family", [4, 6])
def test_every_icmp_type(family):
    both = Both(PODS)
    seen = set()
    for t in range(256):
        if family == 4:
            pkt = ether() / IP(src=A, dst=B) / ICMP(type=t, code=0, id=7) / Raw(raw(IP(src=B, dst=A) / UDP())[:28])
        else:
            pkt = ether() / IPv6(src=A6, dst=B6) / ICMPv6Unknown(type=t, code=0) / Raw(b"\x00\x07\x00\x01" + raw(
                IPv6(src=B6, dst=A6) / UDP())[:48])
        seen.add(both.run(pkt, PA, now=SEC + t).reason)
    assert {"new", "no_connection", "unsupported_icmp", "icmp_error_no_connection"} <= seen, seen
    assert ("neighbor_discovery" in seen) == (family == 6)


def test_quoted_echo_identifiers_above_32767():
    both = Both(PODS)
    for ident in (1, 32767, 32768, 40000, 65535):
        both.run(ether() / IP(src=A, dst=B) / ICMP(type=8, id=ident), PA)
        # a's request, b's reply, and a request from b that was never sent (the echo
        # flag tells it from the reply)
        for q_src, q_dst, q_type, want in ((A, B, 8, "related"), (B, A, 0, "related"),
                                           (B, A, 8, "icmp_error_no_connection")):
            inner = raw(IP(src=q_src, dst=q_dst) / ICMP(type=q_type, id=ident))[:28]
            sender, port = (q_dst, PB if q_dst == B else PA)
            r = both.run(ether() / IP(src=sender, dst=q_src) / ICMP(type=11) / Raw(inner), port)
            assert r.reason == want, (ident, q_src, q_type)
        both.run(ether() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=ident), PA)
        for q_src, q_dst, q_type, want in ((A6, B6, 128, "related"), (B6, A6, 129, "related"),
                                           (B6, A6, 128, "icmp_error_no_connection")):
            inner = raw(IPv6(src=q_src, dst=q_dst) / ICMPv6Unknown(type=q_type, msgbody=ident.to_bytes(2, "big")
                                                                     + b"\x00\x01"))[:48]
            sender, port = (q_dst, PB if q_dst == B6 else PA)
            r = both.run(ether() / IPv6(src=sender, dst=q_src) / ICMPv6Unknown(type=3) / Raw(b"\x00" * 4 + inner), port)
            assert r.reason == want, (ident, q_src, q_type)


@pytest.mark.parametrize("family", [4, 6])
def test_an_error_about_an_error_relates_to_no_connection(family):
    # An echo with identifier 0 has the ports an error's quote would get if it were
    # read as an echo; only echoes and TCP, UDP and SCTP are quoted from connections.
    both = Both(PODS)
    if family == 4:
        assert both.run(ether() / IP(src=A, dst=B) / ICMP(type=8, id=0, seq=0), PA).reason == "new"
        quotes = [raw(IP(src=A, dst=B) / ICMP(type=t, code=c, id=0, seq=0))[:28] for t, c in ((3, 0), (3, 8), (13, 0), (11, 0))]
        errors = [ether() / IP(src=B, dst=A) / ICMP(type=3, code=1) / Raw(q) for q in quotes]
    else:
        assert both.run(ether() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=0, seq=0), PA).reason == "new"
        quotes = [raw(IPv6(src=A6, dst=B6) / ICMPv6Unknown(type=t, code=c, msgbody=b"\x00" * 4))[:48]
                  for t, c in ((1, 0), (1, 128), (130, 0), (2, 0))]
        errors = [ether() / IPv6(src=B6, dst=A6) / ICMPv6Unknown(type=1) / Raw(b"\x00" * 4 + q) for q in quotes]
    for e in errors:
        assert both.run(e, PB).reason == "icmp_error_no_connection"


def test_a_small_table_counts_deleted_connections_out():
    both = Both(PODS)
    both.dp = Datapath(connections=2)
    both.dp.install(compile_cluster(both.cluster))
    both.oracle = OraclePipeline(both.cluster, connections_limit=2)
    assert both.run(*tcp("S"), now=SEC).reason == "new"
    assert both.run(*tcp("R", True), now=SEC).reason == "reply"
    for i in range(5):                      # reopened: the reset entry is deleted each time
        assert both.run(*tcp("S"), now=SEC + i).reason == "new"
        assert both.run(*tcp("R", True), now=SEC + i).reason == "reply"
    assert both.run(ether() / IP(src=A, dst=B) / UDP(sport=9, dport=80), PA, now=2 * SEC).reason == "new"
    assert both.run(ether() / IP(src=A, dst=B) / UDP(sport=10, dport=80), PA, now=2 * SEC).reason == "conntrack_full"


def test_recheck_counts_what_it_revokes_translated_or_not():
    deny = PODS + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: t}
spec: {podSelector: {matchLabels: {app: b}}}
"""
    both = Both(PODS)
    for sport in (1, 2, 3):
        both.run(ether() / IP(src=A, dst=B) / UDP(sport=sport, dport=80), PA)
    both.run(ether() / IP(src=B, dst=A) / UDP(sport=4, dport=80), PB)          # b -> a: survives
    both.dp.commit_translated(A, "198.19.0.9", 5, 80, 17, B, 8080, PA, SEC)
    both.oracle.commit_translated(A, "198.19.0.9", 5, 80, 17, B, 8080, SEC)
    both.dp.commit_translated(B, "198.19.0.9", 6, 80, 17, A, 8080, PB, SEC)
    both.oracle.commit_translated(B, "198.19.0.9", 6, 80, 17, A, 8080, SEC)
    new = cluster_from(deny)
    assert both.dp.install(compile_cluster(new), recheck=True) == both.oracle.install(new, recheck=True) == 4
    # the same clash refused by both
    with pytest.raises(RuntimeError):
        both.dp.commit_translated(B, "198.19.0.9", 6, 80, 17, A, 8080, PB, SEC)
    with pytest.raises(RuntimeError):
        both.oracle.commit_translated(B, "198.19.0.9", 6, 80, 17, A, 8080, SEC)


def test_ipv6_fragment_ids_and_first_fragments_of_live_connections():
    both = Both(PODS)
    both.dp = Datapath(fragments=1)
    both.dp.install(compile_cluster(both.cluster))
    both.oracle = OraclePipeline(both.cluster, fragments_limit=1)

    def frag6(ident, offset, more, body):
        h = bytes([17, 0]) + ((offset << 3) | more).to_bytes(2, "big") + ident.to_bytes(4, "big")
        return raw(ether() / IPv6(src=A6, dst=B6, nh=44) / Raw(h + body))
    udp = raw(UDP(sport=77, dport=80, len=200))[:8] + b"d" * 8
    assert both.run(frag6(3_000_000_000, 0, 1, udp), PA).reason == "new"
    assert both.run(frag6(3_000_000_000, 2, 0, b"x" * 8), PA).reason == "fragment"
    assert both.run(frag6(7, 2, 0, b"x" * 8), PA).reason == "fragment_unknown"
    # the table (1 entry) is full: a first fragment of the established flow cannot be recorded
    assert both.run(frag6(8, 0, 1, udp), PA).reason == "fragment_table_full"


def test_what_a_swap_leaves_behind():
    """Connections of a pod the new tables no longer have: without recheck their packets
    find no route; a recheck deletes them (neither end is a pod any more)."""
    gone = PODS.replace("metadata: {name: b, namespace: t, labels: {app: b}}",
                        "metadata: {name: b, namespace: t, labels: {app: b}}\n# gone") \
        .replace("status: {podIPs: [{ip: 198.18.0.11}, {ip: \"2001:db8::11\"}]}", "status: {phase: Succeeded}")
    from pipeline.model.cluster import ClusterConfig
    routed = ClusterConfig(route_pod_addresses=True)
    both = Both(PODS, routed)
    both.run(ether() / IP(src="198.19.9.9", dst=B) / UDP(sport=1, dport=80), 0)
    both.run(ether() / IP(src=A, dst=B) / UDP(sport=2, dport=80), PA)
    new = cluster_from(gone, routed)
    assert both.dp.install(compile_cluster(new)) == both.oracle.install(new) == 0
    assert both.run(ether() / IP(src="198.19.9.9", dst=B) / UDP(sport=1, dport=80), 0).reason == "no_route"
    assert both.run(ether() / IP(src=A, dst=B) / UDP(sport=2, dport=80), PA).reason == "established"
    assert both.dp.install(compile_cluster(new), recheck=True) == both.oracle.install(new, recheck=True) == 1


def test_translations_that_would_share_a_reply_clash():
    both = Both(PODS)
    both.dp.commit_translated(A, "198.19.0.9", 5, 80, 6, B, 8080, PA, SEC)
    both.oracle.commit_translated(A, "198.19.0.9", 5, 80, 6, B, 8080, SEC)
    # another VIP, the same backend and client port: the replies would be the same tuple
    with pytest.raises(RuntimeError):
        both.dp.commit_translated(A, "198.19.0.10", 5, 80, 6, B, 8080, PA, SEC)
    with pytest.raises(RuntimeError):
        both.oracle.commit_translated(A, "198.19.0.10", 5, 80, 6, B, 8080, SEC)
    # and a direct connection with that tuple is refused on the packet path
    r = both.run(ether() / IP(src=A, dst=B) / TCP(sport=5, dport=8080, flags="S"), PA)
    assert r.reason == "conntrack_clash"


def test_the_same_address_in_two_ip_address_domains():
    """004 step 3 in both implementations: pod c's second interface, in domain "blue",
    has a's cluster address; packets from its port are looked up in blue."""
    c = cluster_from(PODS)
    net1 = c.plane.add_address_to_pod_mapping("blue", A, "t/c", interface="net1", network="blue")
    c.plane.add_address_to_pod_mapping("blue", B, "t/b", interface="net1", network="blue")
    both = Both.__new__(Both)
    both.cluster = c
    both.dp = Datapath()
    both.dp.install(compile_cluster(c))
    both.oracle = OraclePipeline(c)
    syn = ether() / IP(src=A, dst=B) / TCP(sport=9, dport=80, flags="S")
    r = both.run(syn, net1.port)
    blue_b = c.plane.attachment("t/b", "net1").port
    assert (r.reason, r.zone, r.out_port) == ("new", 1, blue_b)
    r = both.run(syn, PA)                         # the same packet in the cluster's domain
    assert (r.reason, r.zone, r.out_port) == ("new", 0, PB)
    assert both.run(syn, PC).reason == "spoofed_source"     # c's eth0 does not have A


def _small(connections):
    both = Both(PODS)
    both.dp = Datapath(connections=connections)
    both.dp.install(compile_cluster(both.cluster))
    both.oracle = OraclePipeline(both.cluster, connections_limit=connections)
    return both


def _udp(sport):
    return ether() / IP(src=A, dst=B) / UDP(sport=sport, dport=80), PA


def test_a_full_table_takes_the_place_of_an_entry_that_expired_this_instant():
    # The expired entry is the older one: a sweep that looked only at the newest
    # entry, or kept an entry alive at its expiry instant, would report the table full.
    both = _small(2)
    assert both.run(*_udp(1), now=SEC).reason == "new"           # expires at 31 s
    assert both.run(*tcp("S"), now=2 * SEC).reason == "new"      # lives a second longer
    assert both.run(*_udp(2), now=31 * SEC - 1).reason == "conntrack_full"
    assert both.run(*_udp(2), now=31 * SEC).reason == "new"
    assert state(both, (A, B, 1, 80, 17, 0), 31 * SEC) is None
    assert state(both, (A, B, 1000, 80, 6, 0), 31 * SEC) == "SYN_SENT"


def test_a_connection_reopened_after_it_expired_counts_once():
    both = _small(2)
    assert both.run(*_udp(5), now=SEC).reason == "new"
    assert both.run(*_udp(5), now=31 * SEC).reason == "new"      # the same key, reopened
    assert both.run(*_udp(6), now=31 * SEC).reason == "new"      # so one place is still free
    assert both.run(*_udp(7), now=31 * SEC).reason == "conntrack_full"


def test_the_opener_acknowledges_before_a_connection_is_established_or_closed():
    # Packets without ACK leave SYN_RECV and LAST_ACK as they are.
    both = Both(PODS)
    key = (A, B, 1000, 80, 6, 0)
    rows = [("S", 0, "SYN_SENT"), ("SA", 1, "SYN_RECV"), ("P", 0, "SYN_RECV"), ("", 0, "SYN_RECV"),
            ("A", 0, "ESTABLISHED"), ("F", 0, "FIN_WAIT"), ("FA", 1, "LAST_ACK"), ("P", 0, "LAST_ACK"),
            ("U", 0, "LAST_ACK"), ("A", 0, "TIME_WAIT")]
    for i, (flags, rev, want) in enumerate(rows):
        both.run(*tcp(flags, rev), now=SEC + i)
        assert state(both, key, SEC + i) == want, (i, flags, rev)


def test_both_ends_are_looked_up_in_the_arrival_ip_address_domain():
    # In "blue", B is a's second interface; in the cluster's domain it is b, which a
    # policy isolates. A decision that looked the destination up in the cluster's
    # domain would drop blue's connection.
    c = cluster_from(PODS + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-b, namespace: t}
spec: {podSelector: {matchLabels: {app: b}}}
""")
    net1 = c.plane.add_address_to_pod_mapping("blue", A, "t/c", interface="net1", network="blue")
    blue_a = c.plane.add_address_to_pod_mapping("blue", B, "t/a", interface="net1", network="blue")
    both = Both.__new__(Both)
    both.cluster, both.dp, both.oracle = c, Datapath(), OraclePipeline(c)
    both.dp.install(compile_cluster(c))
    syn = ether() / IP(src=A, dst=B) / TCP(sport=9, dport=80, flags="S")
    r = both.run(syn, net1.port)
    assert (r.reason, r.zone, r.out_port) == ("new", 1, blue_a.port)
    assert both.run(syn, PA).reason == "denied_ingress"
    assert both.oracle.install(c, recheck=True) == 0     # blue's connection stays
    assert both.dp.install(compile_cluster(c), recheck=True) == 0


def test_a_recheck_decides_on_each_connections_protocol_and_port():
    open_80 = PODS + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-80, namespace: t}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{ports: [{port: 80, protocol: TCP}]}]
"""
    both = Both(PODS)
    for dport in (80, 81):
        syn = ether() / IP(src=A, dst=B) / TCP(sport=7, dport=dport, flags="S")
        assert both.run(syn, PA).reason == "new"
    both.run(ether() / IP(src=A, dst=B) / UDP(sport=7, dport=80), PA)
    after = cluster_from(open_80)
    assert both.dp.install(compile_cluster(after), recheck=True) == 2    # TCP 81, UDP 80
    assert both.oracle.install(after, recheck=True) == 2
    assert state(both, (A, B, 7, 80, 6, 0), SEC) == "SYN_SENT"
    assert state(both, (A, B, 7, 81, 6, 0), SEC) is None


@pytest.mark.parametrize("proto, opened", [(6, "SYN_SENT"), (17, "UDP_FIRST"), (132, "SCTP_INIT"), (1, "ICMP")])
def test_a_committed_translation_opens_in_its_protocols_first_state(proto, opened):
    both = Both(PODS)
    both.dp.commit_translated(A, "198.19.0.9", 5, 80, proto, B, 8080, PA, SEC)
    both.oracle.commit_translated(A, "198.19.0.9", 5, 80, proto, B, 8080, SEC)
    assert state(both, (A, "198.19.0.9", 5, 80, proto, 0), SEC) == opened


def test_a_recheck_leaves_out_connections_that_expired_at_the_last_packets_instant():
    both = Both(PODS)
    assert both.run(*_udp(1), now=SEC).reason == "new"           # expires at 31 s
    assert both.run(*_udp(2), now=31 * SEC).reason == "new"      # the clock's last tick
    after = cluster_from(PODS + DENY_INGRESS)
    assert both.dp.install(compile_cluster(after), recheck=True) == 1
    assert both.oracle.install(after, recheck=True) == 1


def test_a_full_table_finds_an_expired_entry_behind_a_live_head():
    # The per-batch reclaim stops at a FIFO head that has not expired: a SYN refreshed
    # by its retransmission less than a second after it was queued keeps its place
    # with a later expiry, in front of a UDP entry that has expired. The insert into
    # the full table must still find that one (ct_reclaim_expired), or "full" would
    # not mean every entry is live.
    both = _small(2)
    assert both.run(*tcp("S"), now=SEC).reason == "new"                            # expires 31 s
    assert both.run(*_udp(2), now=SEC + SEC // 5).reason == "new"                  # 31.2 s
    assert both.run(*tcp("S"), now=SEC + 9 * SEC // 10).reason == "established"    # now 31.9 s
    assert both.run(*_udp(3), now=31 * SEC + SEC // 2).reason == "new"
    assert both.run(*_udp(4), now=31 * SEC + SEC // 2).reason == "conntrack_full"
