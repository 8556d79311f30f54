/* Service mapper (docs/pipeline.md "3. Service mapper"): for a new connection, the
 * destination's translation. Services are not translated yet (the Services issue
 * adds the Cilium frontend/slot/backend tables here): a new connection to a Service
 * VIP is dropped service_unsupported, never routed anywhere. The rest of the
 * pipeline already carries a translation: the connection entry stores it, replies
 * are reverse-translated, and ns_result.rewrite tells the driver. */
#ifndef NS_SERVICE_H
#define NS_SERVICE_H

#include "sanity.h"
#include "tables.h"

/* NS_R_CONTINUE, with *xlate = 1 and (xdst16, *xport) set when the destination is
 * translated; or a drop reason. dep: what sits at the destination address. */
int service_map(const struct ns_tables *t, const struct ns_endpoint *dep,
                const struct ns_pkt *pkt, uint8_t *xdst16, uint16_t *xport, int *xlate);

#endif
