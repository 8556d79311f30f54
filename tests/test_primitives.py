"""The seed's primitives called the way 004 writes them: allowNewConnectionToPod and
allowNewConnectionFromPod without an address (the pod's primary one is meant), a
verdict whose one end is outside the cluster, and the rule numbering after a policy
changes. The packet oracle always passes addresses, so only these calls reach the
defaults."""

import ipaddress

from pipeline.model.connections import Connections, open_connection_with_ip_addresses
from pipeline.model.policy import (EGRESS, INGRESS, allow_new_connection_from_pod, allow_new_connection_to_pod,
                                   rule_ids)

from .conftest import cluster_from
from .test_semantics import policy, world

# Egress of a to 198.18.0.11/32 only (b's IPv4 address; b also has 2001:db8::11);
# ingress of b from 198.18.0.10/32 only (a's).
BLOCKS = (policy("out", spec="  podSelector: {matchLabels: {role: db}}\n  policyTypes: [Egress]\n"
                 "  egress: [{to: [{ipBlock: {cidr: 198.18.0.11/32}}]}]")
          + policy("in", spec="  podSelector: {matchLabels: {role: frontend}}\n  policyTypes: [Ingress]\n"
                   "  ingress: [{from: [{ipBlock: {cidr: 198.18.0.10/32}}]}]"))


def dual_stack(text: str) -> str:
    return (text.replace("status: {podIP: 198.18.0.10}", "status: {podIPs: [{ip: 198.18.0.10}, {ip: '2001:db8::10'}]}")
                .replace("status: {podIP: 198.18.0.11}", "status: {podIPs: [{ip: 198.18.0.11}, {ip: '2001:db8::11'}]}"))


def test_pod_primitives_without_an_address_use_the_primary_one():
    c = cluster_from(dual_stack(world(BLOCKS)))
    a, b = c.pods["default/a"], c.pods["default/b"]
    assert allow_new_connection_to_pod(c, a, b, "TCP", 80).allowed
    assert allow_new_connection_from_pod(c, b, a, "TCP", 80).allowed
    v6a, v6b = ipaddress.ip_address("2001:db8::10"), ipaddress.ip_address("2001:db8::11")
    assert not allow_new_connection_to_pod(c, a, b, "TCP", 80, v6b).allowed
    assert not allow_new_connection_from_pod(c, b, a, "TCP", 80, v6a).allowed


def test_an_end_outside_the_cluster_has_no_direction_to_check():
    c = cluster_from(world(BLOCKS))
    out = open_connection_with_ip_addresses(c, Connections(), "198.19.200.1", "198.18.0.12", "TCP", 80)
    assert out.egress is None and out.ingress.direction == INGRESS and out.ingress.local == "default/c"
    back = open_connection_with_ip_addresses(c, Connections(), "198.18.0.12", "198.19.200.1", "TCP", 80)
    assert back.ingress is None and back.egress.direction == EGRESS and back.egress.local == "default/c"
    assert back.egress.to_dict()["direction"] == "Egress" and back.allowed


def test_rule_numbers_follow_a_policy_change():
    c = cluster_from(world(BLOCKS))
    assert rule_ids(c) == {("default/in", INGRESS, 0): 0, ("default/out", EGRESS, 0): 1}
    first = c.policies["default/in"]
    c.add_network_policy(type(first)("default", "a-first", first.pod_selector, (INGRESS,), first.ingress))
    assert rule_ids(c) == {("default/a-first", INGRESS, 0): 0, ("default/in", INGRESS, 0): 1,
                           ("default/out", EGRESS, 0): 2}
