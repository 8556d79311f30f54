"""The event ring out of C and the flow records and rule hits built on it."""

from scapy.all import IP, TCP, UDP

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.flows import FlowBuilder

from .conftest import cluster_from
from .packets import ether
from .test_regressions import A, B, C, PA, PB, PC, PODS

SEC = 1_000_000_000
POLICY = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: t}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
"""
DENY_ALL = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: t}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"""


def tcp(src, dst, sport, flags):
    return bytes(ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags=flags))


def test_every_kind_of_event_with_its_rules_and_generation():
    c = cluster_from(PODS + POLICY)
    dp = Datapath(events=64)
    compiled = compile_cluster(c)
    dp.install(compiled)
    res = dp.run_batch([tcp(A, B, 1, "S"), tcp(C, B, 2, "S"), tcp(A, B, 3, "S")], [PA, PC, PB], SEC)
    assert [r.reason for r in res] == ["new", "denied_ingress", "spoofed_source"]
    ev = dp.events()
    assert [e.type for e in ev] == ["new", "denied", "dropped"]
    new, denied, dropped = ev
    rid = compiled.rules[("t/b-from-a", "Ingress", 0)]
    assert (new.src, new.dst, new.sport, new.in_port, new.out_port, new.ingress_rule) == (A, B, 1, PA, PB, rid)
    assert new.generation == 1 and new.reason == "new" and new.tcp_flags == 0x02
    assert (denied.reason, denied.in_port, denied.ingress_rule) == ("denied_ingress", PC, None)
    assert dropped.reason == "spoofed_source"

    # RST closes; the reply's flags come along
    dp.run_batch([bytes(ether() / IP(src=B, dst=A) / TCP(sport=80, dport=1, flags="R"))], [PB], SEC)
    (closed,) = dp.events()
    assert (closed.type, closed.src, closed.ingress_rule, closed.tcp_flags) == ("closed", A, rid, 0x04)
    # a UDP connection expires and is reported when reclaimed
    dp.run_batch([bytes(ether() / IP(src=A, dst=C) / UDP(sport=9, dport=80))], [PA], 2 * SEC)
    assert [e.type for e in dp.events()] == ["new"]
    dp.run_batch([], [], 100 * SEC)
    assert sorted(e.type for e in dp.events()) == ["expired", "expired"]   # the RST'd TCP and the UDP
    # a recheck revokes what the new tables deny, reporting the generation that allowed it
    dp.run_batch([tcp(A, B, 4, "S")], [PA], 100 * SEC)
    dp.events()
    assert dp.install(compile_cluster(cluster_from(PODS + DENY_ALL)), recheck=True) == 1
    (revoked,) = dp.events()
    assert (revoked.type, revoked.sport, revoked.generation, revoked.ingress_rule) == ("revoked", 4, 1, rid)
    assert dp.compiled_at(1) is compiled and dp.generation == 2


def test_a_full_ring_loses_events_and_counts_them():
    dp = Datapath(events=4)
    dp.install(compile_cluster(cluster_from(PODS)))
    dp.run_batch([tcp(A, B, i, "S") for i in range(10)], [PA] * 10, SEC)
    assert len(dp.events()) == 4 and dp.events_lost == 6


def test_rule_hits_survive_table_swaps():
    c = cluster_from(PODS + POLICY)
    dp = Datapath()
    dp.install(compile_cluster(c))
    dp.run_batch([tcp(A, B, i, "S") for i in range(3)], [PA] * 3, SEC)
    dp.install(compile_cluster(c))
    dp.run_batch([tcp(A, B, 10, "S")], [PA], SEC)
    assert dp.rule_hits() == {("t/b-from-a", "Ingress", 0): 4}


def test_flow_records_name_the_deciding_rule_or_the_isolating_policies():
    c = cluster_from(PODS + POLICY)
    compiled = compile_cluster(c)
    dp = Datapath(events=16)
    dp.install(compiled)
    dp.run_batch([tcp(A, B, 1, "S"), tcp(C, B, 2, "S")], [PA, PC], SEC)
    b = FlowBuilder(compiled)
    new, denied = (b.from_event(e) for e in dp.events())
    assert new["verdict"] == "FORWARDED" and new["netsem"]["event"] == "new"
    assert new["time"] == "1970-01-01T00:00:01.000000000Z"
    assert new["ingress_allowed_by"] == [{"kind": "NetworkPolicy", "namespace": "t", "name": "b-from-a",
                                          "rule": "ingress[0]"}]
    assert new["source"]["pod_name"] == "a" and new["destination"]["pod_name"] == "b"
    assert new["l4"]["TCP"]["flags"] == {"SYN": True}
    assert (new["netsem"]["in_port"], new["netsem"]["out_port"]) == ("t/a", "t/b")
    assert denied["verdict"] == "DROPPED" and denied["drop_reason_desc"] == "POLICY_DENIED"
    assert denied["traffic_direction"] == "INGRESS"
    assert denied["ingress_denied_by"] == [{"kind": "NetworkPolicy", "namespace": "t", "name": "b-from-a"}]


def test_a_cluster_wide_deny_is_a_denied_event():
    anp = """
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-c}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress: [{name: deny-c, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}]}]
"""
    dp = Datapath(events=64)
    dp.install(compile_cluster(cluster_from(PODS + anp)))
    res = dp.run_batch([tcp(C, B, 2, "S")], [PC], SEC)
    assert res[0].reason == "denied_admin_ingress"
    assert [e.type for e in dp.events()] == ["denied"]
