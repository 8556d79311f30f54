"""Packet results for people (one line) and programs (a JSON object)."""

from __future__ import annotations

from .compiler import Compiled
from .results import Result

PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}


class PacketRenderer:
    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.rule_by_id = {v: k for k, v in compiled.rules.items()}

    def port_name(self, port: int) -> str:
        if port == 0:
            return "uplink"
        pod = self.compiled.pods_by_port.get(port)
        return pod.key if pod else f"port {port}"

    def rule(self, rule_id):
        if rule_id is None:
            return None
        policy, direction, index = self.rule_by_id[rule_id]
        return {"policy": policy, "direction": direction, "index": index, "id": rule_id}

    def rule_text(self, rule_id) -> str:
        r = self.rule(rule_id)
        return f"{r['policy']} {r['direction'].lower()}[{r['index']}]" if r else "-"

    def tuple_text(self, r: Result) -> str:
        if not r.family:
            return ""
        proto = PROTOCOLS.get(r.proto, str(r.proto))
        if r.proto in (1, 58) or (r.sport == 0 and r.dport == 0):
            # ICMP has an identifier, not ports; errors and later fragments have neither.
            ident = f" id {r.sport}" if r.proto in (1, 58) and r.sport else ""
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
        return f"{head}{rules}  {self.tuple_text(r)}".rstrip()

    def line(self, rp) -> str:
        src = "?" if rp.in_port == 0xFFFF else self.port_name(rp.in_port)
        return f"{rp.index:>6}  from {src:<16} {self.describe(rp.result)}"

    def to_dict(self, rp) -> dict:
        r = rp.result
        return {"index": rp.index, "in_port": None if rp.in_port == 0xFFFF else rp.in_port,
                "from": None if rp.in_port == 0xFFFF else self.port_name(rp.in_port),
                "verdict": r.verdict, "reason": r.reason,
                "out_port": r.out_port if r.verdict == "forward" else None,
                "to": self.port_name(r.out_port) if r.verdict == "forward" else None,
                "ct_state": r.ct_state, "egress_rule": self.rule(r.egress_rule),
                "ingress_rule": self.rule(r.ingress_rule), "family": r.family or None,
                "protocol": PROTOCOLS.get(r.proto, r.proto) if r.family else None,
                "src": r.src, "dst": r.dst, "sport": r.sport, "dport": r.dport,
                **({"oracle_agrees": rp.agrees} if rp.oracle is not None else {})}
