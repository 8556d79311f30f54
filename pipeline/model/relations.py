"""How policies relate to a pod or a namespace (004: "show how policies are related",
"which policies apply towards a namespace ... individual pods")."""

from __future__ import annotations

from dataclasses import dataclass, field

from .admin import TIERS, selects, tier_policies
from .admin import peer_matches as admin_peer_matches
from .cluster import Cluster
from .objects import Pod
from .addresses import DEFAULT_NETWORK
from .policy import EGRESS, INGRESS, peer_matches, policies_for, policy_selects


@dataclass
class PodRelations:
    pod: str
    host_network: bool                                # spec.hostNetwork (shown, not decided on)
    finished: bool = False                            # Succeeded/Failed: no address at all
    selected: dict = field(default_factory=dict)      # direction -> [policy]
    as_peer: list = field(default_factory=list)       # (policy, direction, rule index)
    networks: dict = field(default_factory=dict)      # secondary network -> (selected, as_peer)
    subject_of: list = field(default_factory=list)    # cluster-wide policies that apply to it, in order
    admin_peer: list = field(default_factory=list)    # (cluster-wide policy, direction, rule index, action)

    def to_dict(self) -> dict:
        def part(selected, as_peer):
            return {"isolated": {d: bool(selected[d]) for d in (INGRESS, EGRESS)}, "selectedBy": selected,
                    "peerIn": [{"policy": p, "direction": d, "rule": i} for p, d, i in as_peer]}
        return {"pod": self.pod, "hostNetwork": self.host_network, "finished": self.finished,
                **part(self.selected, self.as_peer),
                "clusterWide": [{"policy": p.key, "tier": p.tier, "priority": p.priority,
                                 "ingressRules": len(p.ingress), "egressRules": len(p.egress)}
                                for p in self.subject_of],
                "clusterWidePeerIn": [{"policy": p, "direction": d, "rule": i, "action": a}
                                      for p, d, i, a in self.admin_peer],
                "networks": {n: part(*v) for n, v in sorted(self.networks.items())}}

    def render(self) -> str:
        note = (" (finished: holds no address, selected by nothing, reached by nothing)" if self.finished
                else " (hostNetwork: node address, never selected)" if self.host_network else "")
        lines = [f"pod {self.pod}{note}"]
        for d in (INGRESS, EGRESS):
            pols = self.selected[d]
            if pols:
                lines.append(f"  {d}: isolated by {', '.join(pols)}")
            else:
                lines.append(f"  {d}: not isolated (all {'sources' if d == INGRESS else 'destinations'} allowed)")
        if self.as_peer:
            lines.append("  admitted as a peer by:")
            for p, d, i in self.as_peer:
                lines.append(f"    {p} {d.lower()}[{i}]")
        else:
            lines.append("  admitted as a peer by no rule that names peers (rules without from/to admit everyone)")
        if self.subject_of:
            lines.append("  cluster-wide policies that apply to it, in evaluation order (Admin tier before "
                         "NetworkPolicy, Baseline tier after):")
            lines += [f"    {p.tier} tier, priority {p.priority}: {p.key} ({len(p.ingress)} ingress, "
                      f"{len(p.egress)} egress rules)" for p in self.subject_of]
        for p, d, i, a in self.admin_peer:
            lines.append(f"  named as a peer by {p} {d.lower()}[{i}] ({a})")
        for net, (selected, as_peer) in sorted(self.networks.items()):
            lines.append(f"  on network {net} (MultiNetworkPolicies):")
            for d in (INGRESS, EGRESS):
                lines.append(f"    {d}: " + (f"isolated by {', '.join(selected[d])}" if selected[d]
                                             else "not isolated"))
            lines.extend(f"    admitted as a peer by {p} {d.lower()}[{i}]" for p, d, i in as_peer)
        return "\n".join(lines)


def pod_relations(cluster: Cluster, pod: Pod) -> PodRelations:
    """The cluster network's NetworkPolicies, then each secondary network's
    MultiNetworkPolicies, for the pod's addresses on each."""
    rel = PodRelations(pod.key, pod.host_network, pod.finished)
    addresses = [ip for _, ip in cluster.plane.lookup_pod_to_address_mappings(pod.key)]
    primary = cluster.attachment(pod.key)
    rel.selected, rel.as_peer = _relations_on(cluster, pod, DEFAULT_NETWORK, primary is not None,
                                              cluster.plane.addresses(primary) if primary else addresses)
    for a in cluster.plane.attachments_of(pod.key):
        if a.network != DEFAULT_NETWORK:
            rel.networks[a.network] = _relations_on(cluster, pod, a.network, True, cluster.plane.addresses(a))
    for tier in TIERS:
        for pol in tier_policies(cluster, tier):
            if selects(cluster, pol, pod):
                rel.subject_of.append(pol)
            for d, rules in ((INGRESS, pol.ingress), (EGRESS, pol.egress)):
                for i, rule in enumerate(rules):
                    if any(admin_peer_matches(cluster, peer, pod if primary is not None else None, ip)
                           for peer in rule.peers for ip in (addresses or (None,))):
                        rel.admin_peer.append((pol.key, d, i, rule.action))
    return rel


def _relations_on(cluster: Cluster, pod: Pod, network: str, endpoint: bool, addresses: list):
    selected = {d: [p.key for p in policies_for(cluster, network) if policy_selects(cluster, p, pod, d, network)]
                for d in (INGRESS, EGRESS)}
    as_peer = []
    for pol in policies_for(cluster, network):
        for d, rules in ((INGRESS, pol.ingress), (EGRESS, pol.egress)):
            if d not in pol.policy_types:
                continue
            for i, rule in enumerate(rules):
                if rule.peers is not None and any(
                        peer_matches(cluster, pol, peer, pod if endpoint else None, ip)
                        for peer in rule.peers for ip in (addresses or (None,))):
                    as_peer.append((pol.key, d, i))
    return selected, as_peer


@dataclass
class NamespaceRelations:
    namespace: str
    policies: list = field(default_factory=list)      # policies in the namespace
    pods: list = field(default_factory=list)          # PodRelations of its pods

    def to_dict(self) -> dict:
        return {"namespace": self.namespace, "policies": self.policies,
                "pods": [p.to_dict() for p in self.pods]}

    def render(self) -> str:
        lines = [f"namespace {self.namespace}"]
        if not self.policies:
            lines.append("  no policies in this namespace")
        for p in self.policies:
            sel = ", ".join(p["selects"]) or "no pod"
            lines.append(f"  policy {p['name']} ({'+'.join(p['policyTypes'])}): selects {sel}")
        for pr in self.pods:
            lines.append("")
            lines.extend("  " + line for line in pr.render().splitlines())
        return "\n".join(lines)


def namespace_relations(cluster: Cluster, namespace: str) -> NamespaceRelations:
    rel = NamespaceRelations(namespace)
    pods = cluster.pod_list(namespace)
    for pol in cluster.policy_list():
        if pol.namespace != namespace:
            continue
        selects = [p.key for p in pods
                   if any(policy_selects(cluster, pol, p, d) for d in pol.policy_types)]
        rel.policies.append({"name": pol.key, "policyTypes": list(pol.policy_types), "selects": selects})
    rel.pods = [pod_relations(cluster, p) for p in pods]
    return rel
