"""`netsem probe` through the switch vs the model, on small manifests that exercise
one selector kind each, in socket and packet mode (root only; see conftest)."""
import io
import json
import os
import re
import socket

import pytest

from pipeline.cli.render import render_probe
from pipeline.switch.probe import probe as run_probe
from tests.conftest import cluster_from
from tests.switch.conftest import TWO_PODS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PODS3 = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: t, labels: {team: t}}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: u, labels: {team: u}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: t, labels: {app: a}}
    spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}]}]}
    status: {podIPs: [{ip: 198.18.0.10}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: b, namespace: t, labels: {app: b}}
    spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}]}]}
    status: {podIPs: [{ip: 198.18.0.11}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: c, namespace: u, labels: {app: c}}
    spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 9090}]}]}
    status: {podIPs: [{ip: 198.18.0.12}]}
    """

NAMESPACE_SELECTOR = PODS3 + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: from-team-u, namespace: t}
    spec:
      podSelector: {matchLabels: {app: b}}
      ingress: [{from: [{namespaceSelector: {matchLabels: {team: u}}}]}]
    """

IP_BLOCK = PODS3 + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: block, namespace: t}
    spec:
      podSelector: {matchLabels: {app: b}}
      ingress: [{from: [{ipBlock: {cidr: 198.18.0.0/24, except: [198.18.0.12/32]}}]}]
    """

NAMED_PORT = PODS3 + """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: web-only, namespace: t}
    spec:
      podSelector: {}
      ingress: [{ports: [{port: web}]}]
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: web-only, namespace: u}
    spec:
      podSelector: {}
      ingress: [{ports: [{port: web}]}]
    """

# a may open TCP and UDP connections to b on 8080; nothing may open any to a.
A_TO_B = TWO_PODS + """
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
      ingress:
      - from: [{podSelector: {matchLabels: {app: a}}}]
        ports: [{port: 8080, protocol: TCP}, {port: 8080, protocol: UDP}]
    """


def probe(text=None, cluster=None, **kw):
    report = run_probe(cluster or cluster_from(text), timeout=0.5, prefix="nsm" + os.urandom(3).hex(), **kw)
    out = io.StringIO()
    render_probe(report, "json", out)
    cells = json.loads(out.getvalue())
    assert not report.differ, [c for c in cells if c["allowed"] != c["expected"]]
    assert cells and all(c["allowed"] == c["expected"] for c in cells)
    return {(c["from"], c["to"], c["protocol"], c["port"]): c for c in cells}


def test_namespace_selector():
    cells = probe(NAMESPACE_SELECTOR, ports=[8080], protocols=["TCP"])
    assert cells[("u/c", "t/b", "TCP", 8080)]["allowed"]
    assert not cells[("t/a", "t/b", "TCP", 8080)]["allowed"]


def test_ip_block_with_except():
    cells = probe(IP_BLOCK, ports=[8080], protocols=["TCP", "UDP"])
    assert cells[("t/a", "t/b", "UDP", 8080)]["allowed"]
    assert not cells[("u/c", "t/b", "TCP", 8080)]["allowed"]      # the except


def test_named_ports_resolve_per_destination():
    cells = probe(NAMED_PORT, ports=[8080, 9090], protocols=["TCP"])
    assert cells[("t/a", "t/b", "TCP", 8080)]["allowed"]
    assert not cells[("t/a", "t/b", "TCP", 9090)]["allowed"]
    assert cells[("t/a", "u/c", "TCP", 9090)]["allowed"]
    assert not cells[("t/a", "u/c", "TCP", 8080)]["allowed"]


def test_packet_mode_replies_through_conntrack():
    cells = probe(A_TO_B, ports=[8080], protocols=["TCP", "UDP"], mode="packets")
    assert cells[("t/a", "t/b", "TCP", 8080)]["detail"] == "SYN-ACK received"
    assert cells[("t/a", "t/b", "UDP", 8080)]["detail"] == "echo received"
    assert cells[("t/b", "t/a", "TCP", 8080)]["detail"] == "no SYN-ACK or RST"
    assert cells[("t/b", "t/a", "UDP", 8080)]["detail"] == "echo missing"


def test_packet_mode_shop():
    from pipeline.load.build import load_cluster
    cluster, _ = load_cluster([os.path.join(ROOT, "examples", "shop")])
    cells = probe(cluster=cluster, mode="packets")
    details = {c["detail"] for c in cells.values()}
    assert "SYN-ACK received" in details and "no SYN-ACK or RST" in details


def test_udp_replies_pass_reverse_new_denied(switch_run):
    r = switch_run(A_TO_B)
    srv = r.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((r.ip("t/b"), 8080))
    srv.settimeout(1)
    cli = r.sock("t/a", socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind((r.ip("t/a"), 8080))
    cli.settimeout(1)
    cli.sendto(b"ping", (r.ip("t/b"), 8080))
    data, addr = srv.recvfrom(100)
    assert data == b"ping"
    srv.sendto(b"pong", addr)                       # the reply passes
    assert cli.recv(100) == b"pong"
    other = r.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    other.sendto(b"new", (r.ip("t/a"), 8080))       # a new flow b -> a: denied
    with pytest.raises(socket.timeout):
        cli.recv(100)
    assert r.counter("denied_ingress") >= 1
    for s in (srv, cli, other):
        s.close()


def test_through_a_service_per_pod_as_upstream_e2e_probes():
    """--via service: every destination through a ClusterIP of its own; the observed
    matrix equals plain probe's and the model's (policy sees the backend), in socket
    and packet mode (the replies come back from the VIP, reverse-translated)."""
    plain = probe(IP_BLOCK, ports=[8080], protocols=["TCP", "UDP"])
    via = probe(IP_BLOCK, ports=[8080], protocols=["TCP", "UDP"], via_service=True)
    assert {k: c["allowed"] for k, c in via.items()} == {k: c["allowed"] for k, c in plain.items()}
    assert via[("t/a", "t/b", "UDP", 8080)]["detail"] == "connected via 198.19.64.2"     # the echo came
    assert via[("t/a", "t/b", "TCP", 8080)]["detail"] == "connected via 198.19.64.2"
    assert via[("t/a", "t/a", "TCP", 8080)]["detail"] == "connected"       # itself: its own address
    packets = probe(A_TO_B, ports=[8080], protocols=["TCP", "UDP"], mode="packets", via_service=True)
    assert packets[("t/a", "t/b", "TCP", 8080)]["detail"].startswith("SYN-ACK received via 198.19.64.")
    assert packets[("t/a", "t/b", "UDP", 8080)]["detail"].startswith("echo received via 198.19.64.")
    assert packets[("t/b", "t/a", "TCP", 8080)]["detail"].startswith("no SYN-ACK or RST via")


SPREAD = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: t}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: client, namespace: t, labels: {app: client}}
    status: {podIPs: [{ip: 198.18.0.10}]}
""" + "".join(f"""
    ---
    apiVersion: v1
    kind: Pod
    metadata: {{name: web-{i}, namespace: t, labels: {{app: web, n: "{i}"}}}}
    spec: {{containers: [{{name: c, image: x, ports: [{{name: http, containerPort: {8080 + i}}}]}}]}}
    status: {{podIPs: [{{ip: 198.18.0.{20 + i}}}]{', conditions: [{type: Ready, status: "False"}]' if i == 3 else ''}}}
""" for i in range(4)) + """
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: t}
    spec: {selector: {app: web}, clusterIP: 198.19.0.20, ports: [{port: 80, targetPort: http}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: empty, namespace: t}
    spec: {selector: {app: nobody}, clusterIP: 198.19.0.21, ports: [{port: 80}]}
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: not-web-2, namespace: t}
    spec: {podSelector: {matchLabels: {n: "2"}}, policyTypes: [Ingress]}
"""


def test_services_from_every_pod_show_policy_and_the_spread():
    """32 connections client -> web's ClusterIP: answered by web-0 and web-1 (each on its
    own named target port), timed out when web-2 (ingress-isolated) is picked, never
    web-3 (not ready): '~'; the Service without a ready backend refuses ('-')."""
    report = run_probe(cluster_from(SPREAD), ports=[8080], protocols=["TCP"], timeout=0.5,
                       prefix="nsm" + os.urandom(3).hex(), services=True)
    cells = {(s.source, s.service): s for s in report.services}
    web, empty = cells[("t/client", "t/web")], cells[("t/client", "t/empty")]
    assert not report.services_differ, report.services_differ
    assert web.expected == "~" and set(web.answers) == {"t/web-0", "t/web-1"}, web
    assert web.timeouts > 0 and sum(web.answers.values()) + web.timeouts == 32
    assert (empty.expected, empty.observed, empty.refused) == ("-", "-", 32)
    out = io.StringIO()
    render_probe(report, "table", out)
    text = out.getvalue()
    # web-2 answers only itself: through its own Service it is not policed (hairpin)
    assert re.search(r": t/web TCP/80: t/web-0 \d+, t/web-1 \d+, t/web-2 \d+\n", text), text
    assert "all 12 Service cells agree with the model" in text   # every pod and the uplink to both
    up = cells[("uplink", "t/web")]
    assert up.expected == "~" and set(up.answers) == {"t/web-0", "t/web-1"}     # web-2 isolated from outside too
    assert "not probed" not in text
    own = cells[("t/web-2", "t/web")]
    assert own.observed == own.expected == "." and own.answers["t/web-2"] > 0, own


@pytest.mark.parametrize("mode", ["sockets", "packets"])
def test_cluster_wide_policy_tiers_on_real_packets(mode):
    """examples/cluster-wide: every tier decides some pair, and the switch agrees with
    the model on each (probe fails on any difference)."""
    from pipeline.load.build import load_cluster
    cluster, _ = load_cluster([os.path.join(ROOT, "examples", "cluster-wide")])
    cells = probe(cluster=cluster, ports=[80, 8080], protocols=["TCP"], mode=mode)
    harry, draco, cedric = "gryffindor/harry-potter", "slytherin/draco-malfoy", "hufflepuff/cedric-diggory"
    assert cells[(cedric, harry, "TCP", 80)]["allowed"]            # Admin Allow, over the NetworkPolicy
    assert not cells[(draco, harry, "TCP", 80)]["allowed"]         # Admin Deny
    assert cells[(draco, harry, "TCP", 8080)]["allowed"]           # Admin Pass; the NetworkPolicy allows
    assert not cells[(cedric, harry, "TCP", 8080)]["allowed"]      # the NetworkPolicy isolates
    assert not cells[(draco, cedric, "TCP", 80)]["allowed"]        # Baseline Deny
    assert not cells[(cedric, draco, "TCP", 8080)]["allowed"]      # ClusterNetworkPolicy, networks peer
    assert cells[(harry, cedric, "TCP", 8080)]["allowed"]          # no tier decides: allowed
