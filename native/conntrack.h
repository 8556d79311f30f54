/* Connection tracker (docs/pipeline.md "2. Connection tracker"), after OVS's
 * userspace conntrack: one entry per connection holding the original-
 * direction key; the slot index holds two nodes per entry (original and
 * reversed key), so either direction's key finds the one entry.
 *
 * Capacity is fixed at creation; entries come from a bump pointer then a
 * free list (nothing is touched until used). One FIFO per timeout value,
 * doubly linked by u32 indices: a refreshed entry moves to its FIFO's tail,
 * so each FIFO is ordered by expiry and expired entries are reclaimed from
 * the heads: at most reclaim_per_batch per batch, plus one when an insert
 * finds the table full. Full after that -> the caller drops conntrack_full.
 * Expired entries (expiry <= now) are absent to every lookup. */
#ifndef NS_CONNTRACK_H
#define NS_CONNTRACK_H

#include "nsint.h"

/* State numbers (public: ns_pipeline_ct_state returns them). */
enum ct_state_num {
    CT_FREE = 0,
    CT_TCP_SYN_SENT = 1,
    CT_TCP_SYN_RECV = 2,
    CT_TCP_ESTABLISHED = 3,
    CT_TCP_FIN_WAIT = 4,
    CT_TCP_TIME_WAIT = 5,
    CT_TCP_CLOSED = 6,
    CT_UDP_FIRST = 7,
    CT_UDP_REPLIED = 8,
    CT_SCTP_INIT = 9,
    CT_SCTP_ESTABLISHED = 10,
    CT_SCTP_CLOSED = 11,
    CT_ICMP = 12,
    CT_STATE_COUNT
};

/* Timeout classes: one FIFO each. */
enum ct_tclass { CT_T10, CT_T30, CT_T120, CT_T180, CT_T86400, CT_TCLASS_COUNT };

/* Canonical key. Hash and compare cover all 40 bytes: keep pad zero. */
struct ct_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
    uint16_t zone;
    uint8_t proto;
    uint8_t pad;
};
_Static_assert(sizeof(struct ct_key) == 40, "ct_key has no padding");

struct ct_entry {
    struct ct_key key;       /* original direction */
    uint64_t expiry;         /* ns; expired when <= now */
    uint32_t prev, next;     /* FIFO links (next: free list link when free) */
    uint32_t qexp_ms;        /* expiry (ms, mod 2^32) when last queued: the FIFO's
                              * order (see CT_REQUEUE_MS in conntrack.c) */
    uint8_t state;           /* enum ct_state_num, CT_FREE when unused */
    uint8_t tclass;          /* enum ct_tclass */
    uint8_t fin_dir;         /* TCP FIN_WAIT: direction (0 orig, 1 reply) of the first FIN */
    uint8_t pad;
};
_Static_assert(sizeof(struct ct_entry) == 64, "ct_entry is 64 bytes, no padding");
_Static_assert(sizeof(struct ct_entry) <= 128, "ct_entry fits the 128-byte budget");

struct ct_fifo {
    uint32_t head, tail;
};

struct ct_table {
    uint32_t cap;
    uint32_t n_used;         /* allocated entries (live or expired-not-reclaimed) */
    uint32_t bump;           /* entries [bump, cap) never used yet */
    uint32_t free_head;
    struct ct_entry *e;
    struct hidx idx;         /* ref = (index << 1 | dir) + 1 */
    struct ct_fifo fifo[CT_TCLASS_COUNT];
};

#define CT_DIR_ORIG 0
#define CT_DIR_REPLY 1

int ct_init(struct ct_table *ct, uint32_t cap);
void ct_fini(struct ct_table *ct);
uint64_t ct_bytes(const struct ct_table *ct);
/* Live entry matching key in either direction (*dir set), else NS_NONE32.
 * Expired matches met on the way are deleted. */
uint32_t ct_lookup(struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir);
/* The same with the key's hash computed beforehand (ct_key_hash). */
uint32_t ct_lookup_hashed(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint64_t now,
                          int *dir);
uint32_t ct_key_hash(const struct ct_key *k);
/* Prefetch hints for a batch: the index slot of a hash, then the entry it names. */
static inline void ct_prefetch_slot(const struct ct_table *ct, uint32_t h)
{
    __builtin_prefetch(&ct->idx.slots[h & ct->idx.mask]);
}
static inline void ct_prefetch_entry(const struct ct_table *ct, uint32_t h)
{
    const struct hslot *s = &ct->idx.slots[h & ct->idx.mask];
    if (s->ref)
        __builtin_prefetch(&ct->e[(s->ref - 1) >> 1]);
}
/* Same, read-only: expired matches are skipped. */
uint32_t ct_find(const struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir);
/* New entry in `state`, or NS_NONE32 when full after reclaiming. */
uint32_t ct_insert(struct ct_table *ct, const struct ct_key *key, uint8_t state, uint64_t now);
void ct_delete(struct ct_table *ct, uint32_t i);
/* Sets the state and refreshes: expiry = now + timeout(state). Within one timeout
 * class the entry moves to its FIFO's tail at most once a second, so most
 * established packets touch no other entry. */
void ct_refresh(struct ct_table *ct, uint32_t i, uint8_t state, uint64_t now);
/* Reclaims up to `budget` expired entries from the FIFO heads. */
uint32_t ct_reclaim(struct ct_table *ct, uint64_t now, uint32_t budget);

/* Per-protocol transitions for a packet hitting entry i in direction dir
 * (TCP flags or the first SCTP chunk type in `l4info`); refreshes. */
void ct_update(struct ct_table *ct, uint32_t i, int dir, uint8_t l4info, uint64_t now);
/* States a connection-opening packet replaces (TIME_WAIT, CLOSED, SCTP_CLOSED). */
static inline int ct_state_reopenable(uint8_t s)
{
    return s == CT_TCP_TIME_WAIT || s == CT_TCP_CLOSED || s == CT_SCTP_CLOSED;
}

#endif
