/* Service mapper (see service.h). */
#include "service.h"
#include "reasons.h"

int service_map(const struct ns_tables *t, const struct ns_endpoint *dep,
                const struct ns_pkt *pkt, uint8_t *xdst16, uint16_t *xport, int *xlate)
{
    (void)t;
    (void)pkt;
    (void)xdst16;
    (void)xport;
    *xlate = 0;
    if (dep && dep->kind == NS_EP_SERVICE)
        return NS_R_SERVICE_UNSUPPORTED;
    return NS_R_CONTINUE;
}
