"""The policy tables: identities, per-identity isolation, ipBlock address classes and
the rule table (docs/pipeline.md "Policy table").

Kubernetes semantics are decided here, at compile time (style P9); the C tables only
answer "is this key present". Pods with the same namespace, labels and named ports
share one identity (Cilium's security identity, plus named ports so a named port
resolves the same way for every pod of an identity).

Rule keys are (local identity, direction, peer identity, address class), 0 meaning
"any" (the C API calls the last field a block id; each class lists only itself, so
the fast path probes at most 4 keys per direction):
  - a selector peer gives one key per matching peer identity, class 0;
  - an ipBlock peer gives peer 0 and every address class the block matches;
  - a rule with no peers gives peer 0, block 0;
  - an egress named port towards "any" or an ipBlock is expanded per destination
    identity that declares the name (peer = that identity), since the port depends on
    the destination pod.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...model.cluster import Cluster
from ...model.objects import IPBlock, Pod
from ...model.addresses import DEFAULT_NETWORK
from ...model.policy import EGRESS, INGRESS, MULTI, peer_matches, policy_selects, rule_ids
from ..addr16 import prefix16
from .admin import TierRules, install_actions, tier_rules
from .peer_states import PeerStates, _alike
from .ports import _port_entries

DIR_NUMBERS = {INGRESS: 0, EGRESS: 1}
MAX_CELL_DIM = 4096             # NS_MAX_CELL_DIM: above it, one rule key per pair
ISOLATED_BITS = {INGRESS: 1, EGRESS: 2}
SUBJECT_BITS = {2: 16, 3: 32, 4: 64, 5: 128}      # NS_SUBJECT_*: per tier direction
V4_SPACE = ipaddress.ip_network("0.0.0.0/0")
# IPv4 addresses live in the tables IPv4-mapped; an IPv6 CIDR inside this prefix would
# match them. IPv6 packets with such addresses never get past the sanity filter
# (v4_mapped_address), so such CIDRs match nothing and are left out.
V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


@dataclass(frozen=True)
class Identity:
    """What policy sees of an interface: its namespace, labels and named ports, on
    one network. `representative` is a pod that had them when the identity was made
    (any such pod decides the same way); an identity may outlive its pods across
    deltas (compiler/delta.py), and nothing then points at it."""

    id: int
    named_ports: frozenset           # {(name, protocol, port)}
    representative: Pod
    network: str = DEFAULT_NETWORK   # the network its pods' interfaces are on


def identity_key(pod: Pod, network: str):
    return (pod.namespace, frozenset(pod.labels.items()),
            frozenset((p.name, p.protocol, p.port) for p in pod.ports if p.name), network)


def build_identities(cluster: Cluster) -> tuple[list, dict, dict]:
    """Identities of the pods' interfaces, one per network (a pod is policed on each
    network by that network's policies only): (identities by id - 1,
    {(pod key, network) -> id}, {identity_key -> id})."""
    identities: dict = {}
    identity_of: dict = {}
    for key, network in sorted({(a.pod, a.network) for a in cluster.plane.attachments()},
                               key=lambda kn: (kn[1] != DEFAULT_NETWORK, kn[1], kn[0])):
        p = cluster.pods[key]
        ik = identity_key(p, network)
        ident = identities.get(ik)
        if ident is None:
            ident = identities[ik] = Identity(len(identities) + 1, ik[2], p, network)
        identity_of[(p.key, network)] = ident.id
    return sorted(identities.values(), key=lambda i: i.id), identity_of, \
        {ik: i.id for ik, i in identities.items()}


def _matchable(net) -> bool:
    return not (net.version == 6 and net.subnet_of(V4_MAPPED))


def _net_key(net) -> tuple:
    # a /0's network address is 0, so its shifted-out key is 0 as well
    return (net.version, net.prefixlen, int(net.network_address) >> (net.max_prefixlen - net.prefixlen))


def block_classes(blocks: dict) -> list:
    """Every cidr and except is a prefix; an address's longest matching prefix P fixes
    which blocks match it: those of P's family whose cidr contains P and none of whose
    excepts contains P. The IPv4 space is always a prefix, so IPv4 addresses never
    fall into an IPv6 prefix such as ::/0.

    Containment is found by walking P's supernets over the prefix lengths in use
    (integer keys), so the cost is O(prefixes x lengths), not O(prefixes x blocks)."""
    cidrs: dict[tuple, list] = {}
    excepts: dict[tuple, list] = {}
    prefixes = {V4_SPACE}
    for b, bid in blocks.items():
        if _matchable(b.cidr):
            cidrs.setdefault(_net_key(b.cidr), []).append(bid)
            prefixes.add(b.cidr)
        for e in b.excepts:
            if _matchable(e):
                excepts.setdefault(_net_key(e), []).append(bid)
                prefixes.add(e)
    lengths = {4: sorted({k[1] for k in list(cidrs) + list(excepts) if k[0] == 4}),
               6: sorted({k[1] for k in list(cidrs) + list(excepts) if k[0] == 6})}
    classes = []
    for p in sorted(prefixes, key=lambda n: (n.version, n.network_address, n.prefixlen)):
        addr, bits = int(p.network_address), p.max_prefixlen
        inside, carved = set(), set()
        for ln in lengths[p.version]:
            if ln > p.prefixlen:
                break
            key = (p.version, ln, addr >> (bits - ln))    # addr < 2**bits: 0 at ln 0
            inside.update(cidrs.get(key, ()))
            carved.update(excepts.get(key, ()))
        classes.append((p, sorted(inside - carved)))
    return classes


@dataclass
class PolicyTables:
    rules: dict                      # (policy key, direction, index) -> rule id
    isolation: dict                  # identity -> NS_ISOLATED_* bits
    blocks: dict                     # IPBlock -> block id
    classes: list                    # [(prefix network, [block ids])], class id = index + 1
    entries: dict                    # (local, dir, peer, block) -> [(proto, lo, hi, rule id)]
    cells: dict = field(default_factory=dict)   # ("peer" | "block", dir number) -> states (numpy)
    # What a delta (compiler/delta.py) continues from: the peer-set states, and which
    # identities each policy selects and each selector peer matches.
    states: object = None            # PeerStates, or None (one rule key per pair)
    selected: dict = field(default_factory=dict)    # (kind, policy key, network, direction) -> ids
    peer_sets: dict = field(default_factory=dict)   # (network, namespace or None, peer) -> ids
    _n_entries: Optional[int] = None
    tiers: list = field(default_factory=list)       # admin.TierRules: cluster-wide policies

    @property
    def capacity(self) -> int:
        """Identity ids below this fit the tables (cells are allocated with room)."""
        return self.states.dim if self.states is not None else 0

    @property
    def n_entries(self) -> int:
        if self._n_entries is None:
            self._n_entries = sum(len(v) for v in self.entries.values())
        return self._n_entries

    def install(self, lib, t, check) -> None:
        for ident_id, mask in self.isolation.items():          # (hashed tables: any order)
            check(lib.ns_tables_set_isolation(t, ident_id, mask), f"identity {ident_id}")
        for class_id, (net, members) in enumerate(self.classes, start=1):
            a, plen = prefix16(net)
            check(lib.ns_tables_add_prefix(t, a, plen, class_id), f"prefix {net}")
            if members:
                # The C "block" dimension carries the class itself (see above).
                check(lib.ns_tables_add_class_block(t, class_id, class_id), f"class {class_id}")
        for (local, dir_no, peer, block), lst in self.entries.items():
            for proto, lo, hi, rid in lst:
                check(lib.ns_tables_add_rule(t, local, dir_no, peer, block, proto, lo, hi, rid),
                      f"rule {rid}")
        install_actions(lib, t, check, self.rules, self.tiers)
        from ..._native import ffi
        for (kind, dir_no), m in sorted(self.cells.items()):
            ptr = ffi.cast("uint32_t *", ffi.from_buffer(m))
            if kind == "peer":
                check(lib.ns_tables_set_peer_cells(t, dir_no, ptr, m.shape[0]), "peer-set cells")
            else:
                check(lib.ns_tables_set_block_cells(t, dir_no, ptr, m.shape[0], m.shape[1]), "block cells")


def cell_dim(n_idents: int) -> int:
    """The peer-set matrices' side for n identities: room for a quarter more (new
    label sets arriving as deltas), within NS_MAX_CELL_DIM."""
    return min(MAX_CELL_DIM, (n_idents + 1) * 5 // 4 + 8)


def policies_and_blocks(cluster: Cluster) -> tuple:
    """([(policy, network, kind)] in compile order, {IPBlock: block id}, tier rules)."""
    tiers = tier_rules(cluster)
    policies = [(pol, DEFAULT_NETWORK, "") for pol in cluster.policy_list()] + \
        [(pol, net, MULTI) for pol in sorted(cluster.multi_policies.values(), key=lambda p: p.key)
         for net in pol.networks] + [(tr, DEFAULT_NETWORK, "") for tr in tiers]
    blocks: dict[IPBlock, int] = {}
    for pol, _, _ in policies:
        for rule in pol.ingress + pol.egress:
            for peer in rule.peers or ():
                if peer.ip_block is not None and peer.ip_block not in blocks:
                    blocks[peer.ip_block] = len(blocks) + 1
    return policies, blocks, tiers


def build_policy(cluster: Cluster, idents: list, cells: bool = True, base: PolicyTables = None,
                 focus: frozenset = frozenset(), rows: dict = None, changed: frozenset = frozenset()) -> PolicyTables:
    """NetworkPolicies over the cluster network's identities, each MultiNetworkPolicy
    over the identities of the networks it is for. cells: selected peers as peer-set
    states in a dense matrix (PeerStates) when the identities fit NS_MAX_CELL_DIM;
    else, or when False, one rule key per (local, peer) pair.

    base, focus: a delta. The policies are base's, and `idents` are base's plus the
    new identities `focus` (ids below base.capacity): only their rows and columns
    are computed, on a copy of base's states; the rest is base's.

    base, rows, changed: a policy delta. The identities are base's; the policies
    `changed` (kind + key) came, went or changed, and `rows` ({dir: identity ids})
    are the locals any of them selects, before or after: those rows are computed
    again from every rule, the rest is base's with its rule ids renumbered."""
    ids = rule_ids(cluster)
    policies, blocks, tiers = policies_and_blocks(cluster)
    classes = block_classes(blocks)
    classes_of_block: dict[int, list] = {bid: [] for bid in blocks.values()}
    for class_id, (_, members) in enumerate(classes, start=1):
        for b in members:
            classes_of_block[b].append(class_id)

    if base is not None and rows is not None:
        remap = {rid: ids[k] for k, rid in base.rules.items() if k in ids and k[0] not in changed}
        entries = {}
        for k, lst in base.entries.items():
            if k[0] and k[0] in rows.get(k[1], ()):
                continue                    # a row computed again
            got = [(p, lo, hi, remap[r]) for p, lo, hi, r in lst if r in remap]
            if got:
                entries[k] = got
        isolation = dict(base.isolation)
        for d, ids_ in rows.items():
            for i in ids_:
                isolation[i] = isolation.get(i, 0) & ~ISOLATED_BITS[INGRESS if d == 0 else EGRESS]
        states = base.states.renumbered(remap, rows)
        selected_of = {k: v for k, v in base.selected.items() if k[0] + k[1] not in changed}
        peer_sets = dict(base.peer_sets)
    elif base is not None:
        entries = dict(base.entries)        # a state's keys never change: install_into adds new ones
        isolation = dict(base.isolation)
        states = base.states.copy(focus)
        selected_of, peer_sets = dict(base.selected), dict(base.peer_sets)
    else:
        entries, isolation, selected_of, peer_sets = {}, {}, {}, {}
        states = PeerStates(cell_dim(len(idents)), len(classes) + 1) \
            if cells and len(idents) + 1 <= MAX_CELL_DIM else None
    by_id = {i.id: i for i in idents}
    new_ones = [by_id[f] for f in sorted(focus)]

    named_index: dict = {}

    def named_ports_of(ident, name: str, proto: str) -> list:
        """An identity's ports of that name; for a list of identities (a network's),
        [(identity id, port)], indexed once per network."""
        if isinstance(ident, Identity):
            return [port for (n, pr, port) in ident.named_ports if n == name and pr == proto]
        key = id(ident)
        if key not in named_index:
            index: dict = {}
            for j in ident:
                for (n, pr, port) in j.named_ports:
                    index.setdefault((n, pr), []).append((j.id, port))
            named_index[key] = (ident, index)          # the list kept alive: its id stays its own
        return named_index[key][1].get((name, proto), [])

    # Identities alike in named ports: a number each (egress named ports resolve
    # against the peer, so peers with one number get one rule entry set).
    sigs: dict = {}
    named_sig = np.zeros(len(idents) + 1, dtype=np.int64)
    alike: dict = {}
    for i in idents:
        named_sig[i.id] = sigs.setdefault(i.named_ports, len(sigs))

    def peer_identities(pol, peer, network) -> list:
        """Identity ids a selector peer matches; without a namespace selector it
        depends on the policy's namespace, with one it does not."""
        key = (network, pol.namespace if peer.namespace_selector is None else None, peer)
        got = peer_sets.get(key)
        if got is None or (focus and key not in seen):
            pool = candidates(pol, peer, network, new_ones if got is not None else None)
            more = np.array([j.id for j in pool if peer_matches(cluster, pol, peer, j.representative, None)],
                            dtype=np.int64)
            got = peer_sets[key] = more if got is None else np.concatenate([got, more])
            seen.add(key)
        return got

    seen: set = set()

    # Candidates by network and namespace: a policy selects pods of its own namespace,
    # a peer without a namespace selector too, one with it those of the namespaces it
    # selects. The model's predicates still decide each candidate; this only skips
    # the identities they would refuse anyway.
    on_nets: dict = {}
    by_ns: dict = {}
    for i in idents:
        on_nets.setdefault(i.network, []).append(i)
        by_ns.setdefault((i.network, i.representative.namespace), []).append(i)

    def candidates(pol, peer, network, among=None) -> list:
        """among: only these identities (a delta's new ones)."""
        if among is not None:
            return [j for j in among if j.network == network and (
                j.representative.namespace == pol.namespace if peer.namespace_selector is None
                else _ns_selected(cluster, peer, j.representative.namespace))]
        if peer.namespace_selector is None:
            return by_ns.get((network, pol.namespace), [])
        out = []
        for (net, ns_name), members in by_ns.items():
            if net == network and _ns_selected(cluster, peer, ns_name):
                out += members
        return out

    for pol, network, kind in policies:
        on_net = on_nets.get(network, [])
        for direction in (INGRESS, EGRESS):
            skey = (kind, pol.key, network, direction)
            sids = selected_of.get(skey)
            tier = isinstance(pol, TierRules)      # cluster-wide: subjects in any namespace, no isolation
            if tier:
                pool = on_net if sids is None else [i for i in new_ones if i.network == network]
                fresh = [i.id for i in pool if pol.selects(cluster, i.representative)]
            else:
                pool = by_ns.get((network, pol.namespace), []) if sids is None else \
                    [i for i in new_ones if i.network == network and i.representative.namespace == pol.namespace]
                # An identity decides by its labels, whether or not the pod that
                # stood for them is still there (deltas keep identities).
                fresh = [i.id for i in pool
                         if policy_selects(cluster, pol, i.representative, direction, network, interface=True)]
            selected_of[skey] = sids = fresh if sids is None else sids + fresh
            if not sids:
                continue
            selected = None             # the Identities, when a rule needs them
            # NetworkPolicy isolates; a tier's subjects only get its bit (NS_SUBJECT_*), so
            # the lookup skips the tier for identities none of its policies select.
            bit = SUBJECT_BITS[DIR_NUMBERS[direction] + pol.dir_base] if tier else ISOLATED_BITS[direction]
            row_set = rows.get(DIR_NUMBERS[direction] + (pol.dir_base if tier else 0), ()) if rows is not None else ()
            if rows is not None:
                fresh = [i for i in sids if i in row_set]      # the locals computed again
                if not fresh:
                    continue
            for i in fresh:
                isolation[i] = isolation.get(i, 0) | bit
            rules = pol.ingress if direction == INGRESS else pol.egress
            for index, rule in enumerate(rules):
                rid = ids[(kind + pol.key, direction, index)]
                # Peers as (peer identity or 0, block id or 0).
                peer_keys, sel_lists = ([(0, 0)], []) if rule.peers is None else ([], [])
                for peer in rule.peers or ():
                    if peer.ip_block is not None:
                        # Keyed by address class: an address has one class, so a
                        # verdict probes at most 4 keys however blocks overlap.
                        peer_keys.extend((0, c) for c in classes_of_block[blocks[peer.ip_block]])
                    else:
                        sel_lists.append(peer_identities(pol, peer, network))
                dir_no = DIR_NUMBERS[direction] + (pol.dir_base if tier else 0)
                if base is not None and rows is None and not fresh and not _named_egress(rule, direction) and \
                        not any(states.touches((), lst) for lst in sel_lists):
                    continue                # a delta: this rule reaches no new identity
                if selected is None:
                    selected = [by_id[i] for i in sids]
                if states is not None:
                    if base is not None and rows is None and not fresh:
                        # A delta's columns only: the peers among the new identities.
                        sel_lists = [lst[states.in_focus[lst]] for lst in sel_lists]
                    sel = np.unique(np.concatenate(sel_lists)) if sel_lists else np.empty(0, dtype=np.int64)
                    if network not in alike:
                        alike[network] = _alike(on_net, named_sig)
                    states.add_rule(dir_no, rule, direction, rid, selected, sel, sorted(set(peer_keys)), idents,
                                    on_net, named_ports_of, named_sig, alike[network])
                    peer_keys = [(0, 0)] if (0, 0) in peer_keys else []     # "any peer" left
                else:
                    peer_keys = sorted(set(peer_keys) | {(int(j), 0) for ids_ in sel_lists for j in ids_})
                # With PeerStates the expansions per destination identity are cells.
                expand_over = on_net if states is None else []
                for local in (selected if base is None else [by_id[i] for i in fresh]):
                    for peer_id, block_id in peer_keys:
                        for key, entry in _port_entries(rule, direction, local, peer_id, block_id,
                                                        idents, expand_over, named_ports_of):
                            if states is not None and (key[0] or key[1]):
                                continue            # a cell: PeerStates has it
                            entries.setdefault((local.id, dir_no) + key, []).append(entry + (rid,))
    if focus:
        # Only the peer sets this build used were extended with the new identities;
        # the others are dropped (computed whole when next used), never left stale.
        peer_sets = {k: v for k, v in peer_sets.items() if k in seen}
    tables = PolicyTables(ids, isolation, blocks, classes, entries, states=states, selected=selected_of,
                          peer_sets=peer_sets, tiers=tiers)
    if states is not None:
        tables.cells = states.install_into(entries)
    return tables


def _named_egress(rule, direction) -> bool:
    """Egress to named ports: its cells depend on every destination's named ports."""
    return direction == EGRESS and any(isinstance(p.port, str) for p in rule.ports or ())


def _ns_selected(cluster: Cluster, peer, ns_name: str) -> bool:
    ns = cluster.namespaces.get(ns_name)
    return ns is not None and peer.namespace_selector.matches(ns.labels)
