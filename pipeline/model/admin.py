"""Cluster-wide policy (003's isolation modes; kubernetes-sigs/network-policy-api):
ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) and AdminNetworkPolicy /
BaselineAdminNetworkPolicy (v1alpha1), read into one form: tiered policies.

Evaluation of one direction of a new connection (docs/semantics.md, "Cluster-wide
policy"), on the cluster network:
  1. the Admin tier, by ascending priority (ties: by kind, then name; upstream leaves
     their order undefined, and the loader warns when tied policies select one pod),
     rules in written order: the first rule that matches decides. Allow (CNP's Accept)
     and Deny are final; Pass hands the connection to
  2. NetworkPolicy, which decides for every pod it selects; for the others,
  3. the Baseline tier, in the same way (Pass there: no decision);
  4. default allow.
hostNetwork pods are neither subjects nor pod peers (upstream: "host-networked pods
are not included"); nodes are reached through `nodes` peers (their addresses) and
`networks` (CIDRs, which match any address, pods' included)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from .objects import IPAddress, Pod
from .selectors import LabelSelector as Selector

ADMIN, BASELINE = "Admin", "Baseline"
ALLOW, DENY, PASS = "Allow", "Deny", "Pass"
CNP, ANP, BANP = "ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"
TIERS = (ADMIN, BASELINE)


@dataclass(frozen=True)
class PodSet:
    """Pods by namespace labels and (optionally) pod labels: a subject, or a
    `namespaces` / `pods` peer."""

    namespace_selector: Selector
    pod_selector: Optional[Selector] = None

    def matches(self, namespace_labels: dict, pod: Pod) -> bool:
        return self.namespace_selector.matches(namespace_labels) and (
            self.pod_selector is None or self.pod_selector.matches(pod.labels))


@dataclass(frozen=True)
class AdminPeer:
    """Exactly one of: pods (a `namespaces` or `pods` peer), nodes (a Node label
    selector), networks (CIDRs)."""

    pods: Optional[PodSet] = None
    nodes: Optional[Selector] = None
    networks: tuple = ()             # ipaddress networks


@dataclass(frozen=True)
class AdminPort:
    """A destination port: a number or an inclusive range of a protocol, or a named
    container port (of whatever protocol it declares)."""

    protocol: Optional[str]          # None for a named port
    port: Optional[int] = None
    end_port: Optional[int] = None
    name: Optional[str] = None

    def matches(self, protocol: str, port: int, destination: Optional[Pod]) -> bool:
        if self.name is not None:
            return destination is not None and destination.named_port(self.name, protocol) == port
        if self.protocol != protocol:
            return False
        return self.port <= port <= (self.end_port if self.end_port is not None else self.port)


@dataclass(frozen=True)
class AdminRule:
    name: str
    action: str                      # Allow | Deny | Pass
    peers: tuple                     # AdminPeer, at least one
    ports: Optional[tuple] = None    # AdminPort; None: every port and protocol (ICMP too)


@dataclass(frozen=True)
class AdminPolicy:
    kind: str                        # CNP | ANP | BANP: the API object it was read from
    name: str
    tier: str                        # Admin | Baseline
    priority: int
    subject: PodSet
    ingress: tuple = ()
    egress: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def order(self) -> tuple:
        """Evaluation order within the tier."""
        return (self.priority, self.kind, self.name)


@dataclass(frozen=True)
class AdminRuleRef:
    """The rule that decided, with its global id (policy.rule_ids)."""

    policy: str                      # kind/name
    tier: str
    priority: int
    direction: str
    index: int
    name: str
    action: str
    rule_id: int

    def __str__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"{self.policy} {self.direction.lower()}[{self.index}]{label} ({self.action}, priority {self.priority})"


def selects(cluster, pol: AdminPolicy, pod: Pod, interface: bool = False) -> bool:
    """The pod is a subject of the policy: it has an interface of its own on the
    cluster network (not hostNetwork, not finished) and matches the subject.
    interface: the caller knows it has one (policy.policy_selects)."""
    ns = cluster.namespaces.get(pod.namespace)
    return ns is not None and (interface or cluster.attachment(pod.key) is not None) and \
        pol.subject.matches(ns.labels, pod)


def peer_matches(cluster, peer: AdminPeer, peer_pod: Optional[Pod], peer_ip: Optional[IPAddress]) -> bool:
    """peer_pod: the other end when it is a pod's interface; peer_ip: its address."""
    if peer.pods is not None:
        if peer_pod is None:
            return False
        ns = cluster.namespaces.get(peer_pod.namespace)
        return ns is not None and peer.pods.matches(ns.labels, peer_pod)
    if peer_ip is None:
        return False
    if peer.networks:
        return any(peer_ip.version == n.version and peer_ip in n for n in peer.networks)
    node = cluster.node_at(peer_ip)
    return node is not None and peer.nodes.matches(node.labels)


def rule_matches(cluster, rule: AdminRule, peer_pod, peer_ip, protocol: str, port: int,
                 destination: Optional[Pod]) -> bool:
    if not any(peer_matches(cluster, p, peer_pod, peer_ip) for p in rule.peers):
        return False
    return rule.ports is None or any(p.matches(protocol, port, destination) for p in rule.ports)


def tier_policies(cluster, tier: str) -> list[AdminPolicy]:
    return sorted((p for p in cluster.admin_policies.values() if p.tier == tier), key=lambda p: p.order)


def decide(cluster, tier: str, direction: str, local: Pod, peer_pod: Optional[Pod],
           peer_ip: Optional[IPAddress], protocol: str, port: int, ids: dict) -> Optional[AdminRuleRef]:
    """The first rule of the tier that matches this direction of the connection, or
    None. `local` is the subject side (source for Egress, destination for Ingress)."""
    destination = peer_pod if direction == "Egress" else local
    for pol in tier_policies(cluster, tier):
        if not selects(cluster, pol, local):
            continue
        rules = pol.ingress if direction == "Ingress" else pol.egress
        for i, rule in enumerate(rules):
            if rule_matches(cluster, rule, peer_pod, peer_ip, protocol, port, destination):
                return AdminRuleRef(pol.key, pol.tier, pol.priority, direction, i, rule.name, rule.action,
                                    ids[(pol.key, direction, i)])
    return None


def network(cidr: str):
    return ipaddress.ip_network(cidr, strict=False)
