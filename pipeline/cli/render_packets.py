"""Packet results for people: one line per packet (`netsem replay`)."""

from __future__ import annotations

from ..dataplane.constants import (ICMP, ICMPV6, PORT_UNKNOWN, PORT_UPLINK, REWRITE_DST, REWRITE_SRC, SCTP,
                                   TCP, UDP)
from ..dataplane.results import Result

PROTOCOLS = {TCP: "TCP", UDP: "UDP", SCTP: "SCTP", ICMP: "ICMP", ICMPV6: "ICMPv6"}


class PacketRenderer:
    def __init__(self, compiled):
        self.compiled = compiled
        self.rule_by_id = {v: k for k, v in compiled.rules.items()}

    def port_name(self, port: int) -> str:
        if port == PORT_UPLINK:
            return "uplink"
        if port == PORT_UNKNOWN:
            return "?"
        a = self.compiled.attachments.get(port)
        return str(a) if a else f"port {port}"

    def rule_text(self, rule_id) -> str:
        if rule_id is None:
            return "-"
        policy, direction, index = self.rule_by_id[rule_id]
        return f"{policy} {direction.lower()}[{index}]"

    def tuple_text(self, r: Result) -> str:
        if not r.family:
            return ""
        proto = PROTOCOLS.get(r.proto, str(r.proto))
        if r.proto in (ICMP, ICMPV6) or (r.sport == 0 and r.dport == 0):
            # ICMP has an identifier, not ports; errors and later fragments have neither.
            ident = f" id {r.sport}" if r.proto in (ICMP, ICMPV6) and r.sport else ""
            return f"{proto} {r.src} -> {r.dst}{ident}"
        if r.family == 6:
            return f"{proto} [{r.src}]:{r.sport} -> [{r.dst}]:{r.dport}"
        return f"{proto} {r.src}:{r.sport} -> {r.dst}:{r.dport}"

    def describe(self, r: Result) -> str:
        if r.verdict == "forward":
            head = f"forward -> {self.port_name(r.out_port)} ({r.reason})"
        else:
            head = f"{r.verdict} {r.reason}"
        rules = ""
        if r.egress_rule is not None or r.ingress_rule is not None:
            rules = f"  egress: {self.rule_text(r.egress_rule)}  ingress: {self.rule_text(r.ingress_rule)}"
        xlated = {REWRITE_SRC: "  (source translated)", REWRITE_DST: "  (destination translated)"}.get(r.rewrite, "")
        return f"{head}{rules}  {self.tuple_text(r)}{xlated}".rstrip()

    def line(self, rp) -> str:
        return f"{rp.index:>6}  from {self.port_name(rp.in_port):<16} {self.describe(rp.result)}"
