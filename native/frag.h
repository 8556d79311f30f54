/* Fragment table: (zone, family, src, dst, fragment id, protocol) -> out port of
 * the first fragment, which decided. Bounded (default 4,096 entries); each
 * entry lives 30 s from its (re)recording; one FIFO (one timeout) reclaims
 * expired entries from its head, in each batch and when an insert finds the
 * table full. Full after that -> the caller drops fragment_table_full. */
#ifndef NS_FRAG_H
#define NS_FRAG_H

#include "nsint.h"

#define NS_FRAG_TIMEOUT (30 * NS_SEC)

struct frag_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint32_t id;
    uint8_t family;
    uint8_t proto;
    uint16_t zone;
};
_Static_assert(sizeof(struct frag_key) == 40, "frag_key has no padding");

struct frag_entry {
    struct frag_key key;
    uint64_t expiry;
    uint32_t prev, next;     /* FIFO links; next is the free-list link when free */
    uint32_t hash;
    uint16_t port;
    uint8_t used;
    uint8_t pad;
};
_Static_assert(sizeof(struct frag_entry) == 64, "frag_entry has no padding");

struct frag_table {
    uint32_t cap, n_used, bump, free_head;
    uint32_t head, tail;     /* FIFO, ordered by expiry */
    struct frag_entry *e;
    struct hidx idx;         /* ref = index + 1 */
};

int frag_init(struct frag_table *f, uint32_t cap);
void frag_fini(struct frag_table *f);
uint64_t frag_bytes(const struct frag_table *f);
/* 0 and *port set when a live entry exists, else -1. */
int frag_lookup(const struct frag_table *f, const struct frag_key *k, uint64_t now,
                uint16_t *port);
/* Records (or re-records) k -> port; -1 when full after reclaiming. */
int frag_record(struct frag_table *f, const struct frag_key *k, uint16_t port, uint64_t now);
uint32_t frag_reclaim(struct frag_table *f, uint64_t now, uint32_t budget);

#endif
