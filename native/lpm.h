/* Longest-prefix match over 128-bit addresses (IPv4 as ::ffff:0:0/96 + L):
 * prefix -> class id, class -> block ids (CSR).
 *
 * Design: binary search on prefix lengths with markers (Waldvogel et al.).
 * All distinct lengths are sorted; one hash table holds, keyed by
 * (length, masked address), the real prefixes and the markers that the
 * binary search needs. Every entry carries its "best matching prefix" (bmp):
 * the longest real prefix covering it (itself when real). A lookup probes
 * at most ceil(log2(distinct lengths + 1)) <= 8 lengths. Built at seal. */
#ifndef NS_LPM_H
#define NS_LPM_H

#include "nsint.h"

struct lpm_prefix {          /* as added; becomes a real entry at seal */
    uint8_t addr[16];        /* masked to plen */
    uint32_t class_id;
    uint8_t plen;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct lpm_prefix) == 24, "lpm_prefix has no padding");

struct lpm_node {            /* hashed: real prefix or marker */
    uint8_t addr[16];
    uint32_t bmp;            /* index into lpm.prefix of the best real prefix, or NS_NONE32 */
    uint8_t plen;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct lpm_node) == 24, "lpm_node has no padding");

struct lpm_class_block {
    uint32_t class_id;
    uint32_t block_id;
};

struct lpm {
    uint32_t max_prefixes, n_prefixes;
    uint32_t max_blocks, n_blocks;
    struct lpm_prefix *prefix;
    uint32_t *blk_off;       /* per prefix, after seal: span in cb[] of its class */
    uint32_t *blk_cnt;
    struct lpm_class_block *cb;   /* sorted by (class, block) at seal */
    uint32_t *blocks;        /* block ids, CSR payload (cb[].block_id copied) */
    struct lpm_node *node;
    uint32_t n_nodes;
    uint8_t n_lens;
    uint8_t lens[129];       /* distinct lengths, ascending */
    uint8_t pad[2];
    struct hidx idx;
};

int lpm_init(struct lpm *l, uint32_t max_prefixes, uint32_t max_blocks);
void lpm_fini(struct lpm *l);
int lpm_add(struct lpm *l, const uint8_t *addr16, uint8_t plen, uint32_t class_id);
int lpm_add_block(struct lpm *l, uint32_t class_id, uint32_t block_id);
int lpm_seal(struct lpm *l);
uint64_t lpm_bytes(const struct lpm *l);
/* Index of the longest matching real prefix, or NS_NONE32 (class 0). */
uint32_t lpm_lookup(const struct lpm *l, const uint8_t *addr16);
static inline uint32_t lpm_class(const struct lpm *l, uint32_t pi)
{
    return pi == NS_NONE32 ? 0 : l->prefix[pi].class_id;
}

#endif
