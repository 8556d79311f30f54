"""sessionAffinity: ClientIP with timeoutSeconds, in the C pipeline and the oracle side
by side: a client stays on its backend for the timeout after its latest connection
even when other backends come and go; it moves when its backend stops being ready or
the record expires; the record table is bounded and says when it is full."""

import ipaddress

from scapy.all import IP, TCP, raw

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.model.objects import Pod

from .conftest import cluster_from
from .packets import ether

SEC = 1_000_000_000
VIP = "198.19.0.30"


def manifests(n_backends, timeout=60):
    docs = [f"""
apiVersion: v1
kind: Pod
metadata: {{name: b{i}, namespace: t, labels: {{app: b}}}}
spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}
status: {{podIPs: [{{ip: 198.18.1.{i + 1}}}]}}
""" for i in range(n_backends)]
    docs += [f"""
apiVersion: v1
kind: Pod
metadata: {{name: c{i}, namespace: t, labels: {{app: c}}}}
spec: {{containers: [{{name: c}}]}}
status: {{podIPs: [{{ip: 198.18.2.{i + 1}}}]}}
""" for i in range(60)]
    docs.append(f"""
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: t}}
spec:
  selector: {{app: b}}
  clusterIP: {VIP}
  ports: [{{port: 80}}]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {timeout}}}}}
""")
    return "---".join(docs)


class Both:
    def __init__(self, cluster, affinity=0):
        self.dp = Datapath(affinity=affinity)
        self.oracle = OraclePipeline(cluster, affinity_limit=affinity or 65536)
        self.install(cluster)

    def install(self, cluster):
        self.dp.install(compile_cluster(cluster))
        self.oracle.install(cluster)
        self.cluster = cluster

    def open(self, client: int, sport: int, now: int):
        src = f"198.18.2.{client + 1}"
        port = self.cluster.plane.lookup("cluster", ipaddress.ip_address(src)).port
        frame = raw(ether() / IP(src=src, dst=VIP) / TCP(sport=sport, dport=80, flags="S"))
        native = self.dp.run_batch([frame], [port], now)[0]
        want = self.oracle.process(frame, port, now)
        assert native.comparable() == want.comparable(), (native, want)
        assert native.reason == "new", native
        return native.dst


def test_clients_keep_their_backend_while_backends_come_and_go_until_the_timeout():
    cluster = cluster_from(manifests(4))
    both = Both(cluster)
    clients = range(60)
    first = {c: both.open(c, 40000, SEC) for c in clients}
    assert len(set(first.values())) == 4                       # spread over the backends
    # three more backends: without records a third or more of the clients would move
    bigger = cluster_from(manifests(7))
    both.install(bigger)
    assert {c: both.open(c, 40001, 30 * SEC) for c in clients} == first
    # each new connection refreshed its record: still there 59 s after it, not 61 s
    assert {c: both.open(c, 40002, 89 * SEC) for c in clients} == first
    later = {c: both.open(c, 40003, 150 * SEC) for c in clients}     # expired: hashed anew
    assert later != first and len(set(later.values())) == 7
    # a backend that stops being ready loses its clients, who then stay where they went
    gone = later[0]
    pod = next(p for p in bigger.pods.values() if str(p.ips[0]) == gone)
    bigger.add_pod(Pod(pod.namespace, pod.name, pod.labels, pod.ports, ips=pod.ips, ready=False))
    both.install(bigger)
    moved = {c: both.open(c, 40004, 151 * SEC) for c in clients}
    assert all(moved[c] != gone for c in clients)
    assert all(moved[c] == later[c] for c in clients if later[c] != gone)
    assert {c: both.open(c, 40005, 152 * SEC) for c in clients} == moved


def test_a_full_record_table_hashes_without_records_and_says_so():
    cluster = cluster_from(manifests(4))
    both = Both(cluster, affinity=8)             # 8 slots, every key may sit in any
    for c in range(12):
        both.open(c, 40000, SEC)
    assert both.dp.limits()["affinity"] == 8
    assert both.dp.affinity_full == both.oracle.affinity.full == 4
    # expired records free their slots
    for c in range(8, 12):
        both.open(c, 40001, 200 * SEC)
    assert both.dp.affinity_full == both.oracle.affinity.full == 4
