/* The connection tracker's index (conntrack.h): 64-byte buckets, one cache line
 * each, of references and their fingerprints, so that finding the candidate entry of
 * a key costs one miss, and the entry a second (prefetched: pipeline.c). The generic
 * slot index (nsint.h) keeps a full hash per 8-byte slot at under half load: 32 bytes
 * a connection against 16 here, and a probe run may cross a line.
 *
 * A key's home bucket is its hash's low bits; a bucket holds CTX_SLOTS references.
 * An insert into a full bucket goes to the next bucket with room, and counts itself in
 * the `overflow` of every bucket it passed, so a lookup goes on past a bucket only
 * while that count is non-zero, and a delete (no moves) takes the counts back.
 * Bounded: the buckets hold at least as many references as the table has (2 per
 * entry), so an insert always finds room (the walk wraps); capacity is the entry
 * table's ("full" is ct_insert's conntrack_full). A lookup or delete visits each
 * bucket once at most: in a small table every bucket may have overflowed. */
#ifndef NS_CT_INDEX_H
#define NS_CT_INDEX_H

#include "nsint.h"

#define CTX_SLOTS 10
#define CTX_FP 0x7FFFu          /* tag bits that are the fingerprint */
#define CTX_XLATED 0x8000u      /* tag bit: the entry is translated (its second line is read) */

struct ctx_bucket {
    uint32_t ref[CTX_SLOTS];    /* (entry << 1 | dir) + 1; 0: empty */
    uint16_t tag[CTX_SLOTS];    /* fingerprint | CTX_XLATED */
    uint32_t overflow;          /* references homed here or before, stored further on */
};
_Static_assert(sizeof(struct ctx_bucket) == 64, "a bucket is one cache line");

struct ct_index {
    uint32_t mask;              /* buckets - 1 */
    uint32_t pad;
    struct ctx_bucket *b;       /* 64-byte aligned (2 MiB from 2 MiB on) */
};

/* 15 bits of the hash that do not choose the bucket (those are the low bits). */
static inline uint16_t ctx_fp(uint32_t h)
{
    return (uint16_t)(((h * 0x9E3779B1u) >> 17) & CTX_FP);
}

static inline int ctx_init(struct ct_index *x, uint64_t refs)
{
    /* at most 80 % of the slots used: buckets rarely overflow */
    uint32_t n = ns_pow2_at_least((refs + 7) / 8);
    x->mask = n - 1;
    x->pad = 0;
    x->b = ns_table_alloc((uint64_t)n * sizeof(struct ctx_bucket));
    return x->b ? 0 : -1;
}

static inline void ctx_fini(struct ct_index *x)
{
    free(x->b);
    x->b = NULL;
}

static inline uint64_t ctx_bytes(const struct ct_index *x)
{
    return x->b ? ((uint64_t)x->mask + 1) * sizeof(struct ctx_bucket) : 0;
}

static inline void ctx_insert(struct ct_index *x, uint32_t h, uint32_t ref, int xlated)
{
    uint32_t bi = h & x->mask;
    for (;;) {
        struct ctx_bucket *b = &x->b[bi];
        for (int k = 0; k < CTX_SLOTS; k++)
            if (!b->ref[k]) {
                b->ref[k] = ref;
                b->tag[k] = (uint16_t)(ctx_fp(h) | (xlated ? CTX_XLATED : 0));
                return;
            }
        b->overflow++;
        bi = (bi + 1) & x->mask;
    }
}

/* Removes (h, ref); 0, or -1 when it is not there. */
static inline int ctx_remove(struct ct_index *x, uint32_t h, uint32_t ref)
{
    uint32_t bi = h & x->mask;
    for (uint32_t hops = 0; hops <= x->mask; hops++) {   /* each bucket once at most */
        struct ctx_bucket *b = &x->b[bi];
        for (int k = 0; k < CTX_SLOTS; k++)
            if (b->ref[k] == ref) {
                b->ref[k] = 0;
                b->tag[k] = 0;
                for (uint32_t i = h & x->mask; hops--; i = (i + 1) & x->mask)
                    x->b[i].overflow--;
                return 0;
            }
        if (!b->overflow)
            break;
        bi = (bi + 1) & x->mask;
    }
    return -1;
}

#endif
