/* Event ring (struct ns_event in netsem.h): bounded, single producer (the pipeline,
 * during ns_pipeline_run and table swaps), single consumer (its owner, on the same
 * thread, between batches), so plain counters suffice. Full -> the event is dropped
 * and counted in `lost`; the packet path never waits. Capacity 0 disables events. */
#ifndef NS_EVENTS_H
#define NS_EVENTS_H

#include "nsint.h"

struct ns_events {
    uint32_t cap;            /* power of two, or 0: disabled */
    uint32_t mask;
    uint64_t head, tail;     /* head: next to write; tail: next to read */
    uint64_t lost;
    struct ns_event *ring;
};

int events_init(struct ns_events *ev, uint32_t cap);
void events_fini(struct ns_events *ev);
uint64_t events_bytes(const struct ns_events *ev);
uint32_t events_read(struct ns_events *ev, struct ns_event *out, uint32_t max);

/* The next slot to fill (zeroed), or NULL when disabled or full (counted). */
static inline struct ns_event *events_slot(struct ns_events *ev)
{
    if (!ev->cap)
        return NULL;
    if (ev->head - ev->tail >= ev->cap) {
        ev->lost++;
        return NULL;
    }
    struct ns_event *e = &ev->ring[ev->head++ & ev->mask];
    memset(e, 0, sizeof(*e));
    return e;
}

#endif
