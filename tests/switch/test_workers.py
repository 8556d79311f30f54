"""Workers (issue 12): two switch threads over one pipeline, each port's frames spread
over them by PACKET_FANOUT. Connections, translations and policy hold whichever worker
a packet lands on; both workers carry traffic; ports change under running workers;
busy polling carries the same traffic; and interrupt moderation batches a stream."""

import socket
import threading

import pytest
from pyroute2 import IPRoute

from .conftest import TWO_PODS
from .test_offload import SVC, VIP, transfer

DENY_B = TWO_PODS + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: b-only-9, namespace: t}
    spec:
      podSelector: {matchLabels: {app: b}}
      ingress: [{ports: [{port: 9}]}]
    """


def many_connections(run, dst, port, n=120):
    """n connections from a to b (through dst:port), each echoing its own number."""
    srv = run.listen_tcp("t/b", 8080)
    srv.settimeout(0.2)            # short: the thread notices `done` and lets the port go
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            c.sendall(c.recv(16))
            c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ok = 0
    try:
        for i in range(n):
            s = run.sock("t/a", socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((dst, port))
                s.sendall(str(i).encode())
                ok += s.recv(16) == str(i).encode()
            finally:
                s.close()
    finally:
        done.set()
        t.join(10)
        srv.close()
    return ok


def sent_by(run, key):
    """Frames the pod's interface sent (the kernel's count)."""
    pp = run.topo.by_key(key)
    with IPRoute(netns=pp.netns) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=pp.ifname)[0])[0]
        return link.get_attr("IFLA_STATS64")["tx_packets"]


def test_two_workers_carry_connections_through_a_service(switch_run):
    run = switch_run(SVC, workers=2)
    assert run.sw.workers == 2
    assert many_connections(run, VIP[4], 80) == 120
    sent, got = transfer(run, VIP[4], 80, 4, size=8 << 20)
    assert sent == got
    per = run.sw.worker_counters()
    # flows hash to either worker: with 120 of them both get some
    assert all(w["batches"] > 0 for w in per), per
    st = run.sw.stats()
    assert st.reasons["new"] >= 121 and st.switch["rewrite_failed"] == 0
    # each frame reached one worker: the switch took from a's port what a sent
    # (but the few a sent before the switch was attached: IPv6 solicitations)
    run.sync()
    got, sent = run.sw.port_stats(run.topo.by_key("t/a").port)["rx_packets"], sent_by(run, "t/a")
    assert sent - 10 <= got <= sent, (got, sent)


def test_two_workers_still_police(switch_run):
    run = switch_run(DENY_B, workers=2)
    run.listen_tcp("t/b", 8080).close()
    assert run.connect_tcp("t/a", "t/b", 8080, timeout=0.5) is None
    assert run.counter("denied_ingress") > 0


def test_ports_change_under_running_workers(switch_run):
    run = switch_run(SVC, workers=2)
    assert many_connections(run, VIP[4], 80, n=20) == 20
    three = SVC + """
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: t, labels: {app: c}}
spec: {containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 198.18.0.12}]}
"""
    from tests.conftest import cluster_from
    from pipeline.dataplane.compiler import compile_cluster
    gone, added = run.sw.rewire(compile_cluster(cluster_from(three)))
    assert [pp.key for pp in added] == ["t/c"] and not gone
    assert many_connections(run, VIP[4], 80, n=20) == 20


@pytest.mark.parametrize("workers", [1, 2])
def test_busy_poll_carries_the_same(switch_run, workers):
    """Spinning with a budget longer than the gaps between frames: no worker sleeps
    while the connections go on (a sleep is an epoll_wait that blocked)."""
    run = switch_run(SVC, busy_poll_us=3_000_000, workers=workers)
    assert many_connections(run, VIP[4], 80, n=5) == 5
    before = run.sw.stats().switch
    assert many_connections(run, VIP[4], 80, n=40) == 40
    after = run.sw.stats().switch
    assert after["sleeps"] == before["sleeps"], (before, after)
    assert after["wakeups"] > before["wakeups"] + 40


def test_coalescing_gathers_a_stream_into_batches(switch_run):
    """--coalesce: after a batch of a stream the switch lets frames gather, so a burst
    of datagrams goes through in a few large batches, all of them delivered."""
    run = switch_run(TWO_PODS, coalesce_us=500)
    rx = run.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 1 << 25)  # SO_RCVBUFFORCE   # root: past rmem_max
    rx.bind((run.ip("t/b"), 9000))
    rx.settimeout(2)
    tx = run.sock("t/a", socket.AF_INET, socket.SOCK_DGRAM)
    tx.sendto(b"hello", (run.ip("t/b"), 9000))       # the connection, and neighbours, first
    assert rx.recv(64) == b"hello"
    before = run.sw.stats().switch
    for i in range(3000):
        tx.sendto(b"%d" % i, (run.ip("t/b"), 9000))
    got = 0
    try:
        while got < 3000:
            rx.recv(64)
            got += 1
    except socket.timeout:
        pass
    after = run.sw.stats().switch
    tx.close()
    rx.close()
    assert got == 3000
    assert after["batches"] - before["batches"] < 3000 / 4, (before, after)
