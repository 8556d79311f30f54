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
        self.focus = None                        # a delta's new identity ids (numpy), or None
        self.used: dict = {}                     # dir -> states in that direction's matrices
        self.row_masks = None                    # a policy delta's rows to compute, per dir
        self.head = [self]                       # shared along a chain of deltas: its newest

    def copy(self, focus=frozenset()) -> "PeerStates":
        """The states to continue from (a delta), which only touches cells in the
        rows and columns of the new identities `focus`: the others already hold
        every rule. Those rows and columns are unused in this generation (no
        endpoint carries a new id), so the newest generation's matrices are taken
        over, not copied (tens of MB at 10,000 pods), with the focus cleared first
        (a delta that failed may have written there). Other state is append-only.
        A delta from an older generation copies."""
        c = PeerStates(self.dim, self.classes)
        c.contents, c.state_of, c.trans, c.symbols = self.contents, self.state_of, self.trans, self.symbols
        c.focus = np.array(sorted(focus), dtype=np.int64)
        if self.head[0] is self:
            c.m = self.m
        else:
            c.m = {k: v.copy() for k, v in self.m.items()}
            c.contents, c.state_of = list(self.contents), dict(self.state_of)
            c.trans, c.symbols = dict(self.trans), dict(self.symbols)
        c.head = self.head
        c.head[0] = c
        for (kind, _), m in c.m.items():
            m[c.focus] = 0
            if kind == "peer":
                m[:, c.focus] = 0
        c.in_focus = np.zeros(self.dim, dtype=bool)
        c.in_focus[c.focus] = True
        c.used = {d: set(u) for d, u in self.used.items()}
        return c

    def renumbered(self, remap: dict, rows: dict) -> "PeerStates":
        """The states to continue from after policies came, went or changed (a
        delta, compiler/delta.py): rule ids moved by `remap` (old id -> new id,
        monotone, so a segment's smallest id stays its smallest; ids not in it were
        the changed policies'), and the rows `rows` ({dir: identity ids}) cleared, to
        be computed again from every rule; no other cell holds a changed policy's
        rule. States keep their numbers."""
        c = PeerStates(self.dim, self.classes)
        c.m = {k: v.copy() for k, v in self.m.items()}
        c.contents = [tuple((cl, segs) for cl, segs in
                            ((cl, tuple((p, lo, hi, remap[r]) for p, lo, hi, r in segs if r in remap))
                             for cl, segs in content) if segs)
                      for content in self.contents]
        c.state_of = {}
        for i, content in enumerate(c.contents):
            c.state_of.setdefault(content, i)
        c.used = {d: set(u) for d, u in self.used.items()}
        c.row_masks = {}
        for d, ids in rows.items():
            mask = c.row_masks[d] = np.zeros(self.dim, dtype=bool)
            mask[np.asarray(sorted(ids), dtype=np.int64)] = True
        for (kind, d), m in c.m.items():
            if d in c.row_masks:
                m[c.row_masks[d]] = 0
        return c

    def touches(self, rows, cols, dir_no: int = None) -> bool:
        """Whether a rule over these locals and peers reaches a cell of the focus."""
        if self.row_masks is not None:
            mask = self.row_masks.get(dir_no)
            return mask is not None and bool(mask[np.asarray(rows, dtype=np.int64)].any())
        return self.focus is None or bool(self.in_focus[np.asarray(rows, dtype=np.int64)].any() or
                                          self.in_focus[np.asarray(cols, dtype=np.int64)].any())

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
        if self.row_masks is not None:
            # A policy delta: only the rows being computed again.
            rows = np.asarray(rows)
            mask = self.row_masks.get(dir_no)
            r = rows[mask[rows]] if mask is not None else rows[:0]
            if len(r) and len(cols):
                self._cells(kind, dir_no, r, cols, entries)
            return
        if self.focus is not None:
            # A delta: the focus rows whole, and the other rows' focus columns (the
            # block matrices' columns are address classes: rows only).
            rows, cols = np.asarray(rows), np.asarray(cols)
            inside = self.in_focus[rows]
            parts = [(rows[inside], cols)]
            if kind == "peer":
                parts.append((rows[~inside], cols[self.in_focus[cols]]))
            for r, c in parts:
                if len(r) and len(c):
                    self._cells(kind, dir_no, r, c, entries)
            return
        self._cells(kind, dir_no, rows, cols, entries)

    def _cells(self, kind: str, dir_no: int, rows, cols, entries: tuple) -> None:
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
        if not expand and not (block_classes and named) and \
                not self.touches([i.id for i in selected], sel_peers, dir_no):
            return                  # a delta that this rule does not reach
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
        """Adds each state in use in a direction's matrices as its rule keys (0, dir,
        state, class); returns the matrices. States keep their numbers (keys are
        hashed, so unused numbers cost nothing, and a delta's states stay valid)."""
        n = len(self.contents)
        for dir_no in sorted({d for _, d in self.m}):
            before = self.used.get(dir_no, set())
            used = self.used[dir_no] = set(before)
            for (kind, d), m in self.m.items():
                if d != dir_no:
                    continue
                if self.row_masks is not None:
                    if dir_no in self.row_masks:
                        used.update(np.unique(m[self.row_masks[dir_no]]).tolist())
                elif self.focus is None:
                    used.update(np.flatnonzero(np.bincount(m.ravel(), minlength=n)).tolist())
                else:
                    # A delta wrote only the focus rows and columns; states it left
                    # unused elsewhere keep their keys (harmless, gone at a full compile).
                    used.update(np.unique(m[self.focus]).tolist())
                    if kind == "peer":
                        used.update(np.unique(m[:, self.focus]).tolist())
            for s in used - before:
                for c, es in self.contents[s] if s else ():
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
