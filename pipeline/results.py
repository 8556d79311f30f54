"""One packet's fate: what the fast path and the oracle both produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Reasons decided before the packet's tuple is trustworthy: for these only the
# verdict and the reason are compared between implementations.
SANITY_REASONS = frozenset({
    "arp", "truncated_ethernet", "unsupported_ethertype", "truncated_ip", "bad_ip_version",
    "bad_ip_header_length", "bad_ip_total_length", "bad_ip_checksum", "bad_ipv6_extension",
    "unsupported_protocol", "truncated_l4", "bad_l4_header"})


@dataclass(frozen=True)
class Result:
    """One packet's fate, comparable with the oracle's."""

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


    def comparable(self) -> tuple:
        if self.reason in SANITY_REASONS:
            return (self.verdict, self.reason)
        return (self.verdict, self.reason, self.out_port, self.ct_state, self.egress_rule,
                self.ingress_rule, self.family, self.proto, self.src, self.dst, self.sport, self.dport)
