"""The correctness holes a review found (issue 7, item 7 a-k), one test each; every
packet-level one runs the C pipeline and the oracle side by side and checks both
agree on the expected fate."""

import io
import json
import os
import subprocess
import sys

import pytest
from scapy.all import (ICMP, IP, TCP, UDP, ICMPv6DestUnreach, ICMPv6EchoRequest, IPerror,
                       IPv6, Raw, raw)

from pipeline.cli import main
from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.load.errors import ManifestErrors
from pipeline.model.connections import Connections, open_connection_with_ip_addresses
from pipeline.model.reach import ReachComputer

from .conftest import cluster_from
from .packets import ether

SEC = 1_000_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: t}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: t, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 198.18.0.10}, {ip: "2001:db8::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: t, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 198.18.0.11}, {ip: "2001:db8::11"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: t, labels: {app: c}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 198.18.0.12}, {ip: "2001:db8::12"}]}
"""
A, B, C = "198.18.0.10", "198.18.0.11", "198.18.0.12"
A6, B6 = "2001:db8::10", "2001:db8::11"
PA, PB, PC = 1, 2, 3
DENY_INGRESS = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-in, namespace: t}
spec: {podSelector: {}}
"""


class Both:
    """The C pipeline and the oracle on the same cluster; every packet through both."""

    def __init__(self, text, config=None):
        self.cluster = cluster_from(text, config)
        self.dp = Datapath()
        self.dp.install(compile_cluster(self.cluster))
        self.oracle = OraclePipeline(self.cluster)

    def run(self, frame, port, now=SEC):
        frame = raw(frame) if not isinstance(frame, bytes) else frame
        native = self.dp.run_batch([frame], [port], now)[0]
        oracle = self.oracle.process(frame, port, now)
        assert native.comparable() == oracle.comparable(), (native, oracle)
        return native


def test_7a_empty_policy_types_defaults_as_absent(make_cluster):
    base = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: t}}
spec:
  podSelector: {{matchLabels: {{app: a}}}}
  {types}
  egress: [{{to: [{{podSelector: {{matchLabels: {{app: b}}}}}}]}}]
"""
    empty = make_cluster(PODS + "---" + base.format(types="policyTypes: []"))
    absent = make_cluster(PODS + "---" + base.format(types=""))
    assert empty.policies["t/p"].policy_types == absent.policies["t/p"].policy_types == ("Ingress", "Egress")
    for c in (empty, absent):
        m = ReachComputer(c).matrix("TCP", 80).allowed
        assert not m[0, 2] and m[0, 1]        # a -> c denied (egress), a -> b allowed


def test_7b_ipv4_mapped_ipblock_never_matches_ipv4():
    pol = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: t}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{ipBlock: {cidr: "::ffff:198.18.0.0/120"}},
                    {ipBlock: {cidr: "::/0", except: ["::ffff:0:0/96"]}}]}]
"""
    both = Both(PODS + pol)               # compiles: no "table full or invalid"
    r = both.run(ether() / IP(src=A, dst=B) / TCP(sport=1, dport=80, flags="S"), PA)
    assert r.reason == "denied_ingress"
    r = both.run(ether() / IPv6(src=A6, dst=B6) / TCP(sport=1, dport=80, flags="S"), PA)
    assert r.reason == "new"              # ::/0 admits the IPv6 address
    v = open_connection_with_ip_addresses(both.cluster, Connections(), A, B, "TCP", 80)
    assert not v.allowed
    assert not ReachComputer(both.cluster).matrix("TCP", 80).allowed[0, 1]


def test_7c_icmp_error_is_related_only_to_the_quoted_packets_sender():
    both = Both(PODS + DENY_INGRESS.replace("podSelector: {}", "podSelector: {matchLabels: {app: c}}"))
    syn = IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags="S")
    assert both.run(ether() / syn, PA).reason == "new"
    quoted = IPerror(raw(syn)[:28])
    # b tells a about a's own connection: related
    ok = ether() / IP(src=B, dst=A) / ICMP(type=3, code=3) / quoted
    assert both.run(ok, PB).reason == "related"
    # b sends the same error to c, past c's ingress policy: not related to anything of c's
    bad = ether() / IP(src=B, dst=C) / ICMP(type=3, code=3) / quoted
    assert both.run(bad, PB).reason == "icmp_error_misdirected"
    # a (an endpoint of the connection) quoting it to c: misdirected too
    bad = ether() / IP(src=A, dst=C) / ICMP(type=3, code=3) / quoted
    assert both.run(bad, PA).reason == "icmp_error_misdirected"


def test_7d_echo_request_in_reverse_is_a_new_connection():
    allow = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: t}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
"""
    both = Both(PODS + DENY_INGRESS + allow)
    assert both.run(ether() / IP(src=A, dst=B) / ICMP(type=8, id=7), PA).reason == "new"
    assert both.run(ether() / IP(src=B, dst=A) / ICMP(type=0, id=7), PB).reason == "reply"
    # b pinging a with the same identifier is b's own new connection, which a's
    # ingress (deny) refuses
    assert both.run(ether() / IP(src=B, dst=A) / ICMP(type=8, id=7), PB).reason == "denied_ingress"
    assert both.run(ether() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=9), PA).reason == "new"
    assert both.run(ether() / IPv6(src=B6, dst=A6) / ICMPv6EchoRequest(id=9), PB).reason == "denied_ingress"


FINISHED = """
---
apiVersion: v1
kind: Pod
metadata: {name: job-1, namespace: t, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {phase: Succeeded, podIPs: [{ip: 198.18.0.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: job-2, namespace: t, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {phase: Failed, podIP: 198.18.0.99}
"""


def test_7e_finished_pods_hold_no_address(make_cluster):
    # job-1 finished on b's address: a real `kubectl get -o yaml` dump looks like this
    c = make_cluster(PODS + FINISHED)
    assert c.pod_at("198.18.0.11").key == "t/b"
    assert c.pod_at("198.18.0.99") is None
    assert [p.key for p in c.pod_list()] == ["t/a", "t/b", "t/c"]
    assert c.attachment("t/job-1") is None and c.attachment("t/job-2") is None
    # reached by nothing, selected by nothing: the address is an outside one now
    v = open_connection_with_ip_addresses(c, Connections(), "198.18.0.10", "198.18.0.99", "TCP", 80)
    assert v.allowed and v.destination == "198.18.0.99" and v.ingress is None
    # ... and the pipeline agrees: b's address goes to b
    both = Both(PODS + FINISHED)
    r = both.run(ether() / IP(src=A, dst="198.18.0.11") / TCP(sport=1, dport=80, flags="S"), PA)
    assert (r.reason, r.out_port) == ("new", PB)


def test_7e_a_finished_pod_is_not_probed_nor_in_policies_output(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PODS + FINISHED))
    assert main(["policies", "-f", "-", "--pod", "t/job-1", "-o", "json"]) == 0
    rel = json.loads(capsys.readouterr().out)
    assert rel["finished"] and not any(rel["selectedBy"].values())


def test_7f_node_traffic_is_allowed_unless_strict():
    from pipeline.model.cluster import ClusterConfig
    deny_all = DENY_INGRESS.replace("spec: {podSelector: {}}",
                                    "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}")
    node = "198.19.128.1"
    for strict, want in ((False, "new"), (True, "denied_ingress")):
        both = Both(PODS + deny_all, ClusterConfig(police_node_traffic=strict))
        r = both.run(ether() / IP(src=node, dst=A) / TCP(sport=5, dport=80, flags="S"), 0)
        assert r.reason == want, strict
    # another address from the uplink is policed as always where pod addresses are
    # routed; by default it does not reach the pod at all
    out = ether() / IP(src="198.19.200.1", dst=A) / TCP(sport=5, dport=80, flags="S")
    assert Both(PODS + deny_all, ClusterConfig(route_pod_addresses=True)).run(out, 0).reason == "denied_ingress"
    assert Both(PODS + deny_all).run(out, 0).reason == "pod_address_not_routed"


def test_7g_dead_tcp_connections_stay_dead():
    both = Both(PODS)
    ab = lambda f: ether() / IP(src=A, dst=B) / TCP(sport=1000, dport=80, flags=f)   # noqa: E731
    ba = lambda f: ether() / IP(src=B, dst=A) / TCP(sport=80, dport=1000, flags=f)   # noqa: E731
    assert [both.run(p, port).reason for p, port in ((ab("S"), PA), (ba("SA"), PB), (ab("A"), PA))] == \
        ["new", "reply", "established"]
    assert both.run(ba("R"), PB).reason == "reply"
    for p, port in ((ab("A"), PA), (ba("A"), PB), (ab("PA"), PA), (ab("F"), PA)):
        assert both.run(p, port).reason == "connection_closed"
    # only a new opening packet proceeds, policed as new
    assert both.run(ab("S"), PA).reason == "new"


def test_7h_ipv4_mapped_ipv6_addresses_are_dropped():
    both = Both(PODS)
    mapped_a = "::ffff:" + A
    r = both.run(ether() / IPv6(src=mapped_a, dst=B6) / TCP(sport=1, dport=80, flags="S"), PA)
    assert r.reason == "v4_mapped_address"          # not taken for a's IPv4 address
    # an ICMPv6 error from the uplink to ::ffff:<a> quoting a's IPv4 connection
    assert both.run(ether() / IP(src=A, dst="198.19.9.9") / TCP(sport=5, dport=443, flags="S"), PA).reason == "new"
    quoted = IPv6(src=mapped_a, dst="::ffff:198.19.9.9") / TCP(sport=5, dport=443, flags="S")
    err = ether() / IPv6(src="2001:db8:f::1", dst=mapped_a) / ICMPv6DestUnreach() / raw(quoted)[:48]
    assert both.run(err, 0).reason == "v4_mapped_address"
    err = ether() / IPv6(src="2001:db8:f::1", dst=A6) / ICMPv6DestUnreach() / raw(quoted)[:48]
    assert both.run(err, 0).reason == "v4_mapped_address"


def test_7i_jumbo_and_64k_frames_are_carried_whole():
    both = Both(PODS)
    syn = ether() / IP(src=A, dst=B) / TCP(sport=2, dport=80, flags="S") / Raw(b"x" * (2049 - 54))
    assert len(raw(syn)) == 2049
    assert both.run(syn, PA).reason == "new"
    jumbo = ether() / IP(src=A, dst=B) / UDP(sport=3, dport=80) / Raw(b"j" * (9000 - 42))
    assert both.run(jumbo, PA).reason == "new"
    big = ether() / IP(src=A, dst=B) / UDP(sport=4, dport=80) / Raw(b"g" * (65535 - 28))
    assert len(raw(big)) == 65549
    assert both.run(big, PA).reason == "new"
    v6 = ether() / IPv6(src=A6, dst=B6) / UDP(sport=5, dport=80) / Raw(b"6" * 9000)
    assert both.run(v6, PA).reason == "new"


def test_7j_expiry_saturates_at_the_end_of_the_clock():
    both = Both(PODS)
    end = (1 << 64) - 1
    syn = ether() / IP(src=A, dst=B) / TCP(sport=9, dport=80, flags="S")
    synack = ether() / IP(src=B, dst=A) / TCP(sport=80, dport=9, flags="SA")
    assert both.run(syn, PA, now=end - 5 * SEC).reason == "new"
    assert both.run(synack, PB, now=end - 1).reason == "reply"     # no wrap into the past
    assert both.run(synack, PB, now=end).reason == "no_connection"   # expiry == end <= now
    frag = ether() / IP(src=A, dst=B, id=5, flags="MF") / UDP(sport=1, dport=80, len=100) / Raw(b"y" * 24)
    assert both.run(frag, PA, now=end - 10).reason == "new"
    later = ether() / IP(src=A, dst=B, id=5, frag=4, proto=17) / Raw(b"z" * 16)
    assert both.run(later, PA, now=end - 1).reason == "fragment"


BAD_PEER = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: t}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: null}], ports: [{port: "8080"}]}]
"""


def test_7k_api_server_validation():
    from pipeline.load.manifests import load
    with pytest.raises(ManifestErrors) as e:
        load(["-"], stdin=io.StringIO(BAD_PEER))
    msgs = [str(x) for x in e.value.errors]
    assert "-:0:spec.ingress[0].from[0]: Required value: must specify a peer" in msgs
    assert any(m.startswith("-:0:spec.ingress[0].ports[0].port: Invalid value: '8080'") for m in msgs)
    svc = """
apiVersion: v1
kind: Service
metadata: {name: s, namespace: t}
spec: {ports: [{port: 80, targetPort: "8080"}]}
"""
    with pytest.raises(ManifestErrors) as e:
        load(["-"], stdin=io.StringIO(svc))
    assert "spec.ports[0].targetPort: Invalid value: '8080'" in str(e.value)


def test_7k_cli_refusals(tmp_path, capsys):
    f = tmp_path / "pods.yaml"
    f.write_text(PODS + FINISHED)
    assert main(["verdict", "-f", str(f), "--from", "t/a", "--to", "t/b", "--port", "0"]) == 2
    assert "--port: 0 is not a port number" in capsys.readouterr().err
    assert main(["verdict", "-f", str(f), "--from", "t/a", "--to", "t/job-1", "--port", "80"]) == 2
    assert "has finished (Succeeded)" in capsys.readouterr().err
    # a pipe, and a capture cut short: clear errors, exit 2, no traceback
    cap = os.path.join(ROOT, "examples", "captures", "shop.pcapng")
    data = open(cap, "rb").read()
    for cut in (data[:3], data[:100], data[:-7]):
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-f",
                            os.path.join(ROOT, "examples", "shop"), "--pcap", "-", "-q"],
                           input=cut, capture_output=True)
        assert r.returncode == 2, r.stderr
        assert b"Traceback" not in r.stderr and b"-: " in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-f",
                        os.path.join(ROOT, "examples", "shop"), "--pcap", "-", "-q", "--check"],
                       input=data, capture_output=True)
    assert r.returncode == 0 and b"oracle agrees on all 39" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-f",
                        os.path.join(ROOT, "examples", "shop"), "--pcap", str(tmp_path / "none.pcap")],
                       capture_output=True)
    assert r.returncode == 2 and b"cannot read" in r.stderr and b"Traceback" not in r.stderr
