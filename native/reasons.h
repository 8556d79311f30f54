/* Every per-packet outcome (forward, local and drop reasons), declared once.
 * The X-macro generates the enum below and the name/verdict table in
 * pipeline.c; Python reads the names through ns_reason_name(). The order is
 * the public numbering: do not reorder, only append. */
#ifndef NS_REASONS_H
#define NS_REASONS_H

#define NS_REASONS(_)                                                   \
    /* forward */                                                       \
    _(ESTABLISHED,             "established",             NS_FORWARD)   \
    _(REPLY,                   "reply",                   NS_FORWARD)   \
    _(NEW,                     "new",                     NS_FORWARD)   \
    _(RELATED,                 "related",                 NS_FORWARD)   \
    _(FRAGMENT,                "fragment",                NS_FORWARD)   \
    /* local (handed to the control plane) */                           \
    _(ARP,                     "arp",                     NS_LOCAL)     \
    _(NEIGHBOR_DISCOVERY,      "neighbor_discovery",      NS_LOCAL)     \
    /* drops */                                                         \
    _(TRUNCATED_ETHERNET,      "truncated_ethernet",      NS_DROP)      \
    _(UNSUPPORTED_ETHERTYPE,   "unsupported_ethertype",   NS_DROP)      \
    _(TRUNCATED_IP,            "truncated_ip",            NS_DROP)      \
    _(BAD_IP_VERSION,          "bad_ip_version",          NS_DROP)      \
    _(BAD_IP_HEADER_LENGTH,    "bad_ip_header_length",    NS_DROP)      \
    _(BAD_IP_TOTAL_LENGTH,     "bad_ip_total_length",     NS_DROP)      \
    _(BAD_IP_CHECKSUM,         "bad_ip_checksum",         NS_DROP)      \
    _(BAD_IPV6_EXTENSION,      "bad_ipv6_extension",      NS_DROP)      \
    _(UNSUPPORTED_PROTOCOL,    "unsupported_protocol",    NS_DROP)      \
    _(TRUNCATED_L4,            "truncated_l4",            NS_DROP)      \
    _(BAD_L4_HEADER,           "bad_l4_header",           NS_DROP)      \
    _(BAD_SOURCE_ADDRESS,      "bad_source_address",      NS_DROP)      \
    _(BAD_DESTINATION_ADDRESS, "bad_destination_address", NS_DROP)      \
    _(SPOOFED_SOURCE,          "spoofed_source",          NS_DROP)      \
    _(NO_ROUTE,                "no_route",                NS_DROP)      \
    _(FRAGMENT_UNKNOWN,        "fragment_unknown",        NS_DROP)      \
    _(FRAGMENT_TABLE_FULL,     "fragment_table_full",     NS_DROP)      \
    _(NO_CONNECTION,           "no_connection",           NS_DROP)      \
    _(ICMP_ERROR_NO_CONNECTION,"icmp_error_no_connection",NS_DROP)      \
    _(UNSUPPORTED_ICMP,        "unsupported_icmp",        NS_DROP)      \
    _(DENIED_EGRESS,           "denied_egress",           NS_DROP)      \
    _(DENIED_INGRESS,          "denied_ingress",          NS_DROP)      \
    _(CONNTRACK_FULL,          "conntrack_full",          NS_DROP)

enum ns_reason {
#define NS_REASON_ENUM(e, name, verdict) NS_R_##e,
    NS_REASONS(NS_REASON_ENUM)
#undef NS_REASON_ENUM
    NS_R_COUNT
};

/* A stage that lets the packet go on returns NS_R_CONTINUE. */
#define NS_R_CONTINUE (-1)

#endif
