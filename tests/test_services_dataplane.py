"""The service mapper, C against the oracle, on random clusters: new connections from
every pod to every Service port (exposed or not, TCP, UDP, SCTP, both families),
replies from the backend each chose, continuations, and Service changes (a backend
made not ready, then ready again) between them. Every packet's fate must agree, and
the tuple → backend choice must be what the model's Maglev table says."""

import ipaddress
import os

from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.all import (ICMP, IP, SCTP, TCP, UDP, ICMPv6DestUnreach, IPv6, SCTPChunkData, SCTPChunkInit,
                       SCTPChunkInitAck, raw)

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.constants import REWRITE_DST, REWRITE_SRC
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.model.objects import Pod
from pipeline.model.services import maglev_size

from .packets import NODE4, NODE6, ether
from .strategies import PORTS, SERVICE_PORTS, VIP4, VIP6, clusters

SEC = 1_000_000_000
EXAMPLES = int(os.environ.get("NETSEM_DIFF_EXAMPLES", "120"))


def l4(proto, sport, dport, flags="S"):
    if proto == "TCP":
        return TCP(sport=sport, dport=dport, flags=flags)
    if proto == "UDP":
        return UDP(sport=sport, dport=dport)
    chunk = {"S": SCTPChunkInit(), "SA": SCTPChunkInitAck()}.get(flags, SCTPChunkData(data=b"x"))
    return SCTP(sport=sport, dport=dport) / chunk


class Both:
    def __init__(self, cluster):
        self.dp, self.oracle = Datapath(), OraclePipeline(cluster)
        self.dp.install(compile_cluster(cluster))

    def swap(self, cluster):
        self.dp.install(compile_cluster(cluster))
        self.oracle.install(cluster)

    def run(self, pkt, port, now):
        frame = raw(ether() / pkt)
        native = self.dp.run_batch([frame], [port], now)[0]
        want = self.oracle.process(frame, port, now)
        assert native.comparable() == want.comparable(), (native, want, frame.hex())
        return native


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_service_connections_agree_and_follow_their_backend(data):
    cluster = data.draw(clusters(max_pods=6, max_policies=3))
    if "ns-a/svc" not in cluster.services:
        return
    # Backends for sure: pods of the Service, with some of its target ports by name.
    for i in range(data.draw(st.integers(1, 4))):
        ips = [ipaddress.ip_address(f"198.18.0.{100 + i}")]
        if data.draw(st.booleans()):
            ips.append(ipaddress.ip_address(f"2001:db8::{100 + i:x}"))
        ports = tuple(data.draw(st.sets(st.sampled_from(PORTS), max_size=4)))
        cluster.add_pod(Pod("ns-a", f"backend-{i}", {"app": "x"}, ports, ips=tuple(ips),
                            ready=data.draw(st.integers(0, 4)) != 0))
    both = Both(cluster)
    clients = [(a, ip) for a in cluster.plane.attachments() for ip in cluster.plane.addresses(a)]
    if not clients:
        return
    now, translated, sport = SEC, [], 20000
    for step in range(data.draw(st.integers(4, 30))):
        now += data.draw(st.sampled_from([1, 1, SEC, SEC, 200 * SEC]))
        op = data.draw(st.sampled_from(["open", "open", "outside", "reply", "more", "error", "change"]))
        if op == "open":
            a, ip = data.draw(st.sampled_from(clients))
            vip = VIP4 if ip.version == 4 else VIP6
            sp = data.draw(st.sampled_from(SERVICE_PORTS + (None,)))
            proto, port = (sp.protocol, sp.port) if sp else (data.draw(st.sampled_from(["TCP", "UDP"])), 82)
            sport += 1
            l3 = IP if ip.version == 4 else IPv6
            r = both.run(l3(src=str(ip), dst=vip) / l4(proto, sport, port), a.port, now)
            if sp is None and a.domain == "cluster":      # elsewhere the VIP is no Service's
                assert r.reason == "service_port_unknown"
            if r.reason == "new":
                # hairpin: back to the client pod itself, from the node's address
                hairpin = r.dst == str(ip)
                assert r.rewrite == (REWRITE_DST | REWRITE_SRC if hairpin else REWRITE_DST)
                assert r.src == (str(ip) if not hairpin else NODE4 if ip.version == 4 else NODE6)
                translated.append((a.pod, ip, vip, sport, port, proto, r.dst, r.dport, r.src, r.sport))
        elif op == "outside":
            # From outside the cluster (the uplink) to a node port of a node address, or
            # to a port of it that is no node port (the node's own: not translated).
            fam = data.draw(st.sampled_from([4, 6]))
            client, node = ("198.19.7.7", NODE4) if fam == 4 else ("2001:db8:f::7", NODE6)
            sp = data.draw(st.sampled_from(SERVICE_PORTS))
            svc = cluster.services["ns-a/svc"]
            node_port = svc.port(sp.protocol, sp.port).node_port or 31999
            sport += 1
            l3 = IP if fam == 4 else IPv6
            r = both.run(l3(src=client, dst=node) / l4(sp.protocol, sport, node_port), 0, now)
            if svc.type == "ClusterIP":
                assert r.rewrite == 0
            if r.reason == "new" and r.rewrite:
                assert (r.src, r.sport) == (client, sport)     # no source NAT from outside
                translated.append((None, ipaddress.ip_address(client), node, sport, node_port, sp.protocol,
                                   r.dst, r.dport, r.src, r.sport))
        elif op in ("reply", "more") and translated:
            pod, ip, vip, cport, port, proto, bip, bport, seen, seen_port = data.draw(st.sampled_from(translated))
            l3 = IP if ip.version == 4 else IPv6
            # (a pod re-added by a change may sit on another switch port now)
            bsw = cluster.plane.lookup("cluster", ipaddress.ip_address(bip)).port
            client = cluster.plane.lookup("cluster", ip)
            csw = client.port if client is not None else 0          # outside: the uplink
            if op == "reply":
                r = both.run(l3(src=bip, dst=seen) / l4(proto, bport, seen_port, "SA"), bsw, now)
                if r.reason == "reply":
                    assert (r.src, r.sport, r.dst, r.dport) == (vip, port, str(ip), cport)
                    assert r.rewrite == REWRITE_SRC | (REWRITE_DST if seen != str(ip) else 0)
            else:
                r = both.run(l3(src=str(ip), dst=vip) / l4(proto, cport, port, "A"), csw, now)
                if r.reason == "established":       # a new one may go elsewhere after a change
                    assert (r.dst, r.dport, r.src, r.sport) == (bip, bport, seen, seen_port)
        elif op == "error" and translated:
            # The backend's kernel refuses what it received (translated): the client
            # must get the error from the address it sent to, quoting what it sent.
            pod, ip, vip, cport, port, proto, bip, bport, seen, seen_port = data.draw(st.sampled_from(translated))
            bsw = cluster.plane.lookup("cluster", ipaddress.ip_address(bip)).port
            if ip.version == 4:
                err = IP(src=bip, dst=seen) / ICMP(type=3, code=3) / raw(IP(src=seen, dst=bip) /
                                                                         l4(proto, seen_port, bport))[:28]
            else:
                err = IPv6(src=bip, dst=seen) / ICMPv6DestUnreach(code=4) / raw(IPv6(src=seen, dst=bip) /
                                                                                 l4(proto, seen_port, bport))[:48]
            r = both.run(err, bsw, now)
            # (once the connection expired, a "reply" may have opened one the other way,
            # untranslated, which the error then belongs to)
            if r.reason == "related" and r.rewrite:
                assert (r.src, r.dst) == (vip, str(ip))
        elif op == "change":
            # A pod changes readiness: new connections follow, established ones stay.
            pods = [p for p in cluster.pods.values() if not p.finished]
            p = data.draw(st.sampled_from(pods))
            cluster.add_pod(Pod(p.namespace, p.name, p.labels, p.ports, p.host_network, p.ips, p.phase,
                                p.node_name, not p.ready))
            both.swap(cluster)
            clients = [(a, ip) for a in cluster.plane.attachments() for ip in cluster.plane.addresses(a)]
            if not clients:
                return


def test_maglev_tables_spread_evenly_and_move_little():
    from pipeline.model.services import Backend, maglev_table
    bs = [Backend(ipaddress.ip_address(f"198.18.1.{i}"), 8080, None, True) for i in range(1, 101)]
    t = maglev_table(bs)
    assert len(t) == maglev_size(100) == 1021
    counts = [t.count(i) for i in range(100)]
    assert max(counts) - min(counts) <= 1
    smaller = maglev_table(bs[:99])             # backend 99 removed
    moved = sum(1 for x, y in zip(t, smaller) if x != 99 and x != y)
    assert moved < len(t) * 0.05, moved


NODE_PORT = """
apiVersion: v1
kind: Namespace
metadata: {name: t}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: t, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIPs: [{ip: 198.18.0.20}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: t}
status: {podIPs: [{ip: 198.18.0.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t}
spec: {type: NodePort, selector: {app: web}, externalIPs: [198.18.200.1],
       ports: [{name: a, port: 80, targetPort: http, nodePort: 30080},
               {name: b, port: 80, protocol: UDP, targetPort: 9090, nodePort: 30080},
               {name: c, port: 81, targetPort: 9191, nodePort: 30081}]}
"""


def test_node_ports_and_external_ips_from_outside_and_from_pods():
    """kube-proxy opens a NodePort on every node address, for the outside and for
    pods alike; an externalIP is the Service's address like its ClusterIP. The node's
    other ports are the node's own (not translated)."""
    import io
    from pipeline.load.build import load_cluster
    cluster, _ = load_cluster(["-"], stdin=io.StringIO(NODE_PORT))
    both = Both(cluster)
    web, client = cluster.attachment("t/web").port, cluster.attachment("t/client").port
    r = both.run(IP(src="198.19.7.7", dst=NODE4) / TCP(sport=5000, dport=30080, flags="S"), 0, SEC)
    assert (r.reason, r.dst, r.dport, r.out_port, r.rewrite) == ("new", "198.18.0.20", 8080, web, REWRITE_DST)
    r = both.run(IP(src="198.18.0.20", dst="198.19.7.7") / TCP(sport=8080, dport=5000, flags="SA"), web, SEC)
    assert (r.reason, r.src, r.sport, r.out_port) == ("reply", NODE4, 30080, 0)
    # one node port number on two protocols, and a second node port: each its own frontend
    r = both.run(IP(src="198.19.7.7", dst=NODE4) / UDP(sport=5000, dport=30080), 0, SEC)
    assert (r.reason, r.dport) == ("new", 9090)
    r = both.run(IP(src="198.19.7.7", dst=NODE4) / TCP(sport=5009, dport=30081, flags="S"), 0, SEC)
    assert (r.reason, r.dport) == ("new", 9191)
    r = both.run(IP(src="198.19.7.7", dst="198.18.200.1") / TCP(sport=5001, dport=80, flags="S"), 0, SEC)
    assert (r.reason, r.dst, r.dport) == ("new", "198.18.0.20", 8080)
    r = both.run(IP(src="198.18.0.10", dst=NODE4) / TCP(sport=5002, dport=30080, flags="S"), client, SEC)
    assert (r.reason, r.dst, r.out_port) == ("new", "198.18.0.20", web)
    r = both.run(IP(src="198.18.0.10", dst=NODE4) / TCP(sport=5003, dport=22, flags="S"), client, SEC)
    assert (r.reason, r.rewrite, r.dst) == ("new", 0, NODE4)          # the node's own port
    assert cluster.services["t/web"].ports[0].node_port == 30080


def test_the_oracle_hashes_tuples_as_the_c_does():
    """ns_flow_hash written twice: random tuples of both families agree (the
    differential tests only see it where several backends are ready)."""
    import random

    from pipeline._native import lib
    from pipeline.dataplane.oracle.service import flow_hash
    rnd = random.Random(11)

    def a16(ip):
        return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed
    for _ in range(3000):
        bits = rnd.choice([32, 128])
        a, b = (ipaddress.ip_address(rnd.getrandbits(bits)) for _ in range(2))
        sport, dport, proto = rnd.getrandbits(16), rnd.getrandbits(16), rnd.choice([6, 17, 132])
        assert flow_hash(a, b, sport, dport, proto) == lib.ns_flow_hash(a16(a), a16(b), sport, dport, proto)
