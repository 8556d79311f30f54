/* Private helpers shared by the native stages: includes, byte-order reads,
 * hashing and the open-addressing slot index every hash table uses.
 * (netsem.h stays in the cdef subset; macros and includes live here.) */
#ifndef NS_INT_H
#define NS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "netsem.h"

#define NS_LIKELY(x) __builtin_expect(!!(x), 1)
#define NS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NS_NONE32 0xFFFFFFFFu

#define NS_SEC 1000000000ull

/* now + timeout, saturating: a clock near 2^64 ns must not wrap an expiry into the
 * past (the oracle computes min(now + t, 2^64 - 1) too). */
static inline uint64_t ns_sat_add(uint64_t a, uint64_t b)
{
    uint64_t r = a + b;
    return r < a ? UINT64_MAX : r;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t ld64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t ns_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Hash of a byte string whose length is a multiple of 8 (keys are padded
 * explicitly, see the _Static_asserts on each key struct). */
static inline uint32_t ns_hash_words(const void *key, size_t len, uint64_t seed)
{
    const uint8_t *p = key;
    uint64_t h = seed ^ (len * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < len; i += 8)
        h = (h ^ ld64(p + i)) * 0x9E3779B97F4A7C15ull + (h >> 29);
    return (uint32_t)ns_mix64(h);
}

static inline uint32_t ns_pow2_at_least(uint64_t n)
{
    uint64_t s = 16;
    while (s < n)
        s <<= 1;
    return (uint32_t)s;
}

/* ---- slot index: open addressing, linear probing, backward-shift delete ----
 * A slot holds the full 32-bit hash (so the home slot can be recomputed and
 * most mismatches are rejected without touching the entry) and a reference
 * (ref 0 = empty; owners store index + 1 or similar). Tables are sized to at
 * least twice their entry limit, so a probe always ends at an empty slot and
 * the expected probe length stays below 2.5 slots. */
struct hslot {
    uint32_t hash;
    uint32_t ref;
};
_Static_assert(sizeof(struct hslot) == 8, "hslot has no padding");

struct hidx {
    uint32_t mask;
    uint32_t pad;
    struct hslot *slots;
};

/* Touches every page of a fresh allocation, so that no page fault (the kernel
 * allocating memory) happens later on the packet path. */
static inline void ns_prefault(void *p, uint64_t bytes)
{
    /* Large tables are looked up at random: ask for huge pages (fewer TLB misses)
     * on the 2 MiB-aligned part before the pages are touched. */
    if (bytes >= (4u << 20)) {
        uintptr_t a = ((uintptr_t)p + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1);
        uintptr_t e = ((uintptr_t)p + bytes) & ~(uintptr_t)((2u << 20) - 1);
        if (e > a)
            madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
    volatile uint8_t *b = p;
    for (uint64_t i = 0; i < bytes; i += 4096)
        b[i] = 0;
}

/* A zeroed table of `bytes`, 64-byte aligned, every page touched now. From 2 MiB on it is 2 MiB
 * aligned, so that the kernel can back all of it with huge pages: the tables are read
 * at random, and in a VM a TLB miss costs a two-level page walk. Freed with free(). */
static inline void *ns_table_alloc(uint64_t bytes)
{
    const int huge = bytes >= (2u << 20);
    void *p = NULL;
    if (posix_memalign(&p, huge ? 2u << 20 : 64, bytes ? bytes : 64) != 0)
        return NULL;
    if (huge)
        madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);   /* every page faulted in now, not on the packet path */
    return p;
}

/* A copy of `bytes` at src, aligned as ns_table_alloc's; the copy faults its pages
 * in (no zeroing pass first). Freed with free(). */
static inline void *ns_table_copy(const void *src, uint64_t bytes)
{
    const int huge = bytes >= (2u << 20);
    void *p = NULL;
    if (posix_memalign(&p, huge ? 2u << 20 : 64, bytes ? bytes : 64) != 0)
        return NULL;
    if (huge)
        madvise(p, bytes, MADV_HUGEPAGE);
    memcpy(p, src, bytes);
    return p;
}

static inline int hidx_init(struct hidx *h, uint64_t max_entries)
{
    uint32_t size = ns_pow2_at_least(max_entries * 2);
    h->mask = size - 1;
    h->pad = 0;
    h->slots = ns_table_alloc((uint64_t)size * sizeof(struct hslot));
    if (!h->slots)
        return -1;
    return 0;
}

static inline void hidx_fini(struct hidx *h)
{
    free(h->slots);
    h->slots = NULL;
}

static inline uint64_t hidx_bytes(const struct hidx *h)
{
    return h->slots ? ((uint64_t)h->mask + 1) * sizeof(struct hslot) : 0;
}

static inline void hidx_insert(struct hidx *h, uint32_t hash, uint32_t ref)
{
    uint32_t i = hash & h->mask;
    while (h->slots[i].ref)
        i = (i + 1) & h->mask;
    h->slots[i].hash = hash;
    h->slots[i].ref = ref;
}

/* Slot index holding (hash, ref), or NS_NONE32. */
static inline uint32_t hidx_find(const struct hidx *h, uint32_t hash, uint32_t ref)
{
    for (uint32_t i = hash & h->mask; h->slots[i].ref; i = (i + 1) & h->mask)
        if (h->slots[i].ref == ref)
            return i;
    return NS_NONE32;
}

static inline void hidx_remove_at(struct hidx *h, uint32_t i)
{
    uint32_t mask = h->mask;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!h->slots[j].ref)
            break;
        uint32_t k = h->slots[j].hash & mask;
        /* move slot j into the hole at i unless its home lies in (i, j] */
        int stay = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stay) {
            h->slots[i] = h->slots[j];
            i = j;
        }
    }
    h->slots[i].hash = 0;
    h->slots[i].ref = 0;
}

/* ---- addresses ---- */
/* The Internet checksum (RFC 1071): 16-bit big-endian words summed, then folded
 * and complemented. Shared by the rewriter and the switch's own replies. */
static inline uint16_t ns_csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static inline uint32_t ns_csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i + 1 < len; i += 2)
        sum += rd16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static inline int addr_is_v4mapped(const uint8_t *a)
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, pfx, 12) == 0;
}

#endif
