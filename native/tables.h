/* The table set one compile produces: endpoints ((zone, address) -> what sits
 * there: pod interface, Service VIP or node), the IP address domain of each port,
 * per-identity isolation flags, the LPM (lpm.h) and the rule table (policy.h).
 * Built on a fresh object, sealed, swapped into the pipeline; after seal only the
 * rule hit counters change. */
#ifndef NS_TABLES_H
#define NS_TABLES_H

#include "nsint.h"
#include "lpm.h"
#include "rules.h"

/* The hashed part of an endpoint (its first 24 bytes). */
struct ns_endpoint_key {
    uint8_t addr[16];
    uint16_t zone;
    uint16_t pad;
    uint32_t pad2;
};
_Static_assert(sizeof(struct ns_endpoint_key) == 24, "ns_endpoint_key has no padding");

struct ns_endpoint {
    struct ns_endpoint_key key;
    uint32_t identity;       /* pods; 0 (the world) for services and nodes */
    uint32_t owner;          /* the pod (all its interfaces), service or node it belongs to */
    uint16_t port;           /* pods: their switch port */
    uint16_t node;           /* pods: the node they run on; nodes: themselves */
    uint8_t kind;            /* NS_EP_* */
    uint8_t pad[3];
};
_Static_assert(sizeof(struct ns_endpoint) == 40, "ns_endpoint has no padding");

/* Defaults when an ns_table_limits field is 0. */
#define NS_DEF_ENDPOINTS 65536u
#define NS_DEF_IDENTITIES 65536u
#define NS_DEF_RULE_KEYS 65536u
#define NS_DEF_RULE_ENTRIES 262144u
#define NS_DEF_PREFIXES 131072u
#define NS_DEF_CLASS_BLOCKS 262144u
#define NS_DEF_RULES 65536u
#define NS_PORTS 65536u          /* port -> zone covers every uint16 port */

struct ns_tables {
    struct ns_table_limits lim;
    int sealed;
    uint32_t options;            /* NS_OPT_* */
    uint32_t n_endpoints;
    struct ns_endpoint *ep;
    struct hidx ep_idx;          /* (zone, address) -> ep (ref = index + 1) */
    uint16_t *port_zone;         /* [NS_PORTS] */
    uint64_t *rule_hits;         /* [lim.rules] new connections allowed per rule */
    uint8_t *isolation;          /* [lim.identities], NS_ISOLATED_* bits */
    struct lpm lpm;
    struct rules rules;
};

/* NULL tables behave as empty ones. */
const struct ns_endpoint *tables_endpoint(const struct ns_tables *t, uint16_t zone,
                                          const uint8_t *addr16);
static inline uint16_t tables_port_zone(const struct ns_tables *t, uint16_t port)
{
    return t ? t->port_zone[port] : NS_ZONE_DEFAULT;
}
static inline void tables_count_hit(struct ns_tables *t, uint32_t rule)
{
    if (t && rule < t->lim.rules)
        t->rule_hits[rule]++;
}

#endif
