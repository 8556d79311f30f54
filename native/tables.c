/* Table set: endpoints, isolation, and the public ns_tables_* API. */
#include "tables.h"

static uint32_t ep_hash(const uint8_t *addr16)
{
    return ns_hash_words(addr16, 16, 0x2545f4914f6cdd1dull);
}

struct ns_tables *ns_tables_new(const struct ns_table_limits *limits)
{
    struct ns_tables *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (limits)
        t->lim = *limits;
    if (!t->lim.endpoints) t->lim.endpoints = NS_DEF_ENDPOINTS;
    if (!t->lim.identities) t->lim.identities = NS_DEF_IDENTITIES;
    if (!t->lim.rule_keys) t->lim.rule_keys = NS_DEF_RULE_KEYS;
    if (!t->lim.rule_entries) t->lim.rule_entries = NS_DEF_RULE_ENTRIES;
    if (!t->lim.prefixes) t->lim.prefixes = NS_DEF_PREFIXES;
    if (!t->lim.class_blocks) t->lim.class_blocks = NS_DEF_CLASS_BLOCKS;
    t->ep = calloc(t->lim.endpoints, sizeof(*t->ep));
    t->isolation = calloc(t->lim.identities, 1);
    if (!t->ep || !t->isolation || hidx_init(&t->ep_idx, t->lim.endpoints) != 0 ||
        lpm_init(&t->lpm, t->lim.prefixes, t->lim.class_blocks) != 0 ||
        rules_init(&t->rules, t->lim.rule_keys, t->lim.rule_entries) != 0) {
        ns_tables_free(t);
        return NULL;
    }
    return t;
}

void ns_tables_free(struct ns_tables *t)
{
    if (!t)
        return;
    free(t->ep);
    free(t->isolation);
    hidx_fini(&t->ep_idx);
    lpm_fini(&t->lpm);
    rules_fini(&t->rules);
    free(t);
}

const struct ns_endpoint *tables_endpoint(const struct ns_tables *t, const uint8_t *addr16)
{
    if (!t)
        return NULL;
    uint32_t h = ep_hash(addr16);
    const struct hidx *x = &t->ep_idx;
    for (uint32_t i = h & x->mask; x->slots[i].ref; i = (i + 1) & x->mask) {
        if (x->slots[i].hash != h)
            continue;
        const struct ns_endpoint *e = &t->ep[x->slots[i].ref - 1];
        if (memcmp(e->addr, addr16, 16) == 0)
            return e;
    }
    return NULL;
}

int ns_tables_add_endpoint(struct ns_tables *t, const uint8_t *addr16, uint16_t port,
                           uint32_t identity)
{
    if (!t || t->sealed || t->n_endpoints >= t->lim.endpoints)
        return -1;
    /* a pod port is 1..65534; identity 0 is the world */
    if (port == NS_PORT_UPLINK || port == NS_PORT_UNKNOWN || identity == 0 ||
        identity >= t->lim.identities)
        return -1;
    if (tables_endpoint(t, addr16))
        return -1;   /* duplicate address */
    uint32_t i = t->n_endpoints++;
    memcpy(t->ep[i].addr, addr16, 16);
    t->ep[i].port = port;
    t->ep[i].identity = identity;
    hidx_insert(&t->ep_idx, ep_hash(addr16), i + 1);
    return 0;
}

int ns_tables_set_isolation(struct ns_tables *t, uint32_t identity, uint8_t mask)
{
    if (!t || t->sealed || identity == 0 || identity >= t->lim.identities ||
        (mask & ~(NS_ISOLATED_INGRESS | NS_ISOLATED_EGRESS)))
        return -1;
    t->isolation[identity] = mask;
    return 0;
}

int ns_tables_add_prefix(struct ns_tables *t, const uint8_t *addr16, uint8_t plen,
                         uint32_t class_id)
{
    if (!t || t->sealed)
        return -1;
    return lpm_add(&t->lpm, addr16, plen, class_id);
}

int ns_tables_add_class_block(struct ns_tables *t, uint32_t class_id, uint32_t block_id)
{
    if (!t || t->sealed)
        return -1;
    return lpm_add_block(&t->lpm, class_id, block_id);
}

int ns_tables_add_rule(struct ns_tables *t, uint32_t local_identity, uint8_t dir,
                       uint32_t peer_identity, uint32_t block_id, uint8_t proto,
                       uint16_t port_lo, uint16_t port_hi, uint32_t rule_id)
{
    if (!t || t->sealed || local_identity == 0 || dir > NS_DIR_EGRESS || port_lo > port_hi ||
        rule_id == NS_RULE_NONE)
        return -1;
    struct rule_key k = {.local = local_identity, .peer = peer_identity, .block = block_id,
                         .dir = dir};
    return rules_add(&t->rules, &k, proto, port_lo, port_hi, rule_id);
}

int ns_tables_seal(struct ns_tables *t)
{
    if (!t || t->sealed)
        return -1;
    if (lpm_seal(&t->lpm) != 0 || rules_seal(&t->rules) != 0)
        return -1;
    t->sealed = 1;
    return 0;
}

uint64_t ns_tables_memory(const struct ns_tables *t)
{
    if (!t)
        return 0;
    return sizeof(*t) + (uint64_t)t->lim.endpoints * sizeof(struct ns_endpoint) +
           hidx_bytes(&t->ep_idx) + t->lim.identities + lpm_bytes(&t->lpm) +
           rules_bytes(&t->rules);
}

int ns_tables_lookup_endpoint(const struct ns_tables *t, const uint8_t *addr16,
                              uint16_t *port, uint32_t *identity)
{
    const struct ns_endpoint *e = tables_endpoint(t, addr16);
    if (!e)
        return -1;
    if (port) *port = e->port;
    if (identity) *identity = e->identity;
    return 0;
}

uint32_t ns_tables_lookup_class(const struct ns_tables *t, const uint8_t *addr16)
{
    if (!t || !t->sealed)
        return 0;
    return lpm_class(&t->lpm, lpm_lookup(&t->lpm, addr16));
}

/* Verdict of one direction (docs/pipeline.md "Policy table"): probe
 * (local, dir, p, b) for p in {0, peer} and b in {0} + blocks(class(peer
 * address)); the smallest matching rule id decides. */
int ns_tables_policy_check(const struct ns_tables *t, uint8_t dir, uint32_t local_identity,
                           uint32_t peer_identity, const uint8_t *peer_addr16, uint8_t proto,
                           uint16_t dport, uint32_t *rule)
{
    uint32_t best = NS_RULE_NONE;
    int allowed = 1;
    uint8_t bit = dir == NS_DIR_EGRESS ? NS_ISOLATED_EGRESS : NS_ISOLATED_INGRESS;
    if (t && local_identity != 0 && local_identity < t->lim.identities &&
        (t->isolation[local_identity] & bit)) {
        allowed = 0;
        if (t->sealed) {
            int icmp = proto == 1 || proto == 58;   /* ICMP/ICMPv6: dport 0, proto-0 entries */
            if (icmp)
                dport = 0;
            uint32_t pi = lpm_lookup(&t->lpm, peer_addr16);
            const uint32_t *blk = pi == NS_NONE32 ? NULL : t->lpm.blocks + t->lpm.blk_off[pi];
            uint32_t nblk = pi == NS_NONE32 ? 0 : t->lpm.blk_cnt[pi];
            struct rule_key k = {.local = local_identity, .dir = dir};
            for (int pv = 0; pv < 2; pv++) {
                if (pv == 1 && peer_identity == 0)
                    break;
                k.peer = pv ? peer_identity : 0;
                for (uint32_t b = 0; b <= nblk; b++) {
                    k.block = b ? blk[b - 1] : 0;
                    uint32_t r = rules_match(&t->rules, &k, proto, dport, icmp);
                    if (r < best)
                        best = r;
                }
            }
            allowed = best != NS_RULE_NONE;
        }
    }
    if (rule)
        *rule = best;
    return allowed;
}
