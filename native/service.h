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


/* NS_R_CONTINUE, with *xlate = 1 and (xdst16, *xport) set when the destination is
 * translated; or a drop reason. dep: what sits at the destination address. */
int service_map(const struct ns_tables *t, const struct ns_endpoint *dep,
                const struct ns_pkt *pkt, uint8_t *xdst16, uint16_t *xport, int *xlate);

#endif
