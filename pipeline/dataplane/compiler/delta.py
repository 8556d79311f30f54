"""Table deltas: the next generation compiled from the previous one and what changed,
instead of from the whole cluster (issue 10; docs/pipeline.md "Deltas").

A label change moves a pod's interfaces to the identity of their new labels. When
that identity exists, only the pod's endpoint rows change. When it is new, it gets
the next id and PeerStates computes its row and column of the peer-set matrices
(the rules that select it, the rules whose peers match it) on a copy of the previous
states; every other cell already holds every rule. Identities a move leaves empty
stay: nothing points at them, and the next full compile drops them.

What a delta cannot do it says with NeedFull, and the caller compiles in full: new
identities past the matrices' room (policy.cell_dim), or one rule key per pair
(the identities did not fit NS_MAX_CELL_DIM). The result equals a full compile in
every verdict (tests/test_delta.py holds the two together); identity numbers may
differ."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Optional

from ...model.addresses import DEFAULT_NETWORK
from ...model.cluster import Cluster
from ...model.policy import policy_selects
from .. import constants as K
from ..addr16 import addr16
from . import Compiled, compile_cluster, install_tables
from .endpoints import EndpointRow, EndpointTable
from .policy import Identity, build_policy, identity_key, policies_and_blocks
from .services import build_services


class NeedFull(Exception):
    """This change is not a delta of the previous tables: compile in full."""


class _Identities:
    """The previous generation's identities, extended copy-on-write: a label set that
    has an identity keeps it; a new one gets the next id (its row and column are the
    delta's `focus`), within the peer-set matrices' room."""

    def __init__(self, prev: Compiled):
        self.keys, self.list = dict(prev.identity_keys or {}), list(prev.identities)
        self.capacity, self.focus = prev.policy.capacity, set()

    def of(self, pod, network: str) -> int:
        ik = identity_key(pod, network)
        iid = self.keys.get(ik)
        if iid is None:
            iid = len(self.list) + 1
            if iid >= self.capacity:
                raise NeedFull(f"identity {iid}: the peer-set matrices hold {self.capacity}")
            self.list.append(Identity(iid, ik[2], pod, network))
            self.keys[ik] = iid
            self.focus.add(iid)
        return iid


def _finish(prev: Compiled, cluster: Cluster, ids: _Identities, identity_on: dict, endpoints,
            services) -> Compiled:
    """New identities' rows and columns, then the tables; with none, the running
    policy part is shared, not rebuilt."""
    policy = build_policy(cluster, ids.list, base=prev.policy, focus=frozenset(ids.focus)) if ids.focus \
        else prev.policy
    share = prev.tables if policy is prev.policy and prev.tables is not None else None
    return install_tables(Compiled(cluster, ids.list, identity_on, endpoints, policy, services, {},
                                   identity_keys=ids.keys, delta=True), share_policy=share)


def compile_relabeled(prev: Compiled, cluster: Cluster, pods: Iterable[str]) -> Compiled:
    """The tables of `cluster`, which is `prev.cluster` with the labels of `pods`
    changed (Cluster.relabeled) and nothing else. Raises NeedFull."""
    ids, identity_on = _Identities(prev), dict(prev.identity_on)
    moved: dict[tuple, int] = {}
    networks = sorted(cluster.networks)
    for pk in pods:
        for net in networks:
            if (pk, net) in identity_on:
                iid = ids.of(cluster.pods[pk], net)
                if identity_on[(pk, net)] != iid:
                    identity_on[(pk, net)] = moved[(pk, net)] = iid
    endpoints = _moved_rows(prev.endpoints, cluster, moved)
    services = prev.services
    if any(prev.cluster.lookup_pod_to_service_mappings(pk) != cluster.lookup_pod_to_service_mappings(pk)
           for pk in pods):
        services = build_services(cluster, endpoints.zones)
    return _finish(prev, cluster, ids, identity_on, endpoints, services)


def compile_pods(prev: Compiled, cluster: Cluster, added: Iterable[str], removed: Iterable[str]) -> Compiled:
    """The tables of `cluster`, which is `prev.cluster` with pods come and gone
    (Cluster.with_pods) and nothing else: their endpoint rows and ports go and come;
    a pod whose labels make a new identity gets its row and column as in
    compile_relabeled. Raises NeedFull."""
    ids, identity_on = _Identities(prev), dict(prev.identity_on)
    ep = prev.endpoints
    gone_ports = {a.port for pk in removed for a in prev.cluster.plane.attachments_of(pk)}
    rows = [r for r in ep.rows if not (r.kind == K.EP_POD and r.port in gone_ports)]
    port_zones = {p: z for p, z in ep.port_zones.items() if p not in gone_ports}
    port_networks = {p: n for p, n in ep.port_networks.items() if p not in gone_ports}
    for pk in removed:
        for net in list(cluster.networks):
            identity_on.pop((pk, net), None)
    owner = max((r.owner for r in ep.rows if r.kind == K.EP_POD), default=0)
    for pk in added:
        for a in cluster.plane.attachments_of(pk):
            if a.node not in ep.nodes or a.domain not in ep.zones or a.network not in ep.networks:
                raise NeedFull(f"{a}: a node, domain or network the tables do not number")
            iid = identity_on[(pk, a.network)] = ids.of(cluster.pods[pk], a.network)
            owner += 1
            z = ep.zones[a.domain]
            rows += [EndpointRow(z, ip, K.EP_POD, a.port, iid, ep.nodes[a.node], owner, addr16(ip))
                     for ip in cluster.plane.addresses(a)]
            port_zones[a.port], port_networks[a.port] = z, ep.networks[a.network]
    endpoints = replace(ep, rows=rows, port_zones=port_zones, port_networks=port_networks, packed=None)
    services = prev.services
    if any(prev.cluster.lookup_pod_to_service_mappings(pk) for pk in removed) or \
            any(cluster.lookup_pod_to_service_mappings(pk) for pk in added):
        services = build_services(cluster, endpoints.zones)
    return _finish(prev, cluster, ids, identity_on, endpoints, services)


def _moved_rows(table: EndpointTable, cluster: Cluster, moved: dict) -> EndpointTable:
    """The endpoint table with the moved interfaces' rows on their new identities."""
    if not moved:
        return table
    by_port = {a.port: moved[(a.pod, a.network)] for pk, _ in moved for a in cluster.plane.attachments_of(pk)
               if (a.pod, a.network) in moved}
    rows, at = list(table.rows), []
    for i, r in enumerate(rows):
        if r.port in by_port and r.identity:
            rows[i] = replace(r, identity=by_port[r.port])
            at.append(i)
    packed = None
    if table.packed is not None:           # the running table's columns, one patched
        packed = dict(table.packed, identity=table.packed["identity"].copy())
        packed["identity"][at] = [rows[i].identity for i in at]
    return replace(table, rows=rows, packed=packed)


def compile_policies(prev: Compiled, cluster: Cluster, keys: Iterable[str]) -> Compiled:
    """The tables of `cluster`, which is `prev.cluster` with the NetworkPolicies
    `keys` put or removed and nothing else: the rows of the identities any of them
    selects (before or after) are computed again from every rule; every other row
    keeps its states, with the rule ids numbered again (a monotone renumbering keeps
    each segment's smallest id its smallest). Raises NeedFull when the policies'
    ipBlocks change (the address classes would) or without peer-set states."""
    pt = prev.policy
    if pt.states is None:
        raise NeedFull("one rule key per pair: no peer-set states to continue from")
    if set(policies_and_blocks(cluster)[1]) != set(pt.blocks):
        raise NeedFull("the ipBlocks changed: the address classes would")
    rows: dict = {0: set(), 1: set()}
    cluster_idents = [i for i in prev.identities if i.network == DEFAULT_NETWORK]
    for key in keys:
        for d, name in ((0, "Ingress"), (1, "Egress")):
            rows[d] |= set(pt.selected.get(("", key, DEFAULT_NETWORK, name), ()))
            pol = cluster.policies.get(key)
            if pol is not None:
                rows[d] |= {i.id for i in cluster_idents
                            if policy_selects(cluster, pol, i.representative, name, interface=True)}
    policy = build_policy(cluster, prev.identities, base=pt, rows=rows, changed=frozenset(keys))
    return install_tables(Compiled(cluster, prev.identities, prev.identity_on, prev.endpoints, policy,
                                   prev.services, {}, identity_keys=prev.identity_keys, delta=True))


def compile_next(prev: Optional[Compiled], cluster: Cluster, relabeled: frozenset = frozenset(),
                 before: Optional[Cluster] = None, added: frozenset = frozenset(),
                 removed: frozenset = frozenset(), policies: frozenset = frozenset()) -> Compiled:
    """The tables of `cluster`: a delta of `prev` when `cluster` is `before` (prev's
    cluster) with only the labels of `relabeled` changed, or only the pods `added`
    and `removed` come and gone; prev itself when `cluster` is its cluster (nothing
    changed); else a full compile."""
    if prev is not None and prev.cluster is cluster:
        return prev
    if prev is not None and before is not None and prev.cluster is before:
        try:
            if relabeled:
                return compile_relabeled(prev, cluster, relabeled)
            if added or removed:
                return compile_pods(prev, cluster, added, removed)
            if policies:
                return compile_policies(prev, cluster, policies)
        except NeedFull:
            pass
    return compile_cluster(cluster)
