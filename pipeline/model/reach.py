"""Reachability matrices: every pod to every pod, for one protocol and port, computed
with numpy instead of pair by pair.

Each selector is matched once per (selector, namespace) and cached; a policy's effect
is then "rows it selects x columns its rules allow" (egress) or "rows its peers match x
columns it selects" (ingress), and the OR over all policies is one boolean matrix
product. policy.check_direction is the readable definition this must equal (tests
compare them on random clusters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .addresses import Attachment
from .admin import ADMIN, ALLOW, BASELINE, PASS, tier_policies
from .cluster import Cluster
from .objects import Peer, Pod, Rule
from .policy import EGRESS, INGRESS
from .selectors import LabelSelector


@dataclass
class Matrix:
    protocol: str
    port: int
    pods: list[Pod]
    allowed: np.ndarray          # [from, to] bool


class ReachComputer:
    def __init__(self, cluster: Cluster, pods: Optional[list[Pod]] = None):
        self.cluster = cluster
        self.pods = pods if pods is not None else cluster.pod_list()
        self.n = len(self.pods)
        plane = cluster.plane
        # What the address plane puts at each pod's address: its own interface (an
        # endpoint that policies select and selectors match), or its node's address
        # (hostNetwork). `entry` identifies the end, so two ends with the same entry
        # are one's own address.
        ends = [plane.lookup(*cluster.plane.lookup_pod_to_address_mappings(p.key)[0]) for p in self.pods]
        self.endpoint = np.array([isinstance(e, Attachment) for e in ends], dtype=bool)
        entry_ids: dict = {}
        self.entry = np.array([entry_ids.setdefault(e, len(entry_ids)) for e in ends], dtype=np.int64)
        self.ends = ends
        self.ns_names = sorted(cluster.namespaces)
        ns_index = {n: i for i, n in enumerate(self.ns_names)}
        self.pod_ns = np.array([ns_index[p.namespace] for p in self.pods], dtype=np.int64)
        # The address each pod is reached at (its primary), and the address of each
        # family it connects from.
        self.dst_family = np.array([cluster.pod_address(p.key).version for p in self.pods])
        self.address = {f: [cluster.pod_address(p.key, f) for p in self.pods] for f in (4, 6)}
        self._pod_sel: dict[LabelSelector, np.ndarray] = {}
        self._ns_sel: dict[LabelSelector, np.ndarray] = {}
        self._named: dict[tuple[str, str], np.ndarray] = {}
        self._blocks: dict[tuple, np.ndarray] = {}

    # -- cached matches ----------------------------------------------------------
    def pod_selector(self, sel: LabelSelector) -> np.ndarray:
        v = self._pod_sel.get(sel)
        if v is None:
            v = np.array([sel.matches(p.labels) for p in self.pods], dtype=bool) & self.endpoint
            self._pod_sel[sel] = v
        return v

    def ns_selector(self, sel: LabelSelector) -> np.ndarray:
        """Pods whose namespace the selector matches."""
        v = self._ns_sel.get(sel)
        if v is None:
            ns_match = np.array([sel.matches(self.cluster.namespaces[n].labels) for n in self.ns_names],
                                dtype=bool)
            v = ns_match[self.pod_ns] if self.n else np.zeros(0, bool)
            self._ns_sel[sel] = v
        return v

    def in_namespace(self, ns: str) -> np.ndarray:
        return np.array([p.namespace == ns for p in self.pods], dtype=bool)

    def block(self, peer: Peer, family: int) -> np.ndarray:
        """Pods whose address of `family` the ipBlock covers."""
        key = (peer.ip_block, family)
        v = self._blocks.get(key)
        if v is None:
            v = np.array([ip is not None and peer.ip_block.contains(ip) for ip in self.address[family]],
                         dtype=bool)
            self._blocks[key] = v
        return v

    def named_port(self, name: str, protocol: str) -> np.ndarray:
        v = self._named.get((name, protocol))
        if v is None:
            v = np.array([p.named_port(name, protocol) or 0 for p in self.pods], dtype=np.int64)
            self._named[(name, protocol)] = v
        return v

    # -- rule pieces ---------------------------------------------------------------
    def peers(self, namespace: str, rule: Rule, family: int) -> np.ndarray:
        """Pods matched by the rule's from/to, their address of `family` used for ipBlock."""
        if rule.peers is None:
            return np.ones(self.n, dtype=bool)
        m = np.zeros(self.n, dtype=bool)
        for peer in rule.peers:
            if peer.ip_block is not None:
                m |= self.block(peer, family)
                continue
            ns = self.ns_selector(peer.namespace_selector) if peer.namespace_selector is not None \
                else self.in_namespace(namespace)
            pods = self.pod_selector(peer.pod_selector) if peer.pod_selector is not None else self.endpoint
            m |= ns & pods
        return m

    def ports(self, rule: Rule, protocol: str, port: int) -> np.ndarray:
        """Destination pods for which the rule's ports admit protocol/port."""
        if rule.ports is None:
            return np.ones(self.n, dtype=bool)
        m = np.zeros(self.n, dtype=bool)
        for p in rule.ports:
            if p.protocol != protocol:
                continue
            if p.port is None or (isinstance(p.port, int) and (
                    p.port == port or (p.end_port is not None and p.port <= port <= p.end_port))):
                return np.ones(self.n, dtype=bool)
            if isinstance(p.port, str):
                m |= (self.named_port(p.port, protocol) == port) & self.endpoint
        return m

    # -- the matrix ------------------------------------------------------------------
    def matrix(self, protocol: str, port: int) -> Matrix:
        n = self.n
        families = [f for f in (4, 6) if (self.dst_family == f).any()]
        iso_e = np.zeros(n, bool)
        iso_i = np.zeros(n, bool)
        # Egress: rows selected by a policy x columns its rules allow.
        e_rows, e_cols = [], []
        # Ingress: rows its peers match x columns it selects (per destination family,
        # since an ipBlock sees the source address of the destination's family).
        i_rows, i_cols = [], []
        for pol in self.cluster.policy_list():
            sel = self.in_namespace(pol.namespace) & self.pod_selector(pol.pod_selector)
            if not sel.any():
                continue
            if EGRESS in pol.policy_types:
                iso_e |= sel
                cols = np.zeros(n, bool)
                for rule in pol.egress:
                    ports = self.ports(rule, protocol, port)
                    for f in families:
                        cols |= self.peers(pol.namespace, rule, f) & ports & (self.dst_family == f)
                e_rows.append(sel)
                e_cols.append(cols)
            if INGRESS in pol.policy_types:
                iso_i |= sel
                for rule in pol.ingress:
                    target = sel & self.ports(rule, protocol, port)
                    for f in families:
                        i_rows.append(self.peers(pol.namespace, rule, f))
                        i_cols.append(target & (self.dst_family == f))
        egress = _or_of_outer(e_rows, e_cols, n) | ~iso_e[:, None]
        ingress = _or_of_outer(i_rows, i_cols, n) | ~iso_i[None, :]
        if self.cluster.admin_policies:
            # The tiers (admin.py): the Admin tier's decisions first, NetworkPolicy
            # for the ends it isolates, the Baseline tier's for the others.
            for d, iso in ((EGRESS, iso_e[:, None]), (INGRESS, iso_i[None, :])):
                af, aa = self.tier(ADMIN, d, protocol, port, families)
                bf, ba = self.tier(BASELINE, d, protocol, port, families)
                np_part = egress if d == EGRESS else ingress
                out = np.where(af, aa, np.where(iso, np_part, np.where(bf, ba, True)))
                egress, ingress = (out, ingress) if d == EGRESS else (egress, out)
        # Neither end a pod's interface: not a connection of the cluster.
        allowed = egress & ingress & (self.endpoint[:, None] | self.endpoint[None, :])
        if not self.cluster.config.police_node_traffic:
            allowed |= self.resident_node()
        allowed |= self.entry[:, None] == self.entry[None, :]    # one's own address
        return Matrix(protocol, port, self.pods, allowed)

    # -- cluster-wide policy ---------------------------------------------------------
    def pod_set(self, ps) -> np.ndarray:
        """Pods (with an interface of their own) a subject or pods peer matches."""
        pods = self.pod_selector(ps.pod_selector) if ps.pod_selector is not None else self.endpoint
        return self.ns_selector(ps.namespace_selector) & pods & self.endpoint

    def admin_peers(self, rule, family: int) -> np.ndarray:
        m = np.zeros(self.n, dtype=bool)
        for p in rule.peers:
            if p.pods is not None:
                m |= self.pod_set(p.pods)
                continue
            for i, ip in enumerate(self.address[family]):
                if ip is None:
                    continue
                if p.networks:
                    m[i] |= any(ip.version == net.version and ip in net for net in p.networks)
                else:
                    node = self.cluster.node_at(ip)
                    m[i] |= node is not None and p.nodes.matches(node.labels)
        return m

    def admin_ports(self, rule, protocol: str, port: int) -> np.ndarray:
        if rule.ports is None:
            return np.ones(self.n, dtype=bool)
        m = np.zeros(self.n, dtype=bool)
        for p in rule.ports:
            if p.name is not None:
                m |= (self.named_port(p.name, protocol) == port) & self.endpoint
            elif p.protocol == protocol and p.port <= port <= (p.end_port or p.port):
                return np.ones(self.n, dtype=bool)
        return m

    def tier(self, tier: str, direction: str, protocol: str, port: int, families) -> tuple:
        """[from, to] (decided, allowed) by the tier's rules in evaluation order: the
        first rule that matches a pair decides it (Pass: the tier leaves it)."""
        n = self.n
        seen, final, allow = (np.zeros((n, n), dtype=bool) for _ in range(3))
        for pol in tier_policies(self.cluster, tier):
            subject = self.pod_set(pol.subject)
            if not subject.any():
                continue
            for rule in pol.egress if direction == EGRESS else pol.ingress:
                ports = self.admin_ports(rule, protocol, port)
                for f in families:
                    peers, dst = self.admin_peers(rule, f), self.dst_family == f
                    m = np.outer(subject, peers & ports & dst) if direction == EGRESS else \
                        np.outer(peers, subject & ports & dst)
                    new = m & ~seen
                    seen |= new
                    if rule.action != PASS:
                        final |= new
                        if rule.action == ALLOW:
                            allow |= new
        return final, allow

    def resident_node(self) -> np.ndarray:
        """[from, to]: the address plane's resident-node rule, pair by pair over the
        distinct ends (few: one per node and pod)."""
        plane = self.cluster.plane
        m = np.zeros((self.n, self.n), dtype=bool)
        nodes = [i for i in range(self.n) if not self.endpoint[i]]
        for i in nodes:
            m[i] = [plane.from_resident_node(self.ends[i], e) for e in self.ends]
        return m


def _or_of_outer(rows: list, cols: list, n: int) -> np.ndarray:
    """OR over k of outer(rows[k], cols[k]), as one matrix product."""
    if not rows:
        return np.zeros((n, n), dtype=bool)
    r = np.array(rows, dtype=np.float32)      # k x n
    c = np.array(cols, dtype=np.float32)      # k x n
    return (r.T @ c) > 0.5


def declared_ports(cluster: Cluster, protocols: Optional[list[str]] = None) -> list[tuple[str, int]]:
    """The (protocol, port) pairs the pods' containers declare."""
    seen = {(cp.protocol, cp.port) for p in cluster.pods.values() for cp in p.ports}
    return sorted(x for x in seen if protocols is None or x[0] in protocols)


@dataclass
class ServiceCell:
    """One source pod to one Service port: the verdict through each ready backend (of
    the source's address families). A dataplane may pick any of them, so the cell is
    allowed only when every one allows; none ready means the connection is rejected."""

    source: str
    service: str
    protocol: str
    port: int
    backends: list                   # [(Backend, allowed)]

    @property
    def allowed(self) -> bool:
        return bool(self.backends) and all(ok for _, ok in self.backends)

    @property
    def mark(self) -> str:
        oks = [ok for _, ok in self.backends]
        return "-" if not oks else "." if all(oks) else "X" if not any(oks) else "~"


def service_reach(cluster: Cluster, pods: list[Pod], namespace: Optional[str] = None) -> list[ServiceCell]:
    """Every pod to every port of every Service with a virtual IP (of `namespace`),
    through openServiceConnection once per ready backend."""
    from .connections import Connections, open_service_connection
    from .services import ready_backends
    cells = []
    for svc in sorted(cluster.services.values(), key=lambda s: s.key):
        if svc.headless or not cluster.plane.lookup_service_to_address_mappings(svc.key) \
                or namespace not in (None, svc.namespace):
            continue
        for sp in svc.ports:
            backends = ready_backends(cluster, svc, sp)
            for pod in pods:
                families = {ip.version for _, ip in cluster.plane.lookup_pod_to_address_mappings(pod.key)}
                verdicts = [(b, open_service_connection(cluster, Connections(), pod, svc.key, sp.protocol, sp.port,
                                                        backend=b).allowed)
                            for b in backends if b.address.version in families]
                cells.append(ServiceCell(pod.key, svc.key, sp.protocol, sp.port, verdicts))
    return cells


def network_matrix(cluster, network_name: str, protocol: str, port: int, pods=None):
    """reach on a secondary network: every pod attached to it to every other, pair by
    pair through the one decision (openConnectionWithIpAddresses in the network's
    domain, addresses on it). The cluster network has the vectorized ReachComputer;
    secondary networks are small, and this is the readable definition."""
    from .connections import Connections, open_connection_with_ip_addresses
    net = cluster.networks[network_name]
    ends = []
    for p in pods if pods is not None else cluster.pod_list():
        a = next((a for a in cluster.plane.attachments_of(p.key) if a.network == net.name), None)
        ip = cluster.plane.addresses(a)[0] if a is not None and cluster.plane.addresses(a) else None
        if ip is not None:
            ends.append((p, ip))
    allowed = np.zeros((len(ends), len(ends)), dtype=bool)
    conns = Connections()
    for i, (_, s) in enumerate(ends):
        for j, (_, d) in enumerate(ends):
            if s.version == d.version:
                allowed[i, j] = open_connection_with_ip_addresses(cluster, conns, s, d, protocol, port,
                                                                  net.domain, net.domain).allowed
    return Matrix(protocol, port, [p for p, _ in ends], allowed)
