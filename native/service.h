/* Service mapper (docs/pipeline.md "3. Service mapper"): passes every packet
 * on unchanged for now. Service VIPs and NAT (Cilium frontend/slot/backend
 * layout, backend stored in the conntrack entry) are a later issue. */
#ifndef NS_SERVICE_H
#define NS_SERVICE_H

#include "sanity.h"
#include "tables.h"

/* Returns NS_R_CONTINUE; may rewrite *pkt once services exist. */
int service_map(const struct ns_tables *t, struct ns_pkt *pkt);

#endif
