"""The egress and ingress policy filters (native/policy.c): the model's own
primitive decides (openConnectionWithIpAddresses), so the oracle cannot drift from
the model; this only turns its answer into the pipeline's reason and rule ids."""

from __future__ import annotations

from ...model.connections import Connections, open_connection_with_ip_addresses, routes_from_outside

__all__ = ["decide", "routes_from_outside"]
from ..constants import PROTO_NAMES


def decide(cluster, domain: str, src, dst, proto: int, dport: int):
    """(drop reason or None, egress rule id, ingress rule id) for a new connection."""
    name = PROTO_NAMES.get(proto, "ICMP")
    port = 0 if name == "ICMP" else dport
    v = open_connection_with_ip_addresses(cluster, Connections(), src, dst, name, port, domain, domain)
    egress, ingress = v.rule_ids()
    if v.allowed:
        return None, egress, ingress
    if v.apart:
        return "network_unreachable", None, None
    if v.egress is not None and not v.egress.allowed:
        return _denied(v.egress.tier, "egress"), None, None
    if v.ingress is not None and not v.ingress.allowed:
        return _denied(v.ingress.tier, "ingress"), egress, None
    # Neither end is a pod's interface: not a connection of the cluster.
    return "no_route", None, None


def _denied(tier: str, direction: str) -> str:
    """The drop reason of the tier that denied (reasons.h)."""
    return f"denied_{tier}_{direction}" if tier in ("admin", "baseline") else f"denied_{direction}"
