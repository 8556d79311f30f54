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

int service_map(const struct ns_tables *t, const struct ns_endpoint *dep,
                const struct ns_pkt *pkt, uint8_t *xdst16, uint16_t *xport, int *xlate)
{
    *xlate = 0;
    if (!dep || (dep->kind != NS_EP_SERVICE && dep->kind != NS_EP_NODE))
        return NS_R_CONTINUE;
    const struct ns_frontend *f = tables_frontend(t, dep->zone, pkt->dst, pkt->proto, pkt->dport);
    if (!f)   /* a node's address is its own on every port but its node ports */
        return dep->kind == NS_EP_NODE ? NS_R_CONTINUE : NS_R_SERVICE_PORT_UNKNOWN;
    if (!f->n_backends)
        return NS_R_SERVICE_NO_BACKEND;
    /* ClientIP affinity: the client's every connection hashes alike (source hashing,
     * as IPVS's sh scheduler), so it stays on its backend while the backends stay. */
    uint32_t h = (f->flags & NS_FE_CLIENT_IP) ? ns_flow_hash(pkt->src, pkt->dst, 0, 0, pkt->proto)
                                             : ns_flow_hash(pkt->src, pkt->dst, pkt->sport, pkt->dport, pkt->proto);
    const struct ns_backend *b = &t->be[f->first_backend + t->maglev[f->first_slot + h % f->m]];
    memcpy(xdst16, b->addr, 16);
    *xport = b->port;
    *xlate = 1;
    return NS_R_CONTINUE;
}
