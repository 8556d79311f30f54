/* Every per-packet outcome (forward, local and drop reasons), declared once.
 * The X-macro generates the enum below and the name/verdict/stage tables in
 * pipeline_state.c; Python reads them through ns_reason_name(), ns_reason_verdict()
 * and ns_reason_stage(). The order is the public numbering: do not reorder, only
 * append. The stage is where the reason is decided; "parse" reasons are decided
 * before the packet's tuple can be trusted. */
#ifndef NS_REASONS_H
#define NS_REASONS_H

#define NS_REASONS(_)                                                                 \
    /* forward */                                                                     \
    _(ESTABLISHED,             "established",             NS_FORWARD, "conntrack")    \
    _(REPLY,                   "reply",                   NS_FORWARD, "conntrack")    \
    _(NEW,                     "new",                     NS_FORWARD, "commit")       \
    _(RELATED,                 "related",                 NS_FORWARD, "conntrack")    \
    _(FRAGMENT,                "fragment",                NS_FORWARD, "fragment")     \
    /* local (handed to the control plane) */                                         \
    _(ARP,                     "arp",                     NS_LOCAL,   "parse")        \
    _(NEIGHBOR_DISCOVERY,      "neighbor_discovery",      NS_LOCAL,   "sanity")       \
    /* drops */                                                                       \
    _(TRUNCATED_ETHERNET,      "truncated_ethernet",      NS_DROP,    "parse")        \
    _(UNSUPPORTED_ETHERTYPE,   "unsupported_ethertype",   NS_DROP,    "parse")        \
    _(TRUNCATED_IP,            "truncated_ip",            NS_DROP,    "parse")        \
    _(BAD_IP_VERSION,          "bad_ip_version",          NS_DROP,    "parse")        \
    _(BAD_IP_HEADER_LENGTH,    "bad_ip_header_length",    NS_DROP,    "parse")        \
    _(BAD_IP_TOTAL_LENGTH,     "bad_ip_total_length",     NS_DROP,    "parse")        \
    _(BAD_IP_CHECKSUM,         "bad_ip_checksum",         NS_DROP,    "parse")        \
    _(BAD_IPV6_EXTENSION,      "bad_ipv6_extension",      NS_DROP,    "parse")        \
    _(UNSUPPORTED_PROTOCOL,    "unsupported_protocol",    NS_DROP,    "parse")        \
    _(TRUNCATED_L4,            "truncated_l4",            NS_DROP,    "parse")        \
    _(BAD_L4_HEADER,           "bad_l4_header",           NS_DROP,    "parse")        \
    _(BAD_SOURCE_ADDRESS,      "bad_source_address",      NS_DROP,    "sanity")       \
    _(BAD_DESTINATION_ADDRESS, "bad_destination_address", NS_DROP,    "sanity")       \
    _(SPOOFED_SOURCE,          "spoofed_source",          NS_DROP,    "sanity")       \
    _(NO_ROUTE,                "no_route",                NS_DROP,    "route")        \
    _(FRAGMENT_UNKNOWN,        "fragment_unknown",        NS_DROP,    "fragment")     \
    _(FRAGMENT_TABLE_FULL,     "fragment_table_full",     NS_DROP,    "fragment")     \
    _(NO_CONNECTION,           "no_connection",           NS_DROP,    "conntrack")    \
    _(ICMP_ERROR_NO_CONNECTION,"icmp_error_no_connection",NS_DROP,    "conntrack")    \
    _(UNSUPPORTED_ICMP,        "unsupported_icmp",        NS_DROP,    "conntrack")    \
    _(DENIED_EGRESS,           "denied_egress",           NS_DROP,    "policy")       \
    _(DENIED_INGRESS,          "denied_ingress",          NS_DROP,    "policy")       \
    _(CONNTRACK_FULL,          "conntrack_full",          NS_DROP,    "commit")       \
    /* an IPv6 packet from or to an IPv4-mapped address (::ffff:a.b.c.d), or an    */ \
    /* ICMPv6 error quoting one: RFC 4291 keeps them off the wire                   */ \
    _(V4_MAPPED_ADDRESS,       "v4_mapped_address",       NS_DROP,    "sanity")       \
    /* an ICMP error not addressed to the sender of the packet it quotes           */ \
    _(ICMP_ERROR_MISDIRECTED,  "icmp_error_misdirected",  NS_DROP,    "conntrack")    \
    /* a non-opening packet of a TCP connection that was reset or has closed       */ \
    _(CONNECTION_CLOSED,       "connection_closed",       NS_DROP,    "conntrack")    \
    /* a new connection to a Service VIP on a protocol/port it does not expose      */ \
    _(SERVICE_PORT_UNKNOWN,    "service_port_unknown",    NS_DROP,    "service")      \
    /* a new connection whose replies would be taken for another connection's      */ \
    /* (a translation clash, as Linux conntrack refuses to confirm one)             */ \
    _(CONNTRACK_CLASH,         "conntrack_clash",         NS_DROP,    "commit")       \
    /* a new connection to a Service port without a ready backend (kube-proxy       */ \
    /* rejects it: the switch answers, see docs/pipeline.md)                         */ \
    _(SERVICE_NO_BACKEND,      "service_no_backend",      NS_DROP,    "service")      \
    /* a new connection needing source NAT (masquerade, hairpin) for which every   */ \
    /* port tried is taken (docs/pipeline.md, "Source NAT")                          */ \
    _(SNAT_PORTS_EXHAUSTED,    "snat_ports_exhausted",    NS_DROP,    "commit")       \
    /* a new connection from outside addressed to a pod (not through a Service):     */ \
    /* pod addresses are not routed from the uplink without --route-pod-addresses    */ \
    _(POD_ADDRESS_NOT_ROUTED,  "pod_address_not_routed",  NS_DROP,    "route")        \
    /* a new connection between two networks that do not meet: traffic never     */ \
    /* crosses networks unless declared routable (004 "type 1"; docs/semantics.md)  */ \
    _(NETWORK_UNREACHABLE,     "network_unreachable",     NS_DROP,    "route")        \
    /* denied by a cluster-wide policy's Deny rule: the Admin tier (before any      */ \
    /* NetworkPolicy), or the Baseline tier (a pod no NetworkPolicy selects)         */ \
    _(DENIED_ADMIN_EGRESS,     "denied_admin_egress",     NS_DROP,    "policy")       \
    _(DENIED_ADMIN_INGRESS,    "denied_admin_ingress",    NS_DROP,    "policy")       \
    _(DENIED_BASELINE_EGRESS,  "denied_baseline_egress",  NS_DROP,    "policy")       \
    _(DENIED_BASELINE_INGRESS, "denied_baseline_ingress", NS_DROP,    "policy")       \
    /* a new connection from a port (a pod's interface, or the uplink) that already  */ \
    /* holds --max-connections-per-pod live connections: one pod cannot exhaust     */ \
    /* the table for the others                                                      */ \
    _(CONNTRACK_POD_LIMIT,     "conntrack_pod_limit",     NS_DROP,    "commit")       \
    /* a frame whose virtio-net header (GSO super-frame, partial checksum) does not  */ \
    /* describe it: wrong protocol or family for its GSO type, a checksum start or  */ \
    /* offset that is not its L4 checksum, GSO without a partial checksum, a        */ \
    /* fragment: forwarding it would have the kernel segment or sum the wrong bytes */ \
    _(BAD_OFFLOAD,             "bad_offload",             NS_DROP,    "sanity")

enum ns_reason {
#define NS_REASON_ENUM(e, name, verdict, stage) NS_R_##e,
    NS_REASONS(NS_REASON_ENUM)
#undef NS_REASON_ENUM
    NS_R_COUNT
};

/* A stage that lets the packet go on returns NS_R_CONTINUE. */
#define NS_R_CONTINUE (-1)

#endif
