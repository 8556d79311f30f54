/* Event ring (see events.h). */
#include "events.h"

int events_init(struct ns_events *ev, uint32_t cap)
{
    memset(ev, 0, sizeof(*ev));
    if (!cap)
        return 0;
    if (cap > (1u << 24))
        return -1;
    uint32_t n = 1;
    while (n < cap)
        n <<= 1;   /* a power of two at least cap: indices are masked */
    ev->ring = calloc(n, sizeof(*ev->ring));
    if (!ev->ring)
        return -1;
    ns_prefault(ev->ring, (uint64_t)n * sizeof(*ev->ring));
    ev->cap = n;
    ev->mask = n - 1;
    return 0;
}

void events_fini(struct ns_events *ev)
{
    free(ev->ring);
    memset(ev, 0, sizeof(*ev));
}

uint64_t events_bytes(const struct ns_events *ev)
{
    return (uint64_t)ev->cap * sizeof(struct ns_event);
}

uint32_t events_read(struct ns_events *ev, struct ns_event *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && ev->tail < ev->head)
        out[n++] = ev->ring[ev->tail++ & ev->mask];
    return n;
}
