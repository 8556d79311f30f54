/* The table set one compile produces: endpoints (address -> port, identity),
 * per-identity isolation flags, the LPM (lpm.h) and the rule table
 * (policy.h). Built on a fresh object, sealed, swapped into the pipeline;
 * read-only after seal. */
#ifndef NS_TABLES_H
#define NS_TABLES_H

#include "nsint.h"
#include "lpm.h"
#include "policy.h"

struct ns_endpoint {
    uint8_t addr[16];
    uint32_t identity;
    uint16_t port;
    uint16_t pad;
};
_Static_assert(sizeof(struct ns_endpoint) == 24, "ns_endpoint has no padding");

/* Defaults when an ns_table_limits field is 0. */
#define NS_DEF_ENDPOINTS 65536u
#define NS_DEF_IDENTITIES 65536u
#define NS_DEF_RULE_KEYS 65536u
#define NS_DEF_RULE_ENTRIES 262144u
#define NS_DEF_PREFIXES 131072u
#define NS_DEF_CLASS_BLOCKS 262144u

struct ns_tables {
    struct ns_table_limits lim;
    int sealed;
    uint32_t n_endpoints;
    struct ns_endpoint *ep;
    struct hidx ep_idx;          /* address -> ep (ref = index + 1) */
    uint8_t *isolation;          /* [lim.identities], NS_ISOLATED_* bits */
    struct lpm lpm;
    struct rules rules;
};

/* NULL tables behave as empty ones. */
const struct ns_endpoint *tables_endpoint(const struct ns_tables *t, const uint8_t *addr16);

#endif
