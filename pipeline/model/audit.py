"""What a change of the cluster changed in what is allowed: the reachability matrices
before and after, cell by cell, for the ports the pods declare (or those asked for).

A pair present on one side only (a pod came or went) counts as not allowed on the
other side: a pod that appears gains the pairs it is allowed, one that goes loses
them (a pod's pair with itself is always allowed and never reported). That is what a platform engineer asks after an apply: "which connections does
this open, which does it break?"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .cluster import Cluster
from .reach import Matrix, ReachComputer, declared_ports


@dataclass
class ReachChange:
    protocol: str
    port: int
    gained: list = field(default_factory=list)      # (from pod, to pod)
    lost: list = field(default_factory=list)


class ReachAudit:
    """The matrices of the cluster last seen, to compare the next one with."""

    def __init__(self, ports: Optional[list[tuple[str, int]]] = None, protocols=None):
        self.fixed = ports
        self.protocols = protocols
        self.matrices: dict[tuple[str, int], Matrix] = {}

    def combos(self, cluster: Cluster) -> list[tuple[str, int]]:
        return list(self.fixed) if self.fixed else declared_ports(cluster, self.protocols)

    def observe(self, cluster: Cluster) -> list[ReachChange]:
        """The changes from the cluster observed last (none the first time), in
        (protocol, port) order; then this cluster is the one observed last."""
        combos = self.combos(cluster)
        computer = ReachComputer(cluster)
        now = {c: computer.matrix(*c) for c in combos}
        changes = []
        if self.matrices:
            for c in sorted(set(now) | set(self.matrices)):
                ch = diff(self.matrices.get(c), now.get(c), *c)
                if ch.gained or ch.lost:
                    changes.append(ch)
        self.matrices = now
        return changes


def diff(before: Optional[Matrix], after: Optional[Matrix], protocol: str, port: int) -> ReachChange:
    ch = ReachChange(protocol, port)
    b_idx = {p.key: i for i, p in enumerate(before.pods)} if before else {}
    a_idx = {p.key: i for i, p in enumerate(after.pods)} if after else {}
    common = sorted(set(b_idx) & set(a_idx))
    if common:
        bi = np.array([b_idx[k] for k in common])
        ai = np.array([a_idx[k] for k in common])
        b = before.allowed[np.ix_(bi, bi)]
        a = after.allowed[np.ix_(ai, ai)]
        ch.gained += [(common[i], common[j]) for i, j in np.argwhere(a & ~b)]
        ch.lost += [(common[i], common[j]) for i, j in np.argwhere(b & ~a)]
    for m, idx, other, out in ((after, a_idx, b_idx, ch.gained), (before, b_idx, a_idx, ch.lost)):
        only = [i for k, i in idx.items() if k not in other]
        if not only or m is None:
            continue
        keys = [p.key for p in m.pods]
        mark = np.zeros(len(keys), dtype=bool)
        mark[only] = True
        touched = m.allowed & (mark[:, None] | mark[None, :])
        out += [(keys[i], keys[j]) for i, j in np.argwhere(touched)]
    # A pod reaching itself is never policed (its own address): no news either way.
    ch.gained = sorted(p for p in ch.gained if p[0] != p[1])
    ch.lost = sorted(p for p in ch.lost if p[0] != p[1])
    return ch
