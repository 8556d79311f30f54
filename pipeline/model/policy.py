"""The network policy filter system of 004: allowNewConnection{To,From}{Pod,IpAddress},
written plainly (linear scans), with an explanation of every answer.

The semantics are those of networking.k8s.io/v1 NetworkPolicy; the choices Kubernetes
leaves to implementations are in docs/semantics.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .addresses import DEFAULT_NETWORK
from .cluster import Cluster
from .admin import ADMIN, ALLOW, BASELINE, PASS, TIERS, AdminRuleRef, tier_policies
from .admin import decide as admin_decide
from .objects import IPAddress, MultiNetworkPolicy, NetworkPolicy, Peer, Pod, Rule

MULTI = "MultiNetworkPolicy:"   # rule_ids keys of MultiNetworkPolicies' rules

INGRESS, EGRESS = "Ingress", "Egress"


@dataclass(frozen=True)
class RuleRef:
    """A rule of a policy, with its global id (docs/pipeline.md: policies sorted by
    namespace/name, then ingress rules, then egress rules)."""

    policy: str          # "ns/name"
    direction: str       # Ingress | Egress
    index: int           # position in spec.ingress / spec.egress
    rule_id: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction.lower()}[{self.index}]"


@dataclass
class DirectionVerdict:
    """One direction of one connection: who is isolated, by which policies, and which
    rule (the lowest-numbered) allowed it."""

    direction: str
    local: str                           # the pod the policies select
    isolated: bool = False
    policies: list[str] = field(default_factory=list)
    allowed: bool = True
    rule: Optional[RuleRef] = None
    # Which tier decided: "admin" or "baseline" (admin_rule says which rule),
    # "networkpolicy", or "" (nothing did: the default, allow).
    tier: str = ""
    admin_rule: Optional[AdminRuleRef] = None

    @property
    def rule_id(self) -> Optional[int]:
        """The id of the rule that allowed it (None when denied or by default)."""
        if not self.allowed:
            return None
        return self.admin_rule.rule_id if self.admin_rule is not None else (self.rule.rule_id if self.rule else None)

    def explain(self) -> str:
        side = "egress from" if self.direction == EGRESS else "ingress to"
        if self.admin_rule is not None:
            verb = "allowed" if self.allowed else "denied"
            return f"{side} {self.local}: {verb} by {self.admin_rule} ({self.tier} tier)"
        if self.tier == "networkpolicy":
            pols = ", ".join(self.policies)
            if self.allowed:
                return f"{side} {self.local}: isolated by {pols}; allowed by {self.rule}"
            return f"{side} {self.local}: isolated by {pols}; no rule allows it, denied"
        return f"{side} {self.local}: not isolated (no policy selects it for {self.direction}), allowed"

    def to_dict(self) -> dict:
        a = self.admin_rule
        return {"direction": self.direction, "pod": self.local, "isolated": self.isolated,
                "policies": self.policies, "allowed": self.allowed, "tier": self.tier or "default",
                "rule": None if self.rule is None else {
                    "policy": self.rule.policy, "direction": self.rule.direction,
                    "index": self.rule.index, "id": self.rule.rule_id},
                "adminRule": None if a is None else {
                    "policy": a.policy, "tier": a.tier, "priority": a.priority, "direction": a.direction,
                    "index": a.index, "name": a.name, "action": a.action, "id": a.rule_id}}


def rule_ids(cluster: Cluster) -> dict[tuple[str, str, int], int]:
    """The global rule numbering shared with the C tables (cached per generation)."""
    cached = getattr(cluster, "_rule_ids", None)
    if cached is not None and cached[0] == cluster.generation:
        return cached[1]
    ids: dict[tuple[str, str, int], int] = {}
    for pol in cluster.policy_list():
        for i in range(len(pol.ingress)):
            ids[(pol.key, INGRESS, i)] = len(ids)
        for i in range(len(pol.egress)):
            ids[(pol.key, EGRESS, i)] = len(ids)
    # MultiNetworkPolicies' rules after every NetworkPolicy's, so the C tables' numbering
    # (NetworkPolicies only) is untouched; keyed apart, as the two kinds may share a name.
    for pol in sorted(cluster.multi_policies.values(), key=lambda p: (p.namespace, p.name)):
        for d, rules in ((INGRESS, pol.ingress), (EGRESS, pol.egress)):
            for i in range(len(rules)):
                ids[(MULTI + pol.key, d, i)] = len(ids)
    # Cluster-wide policies' rules last, tier by tier in evaluation order: within a
    # tier and direction the smallest id that matches is the rule that decides.
    for tier in TIERS:
        for pol in tier_policies(cluster, tier):
            for d, rules in ((INGRESS, pol.ingress), (EGRESS, pol.egress)):
                for i in range(len(rules)):
                    ids[(pol.key, d, i)] = len(ids)
    cluster._rule_ids = (cluster.generation, ids)
    return ids


def attached(cluster: Cluster, pod: Pod, network: str = DEFAULT_NETWORK) -> bool:
    """The pod has an interface of its own on `network` (the address plane gives
    hostNetwork and finished pods none)."""
    if network == DEFAULT_NETWORK:
        return cluster.attachment(pod.key) is not None
    return any(a.network == network for a in cluster.plane.attachments_of(pod.key))


def policy_selects(cluster: Cluster, pol: NetworkPolicy, pod: Pod, direction: str,
                   network: str = DEFAULT_NETWORK, interface: bool = False) -> bool:
    """Only pods with an interface of their own on the network are selected.
    interface: the caller knows it is one (the compiler's identities: a pod that
    stood for its labels may have gone since)."""
    return (direction in pol.policy_types and pol.namespace == pod.namespace
            and pol.pod_selector.matches(pod.labels) and (interface or attached(cluster, pod, network)))


def policies_for(cluster: Cluster, network: str) -> list[NetworkPolicy]:
    """NetworkPolicies on the cluster network; a network's own MultiNetworkPolicies on
    any other (001: each kind isolates only where it applies)."""
    return cluster.policy_list() if network == DEFAULT_NETWORK else cluster.multi_policy_list(network)


def policies_selecting(cluster: Cluster, pod: Pod, direction: str,
                       network: str = DEFAULT_NETWORK) -> list[NetworkPolicy]:
    return [p for p in policies_for(cluster, network) if policy_selects(cluster, p, pod, direction, network)]


def peer_matches(cluster: Cluster, pol: NetworkPolicy, peer: Peer,
                 peer_pod: Optional[Pod], peer_ip: Optional[IPAddress]) -> bool:
    """ipBlock matches any address it covers, pod addresses included; selectors match
    pods only (peer_pod is None for every address that is not a pod's interface)."""
    if peer.ip_block is not None:
        return peer_ip is not None and peer.ip_block.contains(peer_ip)
    if peer_pod is None:
        return False
    if peer.namespace_selector is None:
        if peer_pod.namespace != pol.namespace:
            return False
    else:
        ns = cluster.namespaces.get(peer_pod.namespace)
        if ns is None or not peer.namespace_selector.matches(ns.labels):
            return False
    return peer.pod_selector is None or peer.pod_selector.matches(peer_pod.labels)


def ports_match(rule: Rule, protocol: str, port: int, destination: Optional[Pod]) -> bool:
    """No ports: every port of every protocol (ICMP included). Otherwise TCP/UDP/SCTP
    only; a named port is resolved against the destination pod, per protocol."""
    if rule.ports is None:
        return True
    for p in rule.ports:
        if p.protocol != protocol:
            continue
        if p.port is None:
            return True
        if isinstance(p.port, str):
            if destination is not None and destination.named_port(p.port, protocol) == port:
                return True
        elif p.end_port is not None:
            if p.port <= port <= p.end_port:
                return True
        elif p.port == port:
            return True
    return False


def rule_matches(cluster: Cluster, pol: NetworkPolicy, rule: Rule, peer_pod, peer_ip,
                 protocol: str, port: int, destination: Optional[Pod]) -> bool:
    if rule.peers is not None and not any(
            peer_matches(cluster, pol, peer, peer_pod, peer_ip) for peer in rule.peers):
        return False
    return ports_match(rule, protocol, port, destination)


def check_direction(cluster: Cluster, direction: str, local: Pod,
                    peer_pod: Optional[Pod], peer_ip: Optional[IPAddress],
                    protocol: str, port: int, network: str = DEFAULT_NETWORK) -> DirectionVerdict:
    """local: the pod policies are applied to (source for Egress, destination for
    Ingress); an end that is not a pod's interface has no direction to check (the
    address plane decides, in connections._decide).
    The destination of the connection is `peer_pod` for Egress and `local` for Ingress
    (named ports resolve against it). `network`: the one both ends are on; a peer
    pod is matched by selectors only when it is attached to it (it is, as its end)."""
    selecting = policies_selecting(cluster, local, direction, network)
    verdict = DirectionVerdict(direction, local.key, isolated=bool(selecting),
                               policies=[p.key for p in selecting])
    ids = rule_ids(cluster)
    # Cluster-wide policy is for the cluster network (model/admin.py): the Admin
    # tier first, NetworkPolicy for the pods it selects, then the Baseline tier.
    admin = network == DEFAULT_NETWORK and cluster.admin_policies
    if admin:
        hit = admin_decide(cluster, ADMIN, direction, local, peer_pod, peer_ip, protocol, port, ids)
        if hit is not None and hit.action != PASS:
            verdict.tier, verdict.admin_rule, verdict.allowed = "admin", hit, hit.action == ALLOW
            return verdict
    if not selecting:
        hit = admin_decide(cluster, BASELINE, direction, local, peer_pod, peer_ip, protocol, port, ids) \
            if admin else None
        if hit is not None and hit.action != PASS:
            verdict.tier, verdict.admin_rule, verdict.allowed = "baseline", hit, hit.action == ALLOW
        return verdict
    verdict.tier = "networkpolicy"
    destination = peer_pod if direction == EGRESS else local
    verdict.allowed = False
    for pol in selecting:            # sorted, so the first match has the lowest id
        rules = pol.ingress if direction == INGRESS else pol.egress
        for i, rule in enumerate(rules):
            if rule_matches(cluster, pol, rule, peer_pod, peer_ip, protocol, port, destination):
                verdict.allowed = True
                kind = MULTI if isinstance(pol, MultiNetworkPolicy) else ""
                verdict.rule = RuleRef(pol.key, direction, i, ids[(kind + pol.key, direction, i)])
                return verdict
    return verdict


# -- the seed's four primitives ------------------------------------------------------

def allow_new_connection_to_pod(cluster: Cluster, source_pod: Pod, destination_pod: Pod,
                                protocol: str, destination_port: int,
                                destination_ip: Optional[IPAddress] = None,
                                network: str = DEFAULT_NETWORK) -> DirectionVerdict:
    """Egress of source_pod towards destination_pod (on `network`)."""
    ip = destination_ip or cluster.pod_address(destination_pod.key)
    return check_direction(cluster, EGRESS, source_pod, destination_pod, ip, protocol, destination_port, network)


def allow_new_connection_from_pod(cluster: Cluster, destination_pod: Pod, source_pod: Pod,
                                  protocol: str, destination_port: int,
                                  source_ip: Optional[IPAddress] = None,
                                  network: str = DEFAULT_NETWORK) -> DirectionVerdict:
    """Ingress of destination_pod from source_pod (on `network`)."""
    ip = source_ip or cluster.pod_address(source_pod.key)
    return check_direction(cluster, INGRESS, destination_pod, source_pod, ip, protocol, destination_port, network)


def allow_new_connection_to_ip_address(cluster: Cluster, source_pod: Pod, destination_ip: IPAddress,
                                       protocol: str, destination_port: int,
                                       network: str = DEFAULT_NETWORK) -> DirectionVerdict:
    return check_direction(cluster, EGRESS, source_pod, None, destination_ip, protocol, destination_port, network)


def allow_new_connection_from_ip_address(cluster: Cluster, source_ip: IPAddress, destination_pod: Pod,
                                         protocol: str, destination_port: int,
                                         network: str = DEFAULT_NETWORK) -> DirectionVerdict:
    return check_direction(cluster, INGRESS, destination_pod, None, source_ip, protocol, destination_port, network)
