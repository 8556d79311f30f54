"""Flow records: one JSON object per connection event or packet, in Hubble's flow
vocabulary (cilium/cilium api/v1/flow: verdict, drop_reason_desc, IP, l4, source,
destination, traffic_direction, is_reply, *_allowed_by, *_denied_by), plus a
`netsem` object with what Hubble has no field for (the exact reason, ports, the
event, the translation).

`netsem up --flows` writes one per event out of the pipeline's ring (new, denied,
closed, expired, revoked connections, and every other drop); `netsem replay -o
jsonl` one per packet, in the same shape."""

from __future__ import annotations

import datetime
from typing import Optional

from ..model.addresses import Attachment, NodeAddress, ServiceVIP
from ..model.policy import EGRESS, INGRESS, MULTI, policies_selecting
from . import constants as K

DROP_REASON_DESC = {
    "truncated_ethernet": "INVALID_PACKET_DROPPED", "truncated_ip": "INVALID_PACKET_DROPPED",
    "bad_ip_version": "INVALID_PACKET_DROPPED", "bad_ip_header_length": "INVALID_PACKET_DROPPED",
    "bad_ip_total_length": "INVALID_PACKET_DROPPED", "bad_ip_checksum": "INVALID_PACKET_DROPPED",
    "truncated_l4": "INVALID_PACKET_DROPPED", "bad_l4_header": "INVALID_PACKET_DROPPED",
    "bad_offload": "INVALID_PACKET_DROPPED",
    "v4_mapped_address": "INVALID_PACKET_DROPPED",
    "unsupported_ethertype": "UNSUPPORTED_L3_PROTOCOL",
    "bad_ipv6_extension": "INVALID_IPV6_EXTENSION_HEADER",
    "unsupported_protocol": "UNKNOWN_L4_PROTOCOL",
    "bad_source_address": "INVALID_SOURCE_IP", "spoofed_source": "INVALID_SOURCE_IP",
    "bad_destination_address": "UNKNOWN_L3_TARGET_ADDRESS",
    "no_route": "STALE_OR_UNROUTABLE_IP",
    "fragment_unknown": "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND",
    "fragment_table_full": "IP_FRAGMENTATION_NOT_SUPPORTED",
    "no_connection": "UNKNOWN_CONNECTION_TRACKING_STATE",
    "icmp_error_no_connection": "UNKNOWN_CONNECTION_TRACKING_STATE",
    "icmp_error_misdirected": "UNKNOWN_CONNECTION_TRACKING_STATE",
    "connection_closed": "UNKNOWN_CONNECTION_TRACKING_STATE",
    "denied_egress": "POLICY_DENIED", "denied_ingress": "POLICY_DENIED",
    "denied_admin_egress": "POLICY_DENIED", "denied_admin_ingress": "POLICY_DENIED",
    "denied_baseline_egress": "POLICY_DENIED", "denied_baseline_ingress": "POLICY_DENIED",
    "conntrack_full": "CT_MAP_INSERTION_FAILED", "conntrack_clash": "CT_MAP_INSERTION_FAILED",
    "conntrack_pod_limit": "CT_MAP_INSERTION_FAILED",
    "service_port_unknown": "SERVICE_BACKEND_NOT_FOUND", "service_no_backend": "SERVICE_BACKEND_NOT_FOUND",
    "snat_ports_exhausted": "SNAT_NO_MAP_FOUND", "pod_address_not_routed": "STALE_OR_UNROUTABLE_IP",
}
CLUSTER_WIDE = ("ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
VERDICTS = {"forward": "FORWARDED", "drop": "DROPPED", "local": "REDIRECTED"}
TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))


def rfc3339(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


class FlowBuilder:
    """Builds flow records against one compiled cluster (the tables in force)."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.cluster = compiled.cluster
        self.domains = {z: d for d, z in compiled.endpoints.zones.items()}
        self.rule_by_id = {v: k for k, v in compiled.rules.items()}

    # -- pieces --------------------------------------------------------------------
    def port_name(self, port: Optional[int]) -> Optional[str]:
        if port is None or port == K.PORT_UNKNOWN:
            return None
        if port == K.PORT_UPLINK:
            return "uplink"
        a = self.compiled.attachments.get(port)
        return str(a) if a else f"port {port}"

    def entry(self, zone: int, address):
        return self.cluster.plane.lookup(self.domains.get(zone, "cluster"), address)

    def endpoint(self, entry) -> dict:
        if isinstance(entry, Attachment):
            pod = self.cluster.pods.get(entry.pod)
            labels = sorted(f"k8s:{k}={v}" for k, v in (pod.labels if pod else {}).items())
            ns, name = entry.pod.split("/", 1)
            return {"namespace": ns, "pod_name": name,
                    "labels": labels + [f"k8s:io.kubernetes.pod.namespace={ns}"],
                    "identity": self.compiled.identity_on.get((entry.pod, entry.network), 0)}
        if isinstance(entry, NodeAddress):
            return {"labels": ["reserved:host"], "node_name": entry.node}
        if isinstance(entry, ServiceVIP):
            return {"labels": ["reserved:world"]}
        return {"labels": ["reserved:world"]}

    def rule(self, rule_id: Optional[int]) -> list:
        if rule_id is None:
            return []
        policy, direction, index = self.rule_by_id[rule_id]
        kind = "NetworkPolicy"
        if policy.startswith(MULTI):
            kind, policy = "MultiNetworkPolicy", policy[len(MULTI):]
        ns, name = policy.split("/", 1)
        if ns in CLUSTER_WIDE:          # cluster-wide: Kind/name, no namespace
            return [{"kind": ns, "name": name, "rule": f"{direction.lower()}[{index}]"}]
        return [{"kind": kind, "namespace": ns, "name": name, "rule": f"{direction.lower()}[{index}]"}]

    def isolating(self, entry, direction: str) -> list:
        """The policies that isolate a pod for `direction` (what a default deny names)."""
        if not isinstance(entry, Attachment) or entry.pod not in self.cluster.pods:
            return []
        out = []
        for pol in policies_selecting(self.cluster, self.cluster.pods[entry.pod], direction, entry.network):
            out.append({"kind": type(pol).__name__, "namespace": pol.namespace, "name": pol.name})
        return out

    @staticmethod
    def l4(proto: int, family: int, sport: int, dport: int, tcp_flags: Optional[int]) -> dict:
        if proto == K.TCP:
            d = {"source_port": sport, "destination_port": dport}
            if tcp_flags is not None:
                d["flags"] = {name: True for name, bit in TCP_FLAGS if tcp_flags & bit}
            return {"TCP": d}
        if proto == K.UDP:
            return {"UDP": {"source_port": sport, "destination_port": dport}}
        if proto == K.SCTP:
            return {"SCTP": {"source_port": sport, "destination_port": dport}}
        if proto in (K.ICMP, K.ICMPV6):
            return {"ICMPv4" if family == 4 else "ICMPv6": {"identifier": sport}}
        return {}

    # -- records -------------------------------------------------------------------
    def record(self, *, time_ns: int, verdict: str, reason: Optional[str], event: str, zone: int,
               family: int, proto: int, src, dst, sport: int, dport: int, tcp_flags, in_port,
               out_port, egress_rule, ingress_rule, is_reply: bool = False, xdst=None, xport: int = 0,
               xsrc=None, xsport: int = 0, extra: Optional[dict] = None) -> dict:
        rec: dict = {"time": rfc3339(time_ns), "verdict": VERDICTS.get(verdict, verdict), "Type": "L3_L4"}
        if verdict == "drop" and reason:
            rec["drop_reason_desc"] = DROP_REASON_DESC.get(reason, "DROP_REASON_UNKNOWN")
        s = d = None
        if family:
            rec["IP"] = {"source": str(src), "destination": str(dst),
                         "ipVersion": "IPv4" if family == 4 else "IPv6"}
            rec["l4"] = self.l4(proto, family, sport, dport, tcp_flags)
            s, d = self.entry(zone, src), self.entry(zone, dst)
            rec["source"], rec["destination"] = self.endpoint(s), self.endpoint(d)
            if isinstance(d, ServiceVIP):
                ns, name = d.service.split("/", 1)
                rec["destination_service"] = {"namespace": ns, "name": name}
        denied = reason is not None and reason.startswith("denied_")
        ingress_side = (denied and reason.endswith("_ingress")) or \
            (not isinstance(s, Attachment) and isinstance(d, Attachment))
        rec["traffic_direction"] = "INGRESS" if ingress_side else "EGRESS"
        rec["is_reply"] = is_reply
        if egress_rule is not None:
            rec["egress_allowed_by"] = self.rule(egress_rule)
        if ingress_rule is not None:
            rec["ingress_allowed_by"] = self.rule(ingress_rule)
        if reason == "denied_egress":
            rec["egress_denied_by"] = self.isolating(s, EGRESS)
        elif reason == "denied_ingress":
            rec["ingress_denied_by"] = self.isolating(d, INGRESS)
        elif denied and reason.startswith(("denied_admin_", "denied_baseline_")):
            # A tier's Deny rule (the C tables say which tier; `netsem verdict` which rule).
            rec[f"{'ingress' if ingress_side else 'egress'}_denied_by"] = [{"tier": reason.split("_")[1]}]
        ns_part = {"event": event, "reason": reason, "zone": zone,
                   "in_port": self.port_name(in_port), "out_port": self.port_name(out_port)}
        if xdst is not None:
            ns_part["translated_destination"] = {"address": str(xdst), "port": xport}
        if xsrc is not None:
            ns_part["translated_source"] = {"address": str(xsrc), "port": xsport}
        if extra:
            ns_part.update(extra)
        rec["netsem"] = ns_part
        return rec

    def from_event(self, ev, wall_offset_ns: int = 0) -> dict:
        """A record for an Event out of the pipeline's ring; wall_offset_ns turns the
        pipeline's clock into the wall clock."""
        verdict = "drop" if ev.type in ("denied", "dropped") else "forward"
        return self.record(time_ns=ev.time_ns + wall_offset_ns, verdict=verdict, reason=ev.reason,
                           event=ev.type, zone=ev.zone, family=ev.family, proto=ev.proto, src=ev.src,
                           dst=ev.dst, sport=ev.sport, dport=ev.dport,
                           tcp_flags=ev.tcp_flags if ev.proto == K.TCP else None,
                           in_port=ev.in_port, out_port=ev.out_port if ev.type == "new" else None,
                           egress_rule=ev.egress_rule, ingress_rule=ev.ingress_rule,
                           xdst=ev.xdst, xport=ev.xport, xsrc=ev.xsrc, xsport=ev.xsport)

    def from_result(self, r, in_port: int, time_ns: int, extra: Optional[dict] = None) -> dict:
        """A record for one packet's Result (replay): the packet as it leaves, its
        addresses and ports translated; netsem.translated_destination/_source say
        which side a translation rewrote (the service mapper's DNAT, masquerade or
        hairpin SNAT, or their reversal on a reply), and to what."""
        xlated = {}
        if r.rewrite & K.REWRITE_DST:
            xlated["translated_destination"] = {"address": r.dst, "port": r.dport}
        if r.rewrite & K.REWRITE_SRC:
            xlated["translated_source"] = {"address": r.src, "port": r.sport}
        event = {"new": "new", "drop": "denied" if r.reason.startswith("denied_")
                 else "dropped"}.get(r.ct_state if r.verdict == "forward" else r.verdict, "packet")
        return self.record(time_ns=time_ns, verdict=r.verdict, reason=r.reason, event=event, zone=r.zone,
                           family=r.family, proto=r.proto, src=r.src, dst=r.dst, sport=r.sport,
                           dport=r.dport, tcp_flags=None, in_port=in_port,
                           out_port=r.out_port if r.verdict == "forward" else None,
                           egress_rule=r.egress_rule, ingress_rule=r.ingress_rule,
                           is_reply=r.ct_state == "reply",
                           extra={"ct_state": r.ct_state, "rewrite": r.rewrite, **xlated, **(extra or {})})
