"""Peer-set states (docs/pipeline.md "Policy table"): the rule keys that name a peer,
compressed into dense (local, peer) and (local, address class) matrices of states."""

from __future__ import annotations

import numpy as np

from ...model.policy import EGRESS, INGRESS
from .. import constants as K
from .ports import _port_entries


class PeerStates:
    """Selected peers compressed: the (local, peer) pairs of identities form a dense
    matrix per direction whose cells hold a peer-set state: what the rules that name
    that peer for that local allow, as a verdict reads it (per address class 0 or
    block, per protocol, disjoint port segments with the smallest rule id). A rule
    moves the cells it covers from their state to the state with its entries added,
    through a transition table; states are canonical (equal contents, one state), so
    their number is that of distinct answers, not of histories. Each state is the
    rule keys (0, dir, state, class). Entries depend on the local only through its
    named ports (ingress) and on the peer only through its named ports (egress), so a
    rule is applied per group of alike identities, in numpy, never per pair."""

    def __init__(self, dim: int, classes: int):
        self.dim, self.classes = dim, classes
        self.m: dict = {}                        # ("peer", dir) -> [dim, dim]; ("block", dir) -> [dim, classes]
        self.contents: list = [()]               # state -> ((class, segments), ...), sorted
        self.state_of: dict = {(): 0}
        self.trans: dict = {}
        self.symbols: dict = {}

    def _after(self, old: int, entries: tuple) -> int:
        """The state of a cell in state `old` once `entries` (classes, port entries)
        are added."""
        classes, es = entries
        segs = dict(self.contents[old])
        for c in classes or (0,):
            segs[c] = _add(segs.get(c, ()), es)
        key = tuple(sorted(segs.items()))
        s = self.state_of.get(key)
        if s is None:
            s = self.state_of[key] = len(self.contents)
            self.contents.append(key)
        return s

    def _apply(self, kind: str, dir_no: int, rows, cols, entries: tuple) -> None:
        """entries: (classes, port entries): for block 0 when classes is (), else for
        each of those address classes."""
        if not len(rows) or not len(cols) or not entries[1]:
            return
        m = self.m.get((kind, dir_no))
        if m is None:
            m = self.m[(kind, dir_no)] = np.zeros((self.dim, self.dim if kind == "peer" else self.classes),
                                                  dtype=np.uint32)
        sym = self.symbols.setdefault(entries, len(self.symbols) + 1)
        ix = np.ix_(np.asarray(rows), np.asarray(cols))
        sub = m[ix]
        n = len(self.contents)
        if n <= 8 * sub.size:
            # Few states so far: which occur by counting, then one table lookup.
            olds = np.flatnonzero(np.bincount(sub.ravel(), minlength=n))
            lut = np.zeros(n, dtype=np.uint32)
            lut[olds] = [self._next(old, sym, entries) for old in olds.tolist()]
            m[ix] = lut[sub]
        else:
            olds, inv = np.unique(sub, return_inverse=True)
            new = np.array([self._next(old, sym, entries) for old in olds.tolist()], dtype=np.uint32)
            m[ix] = new[inv].reshape(sub.shape)

    def _next(self, old: int, sym: int, entries: tuple) -> int:
        s = self.trans.get((old, sym))
        if s is None:
            s = self.trans[(old, sym)] = self._after(old, entries)
        return s

    def add_rule(self, dir_no, rule, direction, rid, selected, sel_peers, peer_keys, idents, on_net,
                 named_ports_of, named_sig, alike_on):
        """sel_peers: the identity ids (numpy) its selector peers match; peer_keys:
        its other keys, (0, 0) for any peer and (0, class) for its ipBlocks;
        alike_on: the network's identities grouped by named ports (_alike)."""
        block_classes = [b for p, b in peer_keys if not p and b]
        named = rule.ports is not None and any(isinstance(p.port, str) for p in rule.ports)
        expand = (0, 0) in peer_keys and direction == EGRESS and named
        if not len(sel_peers) and not expand and not block_classes:
            return
        # Locals alike for this rule: only ingress named ports tell them apart.
        lgroups: dict = {}
        for i in selected:
            lgroups.setdefault(i.named_ports if direction == INGRESS else None, []).append(i)
        for locals_ in lgroups.values():
            rows, lrep = [i.id for i in locals_], locals_[0]
            by_entries: dict = {}
            if len(sel_peers):
                if direction == EGRESS and named:         # peers alike in named ports
                    u, inv = np.unique(named_sig[sel_peers], return_inverse=True)
                    groups = [sel_peers[inv == g] for g in range(len(u))]
                else:
                    groups = [sel_peers]
                for pids in groups:
                    es = tuple(sorted(e + (rid,) for _, e in _port_entries(rule, direction, lrep, int(pids[0]), 0,
                                                                           idents, on_net, named_ports_of)))
                    by_entries.setdefault(es, []).append(pids)
            # Egress named ports towards any address or an ipBlock resolve per
            # destination identity: per group of identities alike in named ports.
            alike = alike_on if expand or (block_classes and named and direction == EGRESS) else []
            if expand:
                for rep, ids_ in alike:
                    es = _named_entries(rule, rep, rid, named_ports_of)
                    if es:
                        by_entries.setdefault(es, []).append(ids_)
            for es, cols in by_entries.items():
                self._apply("peer", dir_no, rows, np.unique(np.concatenate(cols)), ((), es))
            if block_classes:
                # The entries of (local, class) keys do not depend on the class.
                # Egress named ports towards a block resolve per destination
                # identity j: the (local, j) cell, for the block's classes only.
                es = tuple(sorted(e + (rid,) for _, e in _port_entries(rule, direction, lrep, 0, block_classes[0],
                                                                       idents, [], named_ports_of)))
                self._apply("block", dir_no, rows, block_classes, ((), es))
                for rep, ids_ in alike:
                    jes = _named_entries(rule, rep, rid, named_ports_of)
                    if jes:
                        self._apply("peer", dir_no, rows, ids_, (tuple(block_classes), jes))

    def install_into(self, entries: dict) -> dict:
        """Adds each state in use as its rule keys, renumbered densely from 1 (the
        C key space stays small); returns the matrices."""
        used = sorted(set().union(*(np.unique(m).tolist() for m in self.m.values())) - {0})
        remap = np.zeros(len(self.contents), dtype=np.uint32)
        remap[used] = np.arange(1, len(used) + 1, dtype=np.uint32)
        for (kind, dir_no), m in self.m.items():
            self.m[(kind, dir_no)] = m = remap[m]
        dirs_of: dict = {}
        for (_, dir_no), m in self.m.items():
            for s in np.unique(m).tolist():
                dirs_of.setdefault(s, set()).add(dir_no)
        for old in used:
            s = int(remap[old])
            for dir_no in dirs_of.get(s, ()):
                for c, es in self.contents[old]:
                    entries[(0, dir_no, s, c)] = list(es)
        return self.m


def _alike(on_net: list, named_sig) -> list:
    """[(representative, identity ids)] of a network's identities alike in named
    ports, those that have any."""
    groups: dict = {}
    for j in on_net:
        if j.named_ports:
            groups.setdefault(int(named_sig[j.id]), []).append(j)
    return [(g[0], np.array([j.id for j in g], dtype=np.int64)) for g in groups.values()]


def _named_entries(rule, ident, rid: int, named_ports_of) -> tuple:
    """The entries an egress rule's named ports give towards `ident`."""
    out = []
    for p in rule.ports or ():
        if isinstance(p.port, str):
            proto = K.PROTO_NUMBERS[p.protocol]
            out += [(proto, port, port, rid) for port in named_ports_of(ident, p.port, p.protocol)]
    return tuple(sorted(out))




def _reduce(entries) -> tuple:
    """(proto, lo, hi, rule id) entries as disjoint segments per protocol carrying
    the smallest rule id that covers them, adjacent equal ones merged."""
    out = []
    by_proto: dict = {}
    for proto, lo, hi, rid in entries:
        by_proto.setdefault(proto, []).append((lo, hi, rid))
    for proto, spans in sorted(by_proto.items()):
        cuts = sorted({lo for lo, _, _ in spans} | {hi + 1 for _, hi, _ in spans})
        prev = None
        for a, b in zip(cuts, cuts[1:]):
            rid = min((r for lo, hi, r in spans if lo <= a and b - 1 <= hi), default=None)
            if rid is None:
                prev = None
                continue
            if prev is not None and prev[3] == rid and prev[2] == a - 1:
                prev = (proto, prev[1], b - 1, rid)
                out[-1] = prev
            else:
                prev = (proto, a, b - 1, rid)
                out.append(prev)
    return tuple(out)


def _add(segs: tuple, es: tuple) -> tuple:
    """Reduced segments with one rule's entries added. Rules come in rule id order,
    so a new rule only fills the ports no earlier (smaller) rule id covers: a linear
    merge. Anything else takes the general _reduce."""
    rids = {e[3] for e in es}
    if len(rids) != 1 or (segs and max(s[3] for s in segs) > next(iter(rids))):
        return _reduce(segs + es)
    rid = next(iter(rids))
    out = list(segs)
    for proto in sorted({e[0] for e in es}):
        covered = sorted((lo, hi) for p, lo, hi, _ in segs if p == proto)
        for lo, hi in _union(sorted((e[1], e[2]) for e in es if e[0] == proto)):
            at = lo
            for clo, chi in covered:
                if chi < at or clo > hi:
                    continue
                if clo > at:
                    out.append((proto, at, clo - 1, rid))
                at = max(at, chi + 1)
                if at > hi:
                    break
            if at <= hi:
                out.append((proto, at, hi, rid))
    out.sort()
    merged: list = []
    for e in out:
        if merged and merged[-1][0] == e[0] and merged[-1][3] == e[3] and merged[-1][2] + 1 == e[1]:
            merged[-1] = (e[0], merged[-1][1], e[2], e[3])
        else:
            merged.append(e)
    return tuple(merged)


def _union(spans: list) -> list:
    out: list = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
