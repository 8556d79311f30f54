/* Service mapper: pass-through (see service.h). */
#include "service.h"
#include "reasons.h"

int service_map(const struct ns_tables *t, struct ns_pkt *pkt)
{
    (void)t;
    (void)pkt;
    return NS_R_CONTINUE;
}
