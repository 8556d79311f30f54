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

from ...model.cluster import Cluster
from ...model.objects import IPBlock, Pod
from ...model.addresses import DEFAULT_NETWORK
from ...model.policy import EGRESS, INGRESS, MULTI, peer_matches, policy_selects, rule_ids
from .. import constants as K
from ..addr16 import prefix16

DIR_NUMBERS = {INGRESS: 0, EGRESS: 1}
ISOLATED_BITS = {INGRESS: 1, EGRESS: 2}
V4_SPACE = ipaddress.ip_network("0.0.0.0/0")
# IPv4 addresses live in the tables IPv4-mapped; an IPv6 CIDR inside this prefix would
# match them. IPv6 packets with such addresses never get past the sanity filter
# (v4_mapped_address), so such CIDRs match nothing and are left out.
V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


@dataclass
class Identity:
    id: int
    named_ports: frozenset           # {(name, protocol, port)}
    pods: list = field(default_factory=list)
    network: str = DEFAULT_NETWORK   # the network its pods' interfaces are on

    @property
    def representative(self) -> Pod:
        return self.pods[0]


def _identity_key(pod: Pod, network: str):
    return (pod.namespace, frozenset(pod.labels.items()),
            frozenset((p.name, p.protocol, p.port) for p in pod.ports if p.name), network)


def build_identities(cluster: Cluster) -> tuple[list, dict]:
    """Identities of the pods' interfaces, one per network (a pod is policed on each
    network by that network's policies only): (identities by id - 1,
    {(pod key, network) -> id})."""
    identities: dict = {}
    identity_of: dict = {}
    for key, network in sorted({(a.pod, a.network) for a in cluster.plane.attachments()},
                               key=lambda kn: (kn[1] != DEFAULT_NETWORK, kn[1], kn[0])):
        p = cluster.pods[key]
        ik = _identity_key(p, network)
        ident = identities.get(ik)
        if ident is None:
            ident = identities[ik] = Identity(len(identities) + 1, ik[2], network=network)
        ident.pods.append(p)
        identity_of[(p.key, network)] = ident.id
    return sorted(identities.values(), key=lambda i: i.id), identity_of


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

    @property
    def n_entries(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def install(self, lib, t, check) -> None:
        for ident_id, mask in sorted(self.isolation.items()):
            check(lib.ns_tables_set_isolation(t, ident_id, mask), f"identity {ident_id}")
        for class_id, (net, members) in enumerate(self.classes, start=1):
            a, plen = prefix16(net)
            check(lib.ns_tables_add_prefix(t, a, plen, class_id), f"prefix {net}")
            if members:
                # The C "block" dimension carries the class itself (see above).
                check(lib.ns_tables_add_class_block(t, class_id, class_id), f"class {class_id}")
        for (local, dir_no, peer, block), lst in sorted(self.entries.items()):
            for proto, lo, hi, rid in lst:
                check(lib.ns_tables_add_rule(t, local, dir_no, peer, block, proto, lo, hi, rid),
                      f"rule {rid}")


def build_policy(cluster: Cluster, idents: list) -> PolicyTables:
    """NetworkPolicies over the cluster network's identities, each MultiNetworkPolicy
    over the identities of the networks it is for."""
    ids = rule_ids(cluster)
    policies = [(pol, DEFAULT_NETWORK, "") for pol in cluster.policy_list()] + \
        [(pol, net, MULTI) for pol in sorted(cluster.multi_policies.values(), key=lambda p: p.key)
         for net in pol.networks]
    blocks: dict[IPBlock, int] = {}
    for pol, _, _ in policies:
        for rule in pol.ingress + pol.egress:
            for peer in rule.peers or ():
                if peer.ip_block is not None and peer.ip_block not in blocks:
                    blocks[peer.ip_block] = len(blocks) + 1
    classes = block_classes(blocks)
    classes_of_block: dict[int, list] = {bid: [] for bid in blocks.values()}
    for class_id, (_, members) in enumerate(classes, start=1):
        for b in members:
            classes_of_block[b].append(class_id)

    entries: dict[tuple, list] = {}
    isolation: dict[int, int] = {}

    def named_ports_of(ident: Identity, name: str, proto: str) -> list[int]:
        return [port for (n, pr, port) in ident.named_ports if n == name and pr == proto]

    for pol, network, kind in policies:
        on_net = [i for i in idents if i.network == network]
        for direction in (INGRESS, EGRESS):
            selected = [i for i in on_net if policy_selects(cluster, pol, i.representative, direction, network)]
            if not selected:
                continue
            for i in selected:
                isolation[i.id] = isolation.get(i.id, 0) | ISOLATED_BITS[direction]
            rules = pol.ingress if direction == INGRESS else pol.egress
            for index, rule in enumerate(rules):
                rid = ids[(kind + pol.key, direction, index)]
                # Peers as (peer identity or 0, block id or 0).
                if rule.peers is None:
                    peer_keys = [(0, 0)]
                else:
                    peer_keys = []
                    for peer in rule.peers:
                        if peer.ip_block is not None:
                            # Keyed by address class: an address has one class, so a
                            # verdict probes at most 4 keys however blocks overlap.
                            peer_keys.extend((0, c) for c in classes_of_block[blocks[peer.ip_block]])
                        else:
                            peer_keys.extend((j.id, 0) for j in on_net
                                             if peer_matches(cluster, pol, peer, j.representative, None))
                    peer_keys = sorted(set(peer_keys))
                for local in selected:
                    dir_no = DIR_NUMBERS[direction]
                    for peer_id, block_id in peer_keys:
                        for key, entry in _port_entries(rule, direction, local, peer_id, block_id,
                                                        idents, on_net, named_ports_of):
                            entries.setdefault((local.id, dir_no) + key, []).append(entry + (rid,))
    return PolicyTables(ids, isolation, blocks, classes, entries)


def _port_entries(rule, direction, local, peer_id, block_id, idents, on_net, named_ports_of):
    """Yields ((peer, block), (proto, lo, hi)) for one peer key of one rule."""
    if rule.ports is None:
        yield (peer_id, block_id), (0, 0, 65535)
        return
    for p in rule.ports:
        proto = K.PROTO_NUMBERS[p.protocol]
        if p.port is None:
            yield (peer_id, block_id), (proto, 0, 65535)
        elif isinstance(p.port, int):
            yield (peer_id, block_id), (proto, p.port, p.end_port if p.end_port is not None else p.port)
        elif direction == INGRESS:
            for port in named_ports_of(local, p.port, p.protocol):
                yield (peer_id, block_id), (proto, port, port)
        elif peer_id:
            # Egress towards a selected identity: resolve against it.
            j = idents[peer_id - 1]
            for port in named_ports_of(j, p.port, p.protocol):
                yield (peer_id, block_id), (proto, port, port)
        else:
            # Egress towards any address or an ipBlock: only pods can have named
            # ports, so expand per destination identity (of the same network).
            for j in on_net:
                for port in named_ports_of(j, p.port, p.protocol):
                    yield (j.id, block_id), (proto, port, port)
