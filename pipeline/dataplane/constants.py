"""Every constant the C pipeline defines, read from it through cffi (native/netsem.h
and native/reasons.h are the single source): ports, protocol numbers, endpoint kinds,
reasons with their verdicts and stages, conntrack states, event types."""

from __future__ import annotations

from .._native import ffi, lib

PORT_UPLINK = lib.NS_PORT_UPLINK
PORT_UNKNOWN = lib.NS_PORT_UNKNOWN
RULE_NONE = lib.NS_RULE_NONE
ZONE_DEFAULT = lib.NS_ZONE_DEFAULT
FRAME_MAX = lib.NS_FRAME_MAX

ICMP, TCP, UDP, ICMPV6, SCTP = (lib.NS_PROTO_ICMP, lib.NS_PROTO_TCP, lib.NS_PROTO_UDP,
                                lib.NS_PROTO_ICMPV6, lib.NS_PROTO_SCTP)
PROTO_NUMBERS = {"TCP": TCP, "UDP": UDP, "SCTP": SCTP}
PROTO_NAMES = {TCP: "TCP", UDP: "UDP", SCTP: "SCTP", ICMP: "ICMP", ICMPV6: "ICMP"}

EP_POD, EP_SERVICE, EP_NODE = lib.NS_EP_POD, lib.NS_EP_SERVICE, lib.NS_EP_NODE
REWRITE_SRC, REWRITE_DST = lib.NS_REWRITE_SRC, lib.NS_REWRITE_DST
FLOW_HASH_SEED = lib.NS_FLOW_HASH_SEED
AFF_HASH_SEED, AFF_PROBE = lib.NS_AFF_HASH_SEED, lib.NS_AFF_PROBE

VERDICTS = {lib.NS_FORWARD: "forward", lib.NS_DROP: "drop", lib.NS_LOCAL: "local"}
CT_STATES = {lib.NS_CT_NONE: "none", lib.NS_CT_NEW: "new", lib.NS_CT_ESTABLISHED: "established",
             lib.NS_CT_REPLY: "reply", lib.NS_CT_RELATED: "related"}

REASONS = [ffi.string(lib.ns_reason_name(i)).decode() for i in range(lib.ns_reason_count())]
REASON_VERDICT = {REASONS[i]: VERDICTS[lib.ns_reason_verdict(i)] for i in range(len(REASONS))}
REASON_STAGE = {REASONS[i]: ffi.string(lib.ns_reason_stage(i)).decode() for i in range(len(REASONS))}
FORWARD_REASONS = frozenset(r for r, v in REASON_VERDICT.items() if v == "forward")
LOCAL_REASONS = frozenset(r for r, v in REASON_VERDICT.items() if v == "local")
# Decided before the packet's tuple can be trusted: only verdict and reason compare.
PARSE_REASONS = frozenset(r for r, s in REASON_STAGE.items() if s == "parse")

EVENT_TYPES = {lib.NS_EV_NEW: "new", lib.NS_EV_DENIED: "denied", lib.NS_EV_DROP: "dropped",
               lib.NS_EV_CLOSED: "closed", lib.NS_EV_EXPIRED: "expired", lib.NS_EV_REVOKED: "revoked"}

# Conntrack state numbers (native/conntrack.h enum ct_state_num) by name.
CT_STATE_NAMES = {i: ffi.string(lib.ns_ct_state_name(i)).decode() for i in range(1, lib.ns_ct_state_count())}
CT_STATE = {name: i for i, name in CT_STATE_NAMES.items()}
