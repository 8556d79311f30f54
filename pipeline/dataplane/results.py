"""One packet's fate, and one event out of the pipeline: what the fast path and the
oracle both produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .constants import PARSE_REASONS


@dataclass(frozen=True)
class Result:
    """One packet's fate, comparable with the oracle's. The tuple is the packet's as
    it leaves the pipeline: after the translation `rewrite` names (REWRITE_* bits)."""

    verdict: str                   # forward | drop | local
    reason: str
    out_port: int
    ct_state: str
    egress_rule: Optional[int]
    ingress_rule: Optional[int]
    family: int
    proto: int
    src: Optional[str]
    dst: Optional[str]
    sport: int
    dport: int
    zone: int = 0
    rewrite: int = 0

    def comparable(self) -> tuple:
        if self.reason in PARSE_REASONS:
            return (self.verdict, self.reason)
        return (self.verdict, self.reason, self.out_port, self.ct_state, self.egress_rule,
                self.ingress_rule, self.family, self.proto, self.src, self.dst, self.sport,
                self.dport, self.zone, self.rewrite)


@dataclass(frozen=True)
class Event:
    """A connection event (new, closed, expired, revoked) or a dropped packet (denied,
    dropped), as the pipeline reported it."""

    type: str                      # new | denied | dropped | closed | expired | revoked
    time_ns: int
    reason: Optional[str]          # the packet's reason; None for connection events
    in_port: int
    out_port: int
    zone: int
    family: int
    proto: int
    src: str
    dst: str
    sport: int
    dport: int
    tcp_flags: int
    egress_rule: Optional[int]
    ingress_rule: Optional[int]
    xdst: Optional[str] = None     # the translated destination, when there is one
    xport: int = 0
    generation: int = 0            # the table set that decided (Datapath.compiled_at)
    xsrc: Optional[str] = None     # the translated source (masquerade, hairpin), when there is one
    xsport: int = 0
