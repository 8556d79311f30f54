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
 * be NULL: stateless), generation and now serve ClientIP affinity. */
int service_map(const struct ns_tables *t, struct aff_table *aff, uint32_t generation, uint64_t now,
                const struct ns_endpoint *dep, const struct ns_pkt *pkt, uint8_t *xdst16,
                uint16_t *xport, int *xlate);

#endif
