/* Service mapper (see service.h). */
#include "service.h"
#include "reasons.h"

/* The key ns_flow_hash reads: explicit padding, so the hash reads no stray bytes. */
struct flow_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport, dport;
    uint8_t proto;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct flow_key) == 40, "flow_key has no padding");

uint32_t ns_flow_hash(const uint8_t *src16, const uint8_t *dst16, uint16_t sport, uint16_t dport,
                      uint8_t proto)
{
    struct flow_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.src, src16, 16);
    memcpy(k.dst, dst16, 16);
    k.sport = sport;
    k.dport = dport;
    k.proto = proto;
    return ns_hash_words(&k, sizeof(k), NS_FLOW_HASH_SEED);
}

void service_prefetch_slots(const struct ns_tables *t, uint16_t zone, const struct ns_pkt *pkt,
                            struct svc_hashes *h)
{
    if (!t)
        return;
    h->ep = tables_endpoint_hash(zone, pkt->dst);
    __builtin_prefetch(&t->ep_idx.slots[h->ep & t->ep_idx.mask]);
    if (t->n_frontends) {
        h->fe = tables_frontend_hash(zone, pkt->dst, pkt->proto, pkt->dport);
        __builtin_prefetch(&t->fe_idx.slots[h->fe & t->fe_idx.mask]);
    }
}

const struct ns_frontend *service_prefetch_entries(const struct ns_tables *t, const struct svc_hashes *h)
{
    if (!t)
        return NULL;
    const struct hslot *s = &t->ep_idx.slots[h->ep & t->ep_idx.mask];
    if (s->ref && s->hash == h->ep)
        __builtin_prefetch(&t->ep[s->ref - 1]);
    if (!t->n_frontends)
        return NULL;
    s = &t->fe_idx.slots[h->fe & t->fe_idx.mask];
    if (!s->ref || s->hash != h->fe)
        return NULL;
    const struct ns_frontend *f = &t->fe[s->ref - 1];
    __builtin_prefetch(f);
    return f;
}

uint32_t service_prefetch_backend(const struct ns_tables *t, const struct ns_frontend *f,
                                  const struct ns_pkt *pkt)
{
    if (!f->n_backends)
        return 0;
    uint32_t h = (f->flags & NS_FE_CLIENT_IP) ? ns_flow_hash(pkt->src, pkt->dst, 0, 0, pkt->proto)
                                             : ns_flow_hash(pkt->src, pkt->dst, pkt->sport, pkt->dport, pkt->proto);
    __builtin_prefetch(&t->maglev[f->first_slot + h % f->m]);
    __builtin_prefetch(&t->be[f->first_backend]);
    return h;
}

int aff_init(struct aff_table *a, uint32_t cap)
{
    memset(a, 0, sizeof(*a));
    uint32_t n = NS_AFF_PROBE;
    while (n < cap && n < (1u << 26))
        n <<= 1;
    a->e = ns_table_alloc((uint64_t)n * sizeof(struct aff_entry));
    if (!a->e)
        return -1;
    a->mask = n - 1;
    return 0;
}

void aff_fini(struct aff_table *a)
{
    free(a->e);
    a->e = NULL;
}

/* The backend index (into t->be) a ClientIP client goes to: its record's while the
 * record lives and its backend is still a ready backend of f; else `hashed` (the
 * stateless choice), recorded. Every new connection refreshes the record. */
static uint32_t affinity_backend(struct aff_table *a, const struct ns_tables *t,
                                 const struct ns_frontend *f, const struct ns_pkt *pkt,
                                 uint32_t generation, uint64_t now, uint32_t hashed)
{
    struct aff_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.client, pkt->src, 16);
    memcpy(k.vip, pkt->dst, 16);
    k.zone = f->zone;
    k.port = f->port;
    k.proto = f->proto;
    const uint32_t h = ns_hash_words(&k, sizeof(k), NS_AFF_HASH_SEED);
    struct aff_entry *match = NULL, *room = NULL;
    for (uint32_t i = 0; i < NS_AFF_PROBE; i++) {
        struct aff_entry *e = &a->e[(h + i) & a->mask];
        if (e->expiry && memcmp(&e->key, &k, sizeof(k)) == 0) {
            match = e;
            break;
        }
        if (!room && e->expiry <= now)
            room = e;
    }
    uint32_t chosen = NS_NONE32;
    if (match && match->expiry > now) {
        if (match->generation == generation) {
            chosen = match->be_index;
        } else {   /* new tables: is the backend still one of f's? (once per swap) */
            for (uint32_t i = 0; i < f->n_backends; i++) {
                const struct ns_backend *b = &t->be[f->first_backend + i];
                if (b->port == match->bport && memcmp(b->addr, match->backend, 16) == 0) {
                    chosen = f->first_backend + i;
                    break;
                }
            }
        }
    }
    struct ns_backend const *b;
    if (chosen == NS_NONE32) {
        struct aff_entry *e = match ? match : room;
        if (!e) {
            a->full++;
            return hashed;
        }
        chosen = hashed;
        b = &t->be[chosen];
        e->key = k;
        memcpy(e->backend, b->addr, 16);
        e->bport = b->port;
        match = e;
    }
    match->be_index = chosen;
    match->generation = generation;
    match->expiry = ns_sat_add(now, (uint64_t)f->affinity_s * 1000000000ull);
    return chosen;
}

int service_map(const struct ns_tables *t, struct aff_table *aff, uint32_t generation, uint64_t now,
                const struct ns_endpoint *dep, const struct ns_pkt *pkt, const uint32_t *fe_hash,
                uint8_t *xdst16, uint16_t *xport, int *xlate)
{
    *xlate = 0;
    if (!dep || (dep->kind != NS_EP_SERVICE && dep->kind != NS_EP_NODE))
        return NS_R_CONTINUE;
    const struct ns_frontend *f =
        fe_hash ? tables_frontend_h(t, dep->zone, pkt->dst, pkt->proto, pkt->dport, *fe_hash)
                : tables_frontend(t, dep->zone, pkt->dst, pkt->proto, pkt->dport);
    if (!f)   /* a node's address is its own on every port but its node ports */
        return dep->kind == NS_EP_NODE ? NS_R_CONTINUE : NS_R_SERVICE_PORT_UNKNOWN;
    if (!f->n_backends)
        return NS_R_SERVICE_NO_BACKEND;
    /* ClientIP affinity: without a record, the client's every connection hashes alike
     * (source hashing, as IPVS's sh scheduler); the record keeps it on its backend for
     * timeoutSeconds even when other backends come and go. */
    const int cip = f->flags & NS_FE_CLIENT_IP;
    uint32_t h = cip ? ns_flow_hash(pkt->src, pkt->dst, 0, 0, pkt->proto)
                     : ns_flow_hash(pkt->src, pkt->dst, pkt->sport, pkt->dport, pkt->proto);
    uint32_t bi = f->first_backend + t->maglev[f->first_slot + h % f->m];
    if (cip && aff && aff->e)
        bi = affinity_backend(aff, t, f, pkt, generation, now, bi);
    const struct ns_backend *b = &t->be[bi];
    memcpy(xdst16, b->addr, 16);
    *xport = b->port;
    *xlate = 1;
    return NS_R_CONTINUE;
}
