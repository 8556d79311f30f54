"""The compiled tables against the model, exhaustively on fixed clusters: every pod
interface to every pod interface and to outside addresses, every protocol, ports on
every boundary, both families. The C verdict and deciding rule of a new connection
(ns_tables_policy_check, then a SYN through the pipeline) must be the model's; and
the compiled tables' sizes are what they should be."""

import ipaddress
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline._native import ffi, lib
from pipeline.dataplane import constants as K
from pipeline.dataplane.addr16 import addr16
from pipeline.dataplane.compiler import compile_cluster
from pipeline.load.build import load_cluster
from pipeline.model.addresses import DEFAULT_NETWORK
from pipeline.model.addresses import DEFAULT_DOMAIN
from pipeline.model.connections import Connections, open_connection_with_ip_addresses

from .conftest import cluster_from
from .strategies import clusters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTS = [0, 1, 52, 53, 54, 79, 80, 81, 89, 90, 91, 5432, 8080, 9090, 65535]
OUTSIDE = ["198.19.200.200", "198.19.200.9", "203.0.113.1", "2001:db8:f::1", "198.18.0.250"]

FEATURES = """
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: y}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web, tier: front}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]}]}
status: {podIPs: [{ip: 198.18.0.1}, {ip: "2001:db8::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: a, labels: {app: api}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: sig, containerPort: 90, protocol: SCTP}]}]}
status: {podIPs: [{ip: 198.18.0.2}, {ip: "2001:db8::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: b, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIPs: [{ip: 198.18.0.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: b, labels: {app: job, tier: front}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {podIPs: [{ip: 198.18.0.4}, {ip: "2001:db8::4"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: b, labels: {app: db}}
spec: {hostNetwork: true, containers: [{name: c}]}
status: {podIP: 198.19.128.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in, namespace: a}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: http}, {protocol: SCTP, port: sig}]
  - from: [{namespaceSelector: {matchLabels: {team: y}}, podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]
    ports: [{port: 80, endPort: 90}, {protocol: UDP}]
  - from: [{ipBlock: {cidr: 198.19.200.0/24, except: [198.19.200.0/28, 198.19.200.8/30]}}, {ipBlock: {cidr: "2001:db8:f::/48"}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {}}]
    ports: [{port: http}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [198.18.0.0/16]}}]
    ports: [{protocol: TCP, port: 53, endPort: 54}, {protocol: UDP, port: dns}]
  - to: [{namespaceSelector: {matchLabels: {team: y}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: b}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: pg}, {protocol: UDP}]}]
  egress: [{}]
"""


def check_grid(cluster, ports=PORTS, protocols=("TCP", "UDP", "SCTP", "ICMP"), peer_cells=True):
    compiled = compile_cluster(cluster, peer_cells=peer_cells)
    plane = cluster.plane
    ends = [str(ip) for a in plane.attachments() for ip in plane.addresses(a)] + OUTSIDE + ["198.19.128.1"]
    checked = 0
    for src, dst in itertools.product(ends, repeat=2):
        if src == dst or (":" in src) != (":" in dst):
            continue
        s_ep, d_ep = plane.lookup("cluster", src), plane.lookup("cluster", dst)
        if not hasattr(s_ep, "pod") and not hasattr(d_ep, "pod"):
            continue                    # not a connection of the cluster
        for proto, port in itertools.product(protocols, ports):
            if proto == "ICMP" and port:
                continue
            v = open_connection_with_ip_addresses(cluster, Connections(), src, dst, proto, port)
            egress, ingress = v.rule_ids()
            sid = compiled.identity_on.get((s_ep.pod, s_ep.network), 0) if hasattr(s_ep, "pod") else 0
            did = compiled.identity_on.get((d_ep.pod, d_ep.network), 0) if hasattr(d_ep, "pod") else 0
            num = K.PROTO_NUMBERS.get(proto, K.ICMP if ":" not in src else K.ICMPV6)
            rule = ffi.new("uint32_t *")
            if v.apart or v.notes and ("own address" in v.notes[0] or "from node" in v.notes[0]):
                continue                # decided before the rule tables (policy.c, in the pipeline tests)
            if plane.network_of(s_ep) != plane.network_of(d_ep):
                sid_seen, did_seen = 0, 0       # across routable networks the peer is an address
            else:
                sid_seen, did_seen = sid, did
            # Through the tiers (cluster-wide policy) on the cluster network.
            e_r = lib.ns_tables_direction_verdict(compiled.tables, 1, plane.network_of(s_ep) == DEFAULT_NETWORK,
                                                  sid, did_seen, addr16(dst), num, port, rule)
            e_ok, e_rule = e_r < 0, None if rule[0] == K.RULE_NONE else rule[0]
            i_r = lib.ns_tables_direction_verdict(compiled.tables, 0, plane.network_of(d_ep) == DEFAULT_NETWORK,
                                                  did, sid_seen, addr16(src), num, port, rule)
            i_ok, i_rule = i_r < 0, None if rule[0] == K.RULE_NONE else rule[0]
            want_e = v.egress.allowed if v.egress is not None else True
            want_i = v.ingress.allowed if v.ingress is not None else True
            assert (bool(e_ok), bool(i_ok)) == (want_e, want_i), (src, dst, proto, port, v.explain())
            for r, d in ((e_r, v.egress), (i_r, v.ingress)):
                if r >= 0:          # denied: by the tier the model names
                    tier = d.tier if d.tier in ("admin", "baseline") else ""
                    assert ffi.string(lib.ns_reason_name(r)) == (f"denied_{tier}_" if tier else "denied_").encode() \
                        + d.direction.lower().encode(), (src, dst, proto, port, v.explain())
            if e_ok:
                assert e_rule == egress, (src, dst, proto, port, v.explain())
            if i_ok and e_ok:
                assert i_rule == ingress, (src, dst, proto, port, v.explain())
            checked += 1
    return compiled, checked


@pytest.mark.parametrize("peer_cells,keys,entries", [(True, 13, 16), (False, 21, 27)])
def test_the_compiled_tables_decide_as_the_model_on_every_pair_and_port(peer_cells, keys, entries):
    compiled, checked = check_grid(cluster_from(FEATURES), peer_cells=peer_cells)
    assert checked > 2500
    # 7 pod addresses and the node's two; 3 ipBlocks over 6 prefixes (the IPv4 space
    # is one of them: 0.0.0.0/0 is it); identities in pod order: a/api, a/web, b/db, b/job.
    # Peer-set states: selected peers' keys become one key per distinct peer set.
    assert compiled.stats() == {"interfaces": 4, "identities": 4, "endpoints": 9, "blocks": 3, "prefixes": 6,
                                "rule_keys": keys, "rule_entries": entries, "frontends": 0, "backends": 0}
    assert compiled.identity_of == {"a/api": 1, "a/web": 2, "b/db": 3, "b/job": 4}
    assert compiled.policy.isolation == {1: 1, 2: 2, 3: 3}     # api ingress, web egress, db both


def test_the_example_compiles_to_what_the_model_decides():
    cluster, _ = load_cluster([os.path.join(ROOT, "examples", "shop")])
    compiled, checked = check_grid(cluster)
    assert checked > 1000
    assert compiled.stats() == {"interfaces": 5, "identities": 4, "endpoints": 10, "blocks": 1, "prefixes": 3,
                                "rule_keys": 6, "rule_entries": 6, "frontends": 5, "backends": 6}
    assert compiled.limits["endpoints"] >= compiled.stats()["endpoints"]


@settings(max_examples=int(os.environ.get("NETSEM_DIFF_EXAMPLES", "120")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(clusters(max_pods=5, max_policies=4), st.booleans())
def test_random_clusters_compile_to_what_the_model_decides(c, peer_cells):
    """Every pair of ends and a few ports on random clusters: strong against the
    compiler getting one feature wrong (an except, a named port, a range), with
    peer-set states and with a key per pair."""
    check_grid(c, ports=[0, 53, 80, 81, 90, 8080], protocols=("TCP", "UDP", "SCTP"), peer_cells=peer_cells)


@settings(max_examples=int(os.environ.get("NETSEM_DIFF_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(clusters(max_pods=5, max_policies=2, cluster_wide_policies=True), st.booleans())
def test_random_cluster_wide_policies_compile_to_what_the_model_decides(c, peer_cells):
    """Every cluster with Nodes and cluster-wide policies of both tiers (ties, Pass,
    nodes and networks peers, named ports): the tiers compiled into the tables decide,
    tier for tier and rule for rule, as the model's evaluation order."""
    check_grid(c, ports=[0, 53, 80, 81, 90, 100], protocols=("TCP", "UDP", "SCTP"), peer_cells=peer_cells)


def _many(pods: int, policies: int) -> str:
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: m}"]
    for i in range(pods):
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: m, labels: {{app: a{i % 7}}}}}\n"
                    f"status: {{podIPs: [{{ip: 198.18.1.{i + 1}}}, {{ip: '2001:db8::1:{i + 1:x}'}}]}}")
    for i in range(policies):
        docs.append(f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: n{i}, namespace: m}}\n"
                    f"spec:\n  podSelector: {{matchLabels: {{app: a{i % 7}}}}}\n"
                    f"  ingress: [{{from: [{{ipBlock: {{cidr: 198.18.{i}.0/24, except: [198.18.{i}.128/25]}}}},"
                    f" {{podSelector: {{matchLabels: {{app: a{(i + 1) % 7}}}}}}}], ports: [{{port: {80 + i}}}]}}]")
    return "\n---\n".join(docs)


def test_tables_are_sized_from_what_they_hold_and_a_cluster_that_does_not_fit_fails_whole():
    """Each table gets 1.25 x its entries, at least 16 (identities: the peer-set
    matrices' side, room for a quarter more and 8 for deltas; rules: exactly, at least 1). Built with less room, the build
    fails naming the first entry that did not fit, and what is installed keeps running."""
    from pipeline.dataplane.compiler import CompileError
    from pipeline.dataplane.driver import Datapath
    from scapy.all import IP, TCP, raw

    from .packets import ether
    c = cluster_from(_many(40, 30))
    compiled = compile_cluster(c)
    s = compiled.stats()
    assert (s["endpoints"], s["identities"], s["prefixes"]) == (82, 7, 61)    # 80 pods' + the node's 2
    assert compiled.limits == {
        "endpoints": int(82 * 1.25), "identities": (7 + 1) * 5 // 4 + 8, "rule_keys": int(s["rule_keys"] * 1.25),
        "rule_entries": int(s["rule_entries"] * 1.25), "prefixes": int(61 * 1.25),
        "class_blocks": int(61 * 1.25), "rules": 30, "frontends": 16, "backends": 16, "maglev_slots": 256}
    empty = compile_cluster(cluster_from("apiVersion: v1\nkind: Namespace\nmetadata: {name: m}"))
    assert empty.limits == {"endpoints": 16, "identities": 9, "rule_keys": 16, "rule_entries": 16,
                            "prefixes": 16, "class_blocks": 16, "rules": 1, "frontends": 16, "backends": 16,
                            "maglev_slots": 256}
    dp = Datapath()
    dp.install(compiled)
    syn = raw(ether() / IP(src="198.18.1.6", dst="198.18.1.40") / TCP(sport=5, dport=84, flags="S"))  # p5 -> p39: n4
    before = dp.run_batch([syn], [compiled.port_named("m/p5")], 10**9)[0]
    try:
        compile_cluster(c, limits_slack=0.5)
    except CompileError as e:
        what, _, address = str(e).rpartition(" ")
        assert what == "table full or invalid: endpoint" and c.plane.lookup(DEFAULT_DOMAIN, ipaddress.ip_address(address)), e
    else:
        raise AssertionError("a build with half the room succeeded")
    after = dp.run_batch([syn], [compiled.port_named("m/p5")], 2 * 10**9)[0]
    assert before.verdict == after.verdict and before.reason == "new" and after.reason == "established"


NAMED = """
apiVersion: v1
kind: Namespace
metadata: {name: n}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {app: c}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s1, namespace: n, labels: {app: s}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s2, namespace: n, labels: {app: s}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s3, namespace: n, labels: {app: s}}
spec: {containers: [{name: c}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: n}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {}}], ports: [{port: http}]}]
  egress:
  - to: [{podSelector: {matchLabels: {app: s}}}]
    ports: [{port: http}]
  - to: [{ipBlock: {cidr: 198.18.0.0/16}}]
    ports: [{port: http}]
"""


@pytest.mark.parametrize("peer_cells", [True, False])
def test_named_ports_resolve_per_identity_in_peer_sets(peer_cells):
    """One name, three meanings: port 80 on s1, 8080 on s2 and c, none on s3. The
    peer-set states group identities by what a rule's entries depend on (the peer's
    named ports for egress, the local's for ingress), never lumping two apart."""
    compiled, checked = check_grid(cluster_from(NAMED), ports=[80, 8080], protocols=("TCP",),
                                   peer_cells=peer_cells)
    assert checked > 20


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 6, 17]), st.integers(0, 40), st.integers(0, 40),
                          st.integers(0, 5)), max_size=8),
       st.lists(st.tuples(st.sampled_from([0, 6, 17]), st.integers(0, 40), st.integers(0, 40)), max_size=4),
       st.integers(0, 7))
def test_adding_a_rule_to_reduced_segments_is_reducing_them_all(old, new, rid):
    """PeerStates' linear merge (a later rule fills only what no earlier one covers)
    gives what the general reduction gives, whatever the order."""
    from pipeline.dataplane.compiler.peer_states import _add, _reduce
    old = _reduce(tuple((p, min(a, b), max(a, b), r) for p, a, b, r in old))
    es = tuple((p, min(a, b), max(a, b), rid) for p, a, b in new)
    assert _add(old, es) == _reduce(old + es)
