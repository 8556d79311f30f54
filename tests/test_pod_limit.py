"""--max-connections-per-pod, in C and in the oracle at once: a port that holds its
limit of live connections opens no more (conntrack_pod_limit), others still do; replies
and packets of open connections pass; the count is exact across closes, reopenings,
expiries that no batch has reclaimed yet, rechecks, and a global limit reached first."""

from scapy.all import IP, TCP, UDP

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline

from .packets import ether
from .test_regressions import A, B, C, PA, PB, PC, PODS, Both

SEC = 1_000_000_000


def limited(per_port, connections=0):
    both = Both(PODS)
    both.dp = Datapath(per_port=per_port, connections=connections)
    both.dp.install(compile_cluster(both.cluster))
    both.oracle = OraclePipeline(both.cluster, per_port_limit=per_port,
                                 **({"connections_limit": connections} if connections else {}))
    return both


def udp(src, dst, sport, port):
    return ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=80), port


def syn(src, dst, sport, port, flags="S"):
    return ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags=flags), port


def test_a_flooding_pod_is_held_at_its_limit_and_the_others_are_not():
    both = limited(3)
    for sport in range(1, 4):
        assert both.run(*syn(A, B, sport, PA)).reason == "new"
    for sport in range(4, 50):                      # the flood
        assert both.run(*syn(A, B, sport, PA)).reason == "conntrack_pod_limit"
    assert both.run(*udp(A, C, 9, PA)).reason == "conntrack_pod_limit"   # any protocol, any peer
    # its open connections carry on, both ways, and so does everyone else
    assert both.run(*syn(A, B, 2, PA, "A")).reason == "established"
    assert both.run(ether() / IP(src=B, dst=A) / TCP(sport=80, dport=2, flags="SA"), PB).reason == "reply"
    for sport in range(1, 4):
        assert both.run(*udp(B, C, sport, PB)).reason == "new"
        assert both.run(*udp(C, A, sport, PC)).reason == "new"
    assert both.dp.counters()["conntrack_pod_limit"] == 47
    # replies opened nothing: A's peers are not charged for A's connections
    assert both.run(*udp(B, C, 4, PB)).reason == "conntrack_pod_limit"


def test_a_closed_or_expired_connection_gives_its_place_back():
    both = limited(2)
    assert both.run(*syn(A, B, 1, PA), now=SEC).reason == "new"           # SYN_SENT: 30 s
    assert both.run(*udp(A, B, 2, PA), now=2 * SEC).reason == "new"       # UDP_FIRST: 30 s
    assert both.run(*udp(A, B, 3, PA), now=3 * SEC).reason == "conntrack_pod_limit"
    # a reset closes the first; the reopening of the same key counts once
    assert both.run(ether() / IP(src=B, dst=A) / TCP(sport=80, dport=1, flags="R"), PB, now=4 * SEC).reason == "reply"
    assert both.run(*syn(A, B, 1, PA), now=5 * SEC).reason == "new"
    assert both.run(*udp(A, B, 3, PA), now=5 * SEC).reason == "conntrack_pod_limit"
    # at 32 s the UDP entry has expired though no batch reclaimed it: the count is exact
    assert both.run(*udp(A, B, 3, PA), now=32 * SEC - 1).reason == "conntrack_pod_limit"
    assert both.run(*udp(A, B, 3, PA), now=32 * SEC).reason == "new"
    assert both.run(*udp(A, B, 4, PA), now=32 * SEC).reason == "conntrack_pod_limit"


def test_an_expired_entry_no_batch_can_reclaim_is_not_counted():
    # The per-batch reclaim stops at a FIFO head that has not expired: here a SYN
    # refreshed (by its retransmission) less than a second after it was queued, so it
    # stayed in place with a later expiry, in front of a UDP entry that has expired.
    both = limited(2)
    assert both.run(*syn(A, B, 1, PA), now=SEC).reason == "new"                 # expires 31 s
    assert both.run(*udp(A, B, 2, PA), now=SEC + SEC // 5).reason == "new"      # 31.2 s
    assert both.run(*syn(A, B, 1, PA), now=SEC + 9 * SEC // 10).reason == "established"  # now 31.9 s
    assert both.run(*udp(A, B, 3, PA), now=31 * SEC + SEC // 2).reason == "new"
    assert both.run(*udp(A, B, 4, PA), now=31 * SEC + SEC // 2).reason == "conntrack_pod_limit"


def test_revoked_connections_are_uncounted():
    both = limited(2)
    for sport in (1, 2):
        assert both.run(*udp(A, B, sport, PA)).reason == "new"
    deny = PODS + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: t}
spec: {podSelector: {matchLabels: {app: b}}}
"""
    from .conftest import cluster_from
    new = cluster_from(deny)
    assert both.dp.install(compile_cluster(new), recheck=True) == both.oracle.install(new, recheck=True) == 2
    assert both.run(*udp(A, C, 3, PA)).reason == "new"
    assert both.run(*udp(A, C, 4, PA)).reason == "new"
    assert both.run(*udp(A, C, 5, PA)).reason == "conntrack_pod_limit"


def test_the_table_limit_and_the_pod_limit_each_name_their_drop():
    both = limited(per_port=2, connections=3)
    assert both.run(*udp(A, B, 1, PA)).reason == "new"
    assert both.run(*udp(A, B, 2, PA)).reason == "new"
    assert both.run(*udp(A, B, 3, PA)).reason == "conntrack_pod_limit"
    assert both.run(*udp(B, C, 1, PB)).reason == "new"
    assert both.run(*udp(C, A, 1, PC)).reason == "conntrack_full"          # C is under its limit
    assert both.dp.limits()["per_port"] == 2


def test_without_a_limit_a_port_opens_as_many_as_the_table_holds():
    both = limited(0, connections=64)
    for sport in range(1, 65):
        assert both.run(*udp(A, B, sport, PA)).reason == "new"
    assert both.run(*udp(A, B, 65, PA)).reason == "conntrack_full"
