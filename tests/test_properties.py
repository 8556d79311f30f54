"""Properties of the model on random clusters (hypothesis)."""

import dataclasses

from hypothesis import given, settings, strategies as st

from pipeline.model.connections import Connections, open_pod_connection
from pipeline.model.objects import NetworkPolicy
from pipeline.model.policy import EGRESS, INGRESS, policies_selecting
from pipeline.model.reach import ReachComputer

from .strategies import NAMESPACES, clusters, rules, selectors

PROBES = [("TCP", 80), ("TCP", 81), ("UDP", 53), ("SCTP", 90), ("TCP", 8080), ("TCP", 100)]


def matrix(c, proto, port):
    return ReachComputer(c).matrix(proto, port).allowed


@settings(max_examples=150, deadline=None)
@given(clusters(), st.sampled_from(PROBES))
def test_matrix_equals_the_primitive_pair_by_pair(c, probe):
    proto, port = probe
    m = ReachComputer(c).matrix(proto, port)
    for i, a in enumerate(m.pods):
        for j, b in enumerate(m.pods):
            v = open_pod_connection(c, Connections(), a, b, proto, port)
            assert m.allowed[i, j] == v.allowed, (a.key, b.key, v.explain())


@settings(max_examples=100, deadline=None)
@given(clusters(), st.data())
def test_adding_an_allow_rule_never_removes_reachability(c, data):
    if not c.policies:
        return
    key = data.draw(st.sampled_from(sorted(c.policies)))
    pol = c.policies[key]
    rule = data.draw(rules())
    direction = data.draw(st.sampled_from(["ingress", "egress"]))
    proto, port = data.draw(st.sampled_from(PROBES))
    before = matrix(c, proto, port)
    c.update_network_policy(dataclasses.replace(pol, **{direction: getattr(pol, direction) + (rule,)}))
    after = matrix(c, proto, port)
    assert (after | ~before).all()      # before implies after


@settings(max_examples=100, deadline=None)
@given(clusters(cluster_wide_policies=False), st.sampled_from(PROBES))
def test_pods_selected_by_no_policy_are_reachable(c, probe):
    m = ReachComputer(c).matrix(*probe)
    for i, a in enumerate(m.pods):
        for j, b in enumerate(m.pods):
            if not policies_selecting(c, a, EGRESS) and not policies_selecting(c, b, INGRESS):
                assert m.allowed[i, j]


@settings(max_examples=100, deadline=None)
@given(clusters(max_policies=0, cluster_wide_policies=False), st.sampled_from(NAMESPACES), selectors(),
       st.sampled_from(PROBES))
def test_deny_all_isolates_exactly_the_selected_pods(c, ns, sel, probe):
    c.add_network_policy(NetworkPolicy(ns, "deny-all", sel, ("Ingress", "Egress")))
    m = ReachComputer(c).matrix(*probe)

    def selected(p):
        return p.namespace == ns and not p.host_network and sel.matches(p.labels)
    for i, a in enumerate(m.pods):
        for j, b in enumerate(m.pods):
            # hostNetwork pods are their node: it always reaches the pods on it, and
            # itself (every generated pod runs on the one node).
            expected = i == j or (not selected(a) and not selected(b)) or a.host_network
            assert m.allowed[i, j] == expected, (a.key, b.key)
