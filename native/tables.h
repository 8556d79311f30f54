/* The table set one compile produces: endpoints ((zone, address) -> what sits
 * there: pod interface, Service VIP or node), the IP address domain of each port,
 * per-identity isolation flags, the LPM (lpm.h) and the rule table (rules.h).
 * Built on a fresh object, sealed, swapped into the pipeline; after seal only the
 * rule hit counters change. */
#ifndef NS_TABLES_H
#define NS_TABLES_H

#include "nsint.h"
#include "lpm.h"
#include "rules.h"

/* What sits at (zone, address). Half a cache line; the key is the address and the
 * zone (the hash covers the address, seeded by the zone). */
struct ns_endpoint {
    uint8_t addr[16];
    uint16_t zone;
    uint8_t kind;            /* NS_EP_* */
    uint8_t pad;
    uint32_t identity;       /* pods; 0 (the world) for services and nodes */
    uint32_t owner;          /* the pod (all its interfaces), service or node it belongs to */
    uint16_t port;           /* pods: their switch port */
    uint16_t node;           /* pods: the node they run on; nodes: themselves */
};
_Static_assert(sizeof(struct ns_endpoint) == 32, "ns_endpoint has no padding");

/* Defaults when an ns_table_limits field is 0. */
#define NS_DEF_ENDPOINTS 65536u
#define NS_DEF_IDENTITIES 65536u
#define NS_DEF_RULE_KEYS 65536u
#define NS_DEF_RULE_ENTRIES 262144u
#define NS_DEF_PREFIXES 131072u
#define NS_DEF_CLASS_BLOCKS 262144u
#define NS_DEF_RULES 65536u
#define NS_PORTS 65536u          /* port -> zone covers every uint16 port */
#define NS_DEF_NETWORKS 64u

/* A Service frontend (zone, VIP, protocol, port) and where its backends and Maglev
 * slots are in be[] and maglev[] (docs/pipeline.md, "3. Service mapper"). */
struct ns_frontend {
    uint8_t addr[16];
    uint16_t zone;
    uint16_t port;
    uint8_t proto;
    uint8_t flags;           /* NS_FE_* */
    uint16_t n_backends;     /* ready backends; 0: refused */
    uint16_t m;              /* Maglev slots */
    uint16_t pad2;
    uint32_t first_backend;  /* be[first_backend + i] */
    uint32_t first_slot;     /* maglev[first_slot + h % m] = i */
    uint32_t affinity_s;     /* NS_FE_CLIENT_IP: timeoutSeconds */
};
_Static_assert(sizeof(struct ns_frontend) == 40, "ns_frontend has no padding");

struct ns_backend {
    uint8_t addr[16];
    uint16_t port;
    uint16_t pad[3];
};
_Static_assert(sizeof(struct ns_backend) == 24, "ns_backend has no padding");

#define NS_DEF_FRONTENDS 4096u
#define NS_DEF_BACKENDS 65536u
#define NS_DEF_MAGLEV_SLOTS (1u << 20)

/* The policy part of a table set: isolation, peer-set cells, the LPM and the rules.
 * A label change that moves a pod to an identity that exists changes none of it, so
 * a delta's table set shares its predecessor's (ns_tables_share_policy) instead of
 * rebuilding tens of megabytes: reference counted, immutable once sealed. */
struct ns_policy_part {
    uint32_t refs;               /* table sets holding it (atomic) */
    uint32_t identities;         /* isolation[] entries (lim.identities at creation) */
    int sealed;
    uint8_t *isolation;          /* [identities], NS_ISOLATED_* bits */
    uint32_t *cells[NS_DIRS];    /* [cell_dim^2] per direction: peer-set states, or NULL */
    uint32_t cell_dim;
    uint32_t *bcells[NS_DIRS];   /* [cell_dim * bcell_classes]: (local, class) states, or NULL */
    uint32_t bcell_classes;
    uint8_t *action;             /* [rules]: NS_ACTION_* of each rule id */
    uint32_t n_actions;          /* action[] entries */
    uint32_t tiers;              /* bit d: some rule key has direction d (d >= 2: a tier) */
    struct lpm lpm;
    struct rules rules;
};

struct ns_tables {
    struct ns_table_limits lim;
    int sealed;
    uint32_t options;            /* NS_OPT_* */
    uint32_t n_endpoints;
    struct ns_endpoint *ep;
    struct hidx ep_idx;          /* (zone, address) -> ep (ref = index + 1) */
    uint16_t *port_zone;         /* [NS_PORTS] */
    uint16_t *port_net;          /* [NS_PORTS] the network of each port */
    uint64_t *routable;          /* [lim.networks^2 bits] a * networks + b: a and b meet */
    uint64_t *rule_hits;         /* [lim.rules] new connections allowed per rule */
    struct ns_policy_part *pol;  /* never NULL; maybe shared with other table sets */
    uint32_t n_frontends, n_backends, n_slots;
    struct ns_frontend *fe;
    struct hidx fe_idx;          /* (zone, VIP, proto, port) -> fe (ref = index + 1) */
    struct ns_backend *be;
    uint16_t *maglev;
    uint8_t snat[2][16];         /* the source NAT address: [0] IPv4 (mapped), [1] IPv6 */
    uint8_t has_snat[2];
};

/* The source NAT address for a packet of family 4 or 6, or NULL. */
static inline const uint8_t *tables_snat_address(const struct ns_tables *t, uint8_t family)
{
    const int i = family == 6;
    return t && t->has_snat[i] ? t->snat[i] : NULL;
}

static inline uint32_t tables_endpoint_hash(uint16_t zone, const uint8_t *addr16)
{
    return ns_hash_words(addr16, 16, 0x2545f4914f6cdd1dull ^ ((uint64_t)zone * 0x9E3779B97F4A7C15ull));
}

/* What sits at (zone, addr16), or NULL, h being its tables_endpoint_hash (computed
 * once by a caller that prefetched with it). NULL tables behave as empty ones. */
static inline const struct ns_endpoint *tables_endpoint_h(const struct ns_tables *t, uint16_t zone,
                                                          const uint8_t *addr16, uint32_t h)
{
    if (!t)
        return NULL;
    const struct hidx *x = &t->ep_idx;
    for (uint32_t i = h & x->mask; x->slots[i].ref; i = (i + 1) & x->mask) {
        if (x->slots[i].hash != h)
            continue;
        const struct ns_endpoint *e = &t->ep[x->slots[i].ref - 1];
        if (e->zone == zone && memcmp(e->addr, addr16, 16) == 0)
            return e;
    }
    return NULL;
}

static inline const struct ns_endpoint *tables_endpoint(const struct ns_tables *t, uint16_t zone,
                                                        const uint8_t *addr16)
{
    return t ? tables_endpoint_h(t, zone, addr16, tables_endpoint_hash(zone, addr16)) : NULL;
}
static inline uint16_t tables_port_network(const struct ns_tables *t, uint16_t port)
{
    return t ? t->port_net[port] : 0;
}

/* The network an endpoint is on: a pod interface's, by its port; anything else
 * (a node, a Service VIP, an address outside) is on the cluster network. */
static inline uint16_t tables_endpoint_network(const struct ns_tables *t, const struct ns_endpoint *e)
{
    return e && e->kind == NS_EP_POD ? tables_port_network(t, e->port) : 0;
}

/* Whether traffic passes between networks a and b: one network, or two declared
 * routable to each other. */
static inline int tables_networks_meet(const struct ns_tables *t, uint16_t a, uint16_t b)
{
    if (a == b)
        return 1;
    const uint32_t bit = (uint32_t)a * t->lim.networks + b;
    return (int)((t->routable[bit >> 6] >> (bit & 63)) & 1);
}

static inline uint16_t tables_port_zone(const struct ns_tables *t, uint16_t port)
{
    return t ? t->port_zone[port] : NS_ZONE_DEFAULT;
}
static inline void tables_count_hit(struct ns_tables *t, uint32_t rule)
{
    if (t && rule < t->lim.rules)
        t->rule_hits[rule]++;
}

static inline uint32_t tables_frontend_hash(uint16_t zone, const uint8_t *addr16, uint8_t proto,
                                           uint16_t port)
{
    uint64_t seed = 0x6a09e667f3bcc909ull ^ ((uint64_t)zone << 32 | (uint64_t)proto << 16 | port);
    return ns_hash_words(addr16, 16, seed);
}

/* The frontend of (zone, VIP, proto, port), or NULL; h its tables_frontend_hash. */
static inline const struct ns_frontend *tables_frontend_h(const struct ns_tables *t, uint16_t zone,
                                                          const uint8_t *addr16, uint8_t proto,
                                                          uint16_t port, uint32_t h)
{
    if (!t || !t->n_frontends)
        return NULL;
    const struct hidx *x = &t->fe_idx;
    for (uint32_t i = h & x->mask; x->slots[i].ref; i = (i + 1) & x->mask) {
        if (x->slots[i].hash != h)
            continue;
        const struct ns_frontend *f = &t->fe[x->slots[i].ref - 1];
        if (f->zone == zone && f->proto == proto && f->port == port && memcmp(f->addr, addr16, 16) == 0)
            return f;
    }
    return NULL;
}

static inline const struct ns_frontend *tables_frontend(const struct ns_tables *t, uint16_t zone,
                                                        const uint8_t *addr16, uint8_t proto,
                                                        uint16_t port)
{
    return tables_frontend_h(t, zone, addr16, proto, port, tables_frontend_hash(zone, addr16, proto, port));
}

#endif
