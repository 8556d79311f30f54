"""Cluster-wide policies (model/admin.py) as the rule table's tiers: each rule becomes
a NetworkPolicy-shaped rule under its tier's directions (NS_DIR_ADMIN_*,
NS_DIR_BASELINE_*), numbered in evaluation order (policy.rule_ids), with its action
beside it (ns_tables_set_rule_action). The lookup then takes the smallest matching
rule id per direction, as for NetworkPolicy, so a tier costs a fixed number of
probes however many policies it has (docs/pipeline.md "Policy table").

The translation is the compiler's own, apart from the model's evaluation (the tests
hold the two together): `namespaces`/`pods` peers are selector peers, `networks` are
ipBlocks, and `nodes` are the addresses the address plane gives the Nodes their selector
matches, as /32 or /128 ipBlocks; a named port is the name under each protocol."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ...model.addresses import DEFAULT_DOMAIN, NodeAddress
from ...model.admin import ADMIN, ALLOW, DENY, PASS, AdminPolicy, selects, tier_policies
from ...model.cluster import Cluster
from ...model.objects import L4_PROTOCOLS, IPBlock, Peer, PolicyPort, Rule

DIR_BASE = {ADMIN: 2, "Baseline": 4}             # + 0 ingress, + 1 egress (NS_DIR_*)
ACTIONS = {ALLOW: 1, DENY: 2, PASS: 3}           # NS_ACTION_*


@dataclass(frozen=True)
class TierRules:
    """One cluster-wide policy in the shape build_policy compiles."""

    policy: AdminPolicy
    ingress: tuple
    egress: tuple
    actions: tuple                   # (direction, index, NS_ACTION_*)

    @property
    def key(self) -> str:
        return self.policy.key

    @property
    def dir_base(self) -> int:
        return DIR_BASE[self.policy.tier]

    def selects(self, cluster: Cluster, pod) -> bool:
        """pod: an identity's representative (an interface's pod, or one that was)."""
        return selects(cluster, self.policy, pod, interface=True)


def tier_rules(cluster: Cluster) -> list[TierRules]:
    out = []
    for tier in DIR_BASE:
        for pol in tier_policies(cluster, tier):
            rules = {d: tuple(Rule(_peers(cluster, r.peers), _ports(r.ports)) for r in getattr(pol, d.lower()))
                     for d in ("Ingress", "Egress")}
            actions = tuple((d, i, ACTIONS[r.action]) for d in ("Ingress", "Egress")
                            for i, r in enumerate(getattr(pol, d.lower())))
            out.append(TierRules(pol, rules["Ingress"], rules["Egress"], actions))
    return out


def _peers(cluster: Cluster, peers) -> tuple:
    out = []
    for p in peers:
        if p.pods is not None:
            out.append(Peer(pod_selector=p.pods.pod_selector, namespace_selector=p.pods.namespace_selector))
        elif p.networks:
            out += [Peer(ip_block=IPBlock(n)) for n in p.networks]
        else:
            for node in sorted(cluster.nodes.values(), key=lambda n: n.name):
                if p.nodes.matches(node.labels):
                    # The node's addresses as the address plane has them (its
                    # InternalIPs, and hostNetwork pods' addresses, which are its).
                    out += [Peer(ip_block=IPBlock(ipaddress.ip_network(ip)))
                            for ip in cluster.plane.addresses(NodeAddress(node.name, DEFAULT_DOMAIN))]
    return tuple(out)


def _ports(ports):
    if ports is None:
        return None
    out = []
    for p in ports:
        if p.name is not None:
            out += [PolicyPort(proto, p.name) for proto in L4_PROTOCOLS]
        else:
            out.append(PolicyPort(p.protocol, p.port, p.end_port))
    return tuple(out)


def install_actions(lib, t, check, ids: dict, tiers: list) -> None:
    for tr in tiers:
        for d, i, action in tr.actions:
            rid = ids[(tr.key, d, i)]
            check(lib.ns_tables_set_rule_action(t, rid, action), f"rule {rid} action")

