/* Service mapper (docs/pipeline.md "3. Service mapper"): for a new connection to a
 * Service VIP, the frontend (zone, VIP, protocol, port) picks a ready backend,
 * Maglev-style: slot ns_flow_hash(tuple) % m of the frontend's table, which the
 * compiler filled (pipeline/model/services.py), so the same tuple always picks the
 * same backend and a backend change moves few tuples. The destination is rewritten
 * (DNAT) and the connection entry stores the translation; replies are
 * reverse-translated. A VIP port that is not a frontend: service_port_unknown; a
 * frontend without ready backends: service_no_backend. */
#ifndef NS_SERVICE_H
#define NS_SERVICE_H

#include "sanity.h"
#include "tables.h"


/* ClientIP affinity records, after kube-proxy's `recent` match: (zone, client, VIP,
 * protocol, port) -> the backend the client's latest new connection went to, kept
 * timeoutSeconds after it. Bounded: 2^k slots, a key sits in one of NS_AFF_PROBE
 * slots from its hash; none free (empty or expired) -> "full": the connection is
 * hashed as without a record and counted. Owned by the pipeline: it outlives table
 * swaps, so a client keeps its backend while that backend stays ready. */
struct aff_key {
    uint8_t client[16];
    uint8_t vip[16];
    uint16_t zone;
    uint16_t port;
    uint8_t proto;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct aff_key) == 40, "aff_key has no padding");

struct aff_entry {
    struct aff_key key;
    uint8_t backend[16];
    uint16_t bport;
    uint16_t pad;
    uint32_t be_index;       /* into tables->be, valid while generation is current */
    uint32_t generation;
    uint32_t pad2;
    uint64_t expiry;         /* ns; 0: never used; <= now: free */
};
_Static_assert(sizeof(struct aff_entry) == 80, "aff_entry has no padding");

struct aff_table {
    uint32_t mask;
    struct aff_entry *e;
    uint64_t full;
};

int aff_init(struct aff_table *a, uint32_t cap);
void aff_fini(struct aff_table *a);

/* NS_R_CONTINUE, with *xlate = 1 and (xdst16, *xport) set when the destination is
 * translated; or a drop reason. dep: what sits at the destination address; aff (may
 * be NULL: stateless), generation and now serve ClientIP affinity; fe_hash, when not
 * NULL, is the destination's tables_frontend_hash, computed already. */
int service_map(const struct ns_tables *t, struct aff_table *aff, uint32_t generation, uint64_t now,
                const struct ns_endpoint *dep, const struct ns_pkt *pkt, const uint32_t *fe_hash,
                uint8_t *xdst16, uint16_t *xport, int *xlate);

/* Prefetch hints for a chunk's likely-new packets (their conntrack home slot holds
 * no entry of their hash), in three passes so the misses of a chunk overlap:
 * (1) the endpoint and frontend index slots of the destination; (2) the entries they
 * name, returning the frontend when its home slot names it; (3) its Maglev slot and
 * first backend, returning the flow hash; (4) the caller's, from the backend. Hints only: results do not depend on them. */
struct svc_hashes {
    uint32_t ep, fe;         /* the destination's endpoint and frontend index hashes */
};
void service_prefetch_slots(const struct ns_tables *t, uint16_t zone, const struct ns_pkt *pkt,
                            struct svc_hashes *h);
const struct ns_frontend *service_prefetch_entries(const struct ns_tables *t, const struct svc_hashes *h);
uint32_t service_prefetch_backend(const struct ns_tables *t, const struct ns_frontend *f,
                                  const struct ns_pkt *pkt);
/* (4) the backend the hash picks (affinity aside): what the caller prefetches next. */
static inline const struct ns_backend *service_hashed_backend(const struct ns_tables *t,
                                                              const struct ns_frontend *f, uint32_t h)
{
    return f->n_backends ? &t->be[f->first_backend + t->maglev[f->first_slot + h % f->m]] : NULL;
}

#endif
