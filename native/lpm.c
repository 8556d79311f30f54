/* LPM: binary search on prefix lengths with markers (see lpm.h). */
#include "lpm.h"

static void mask_addr(uint8_t *out, const uint8_t *in, unsigned plen)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned bits = plen > i * 8 ? plen - i * 8 : 0;
        uint8_t m = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
        out[i] = in[i] & m;
    }
}

static uint32_t node_hash(const uint8_t *masked, unsigned plen)
{
    return ns_hash_words(masked, 16, 0x51ed270b27u + plen);
}

int lpm_init(struct lpm *l, uint32_t max_prefixes, uint32_t max_blocks)
{
    memset(l, 0, sizeof(*l));
    l->max_prefixes = max_prefixes;
    l->max_blocks = max_blocks;
    l->prefix = calloc(max_prefixes ? max_prefixes : 1, sizeof(*l->prefix));
    l->cb = calloc(max_blocks ? max_blocks : 1, sizeof(*l->cb));
    return (l->prefix && l->cb) ? 0 : -1;
}

void lpm_fini(struct lpm *l)
{
    free(l->prefix);
    free(l->blk_off);
    free(l->blk_cnt);
    free(l->cb);
    free(l->blocks);
    free(l->node);
    hidx_fini(&l->idx);
    memset(l, 0, sizeof(*l));
}

int lpm_add(struct lpm *l, const uint8_t *addr16, uint8_t plen, uint32_t class_id)
{
    if (plen > 128 || l->n_prefixes >= l->max_prefixes)
        return -1;
    struct lpm_prefix *p = &l->prefix[l->n_prefixes++];
    mask_addr(p->addr, addr16, plen);
    p->plen = plen;
    p->class_id = class_id;
    return 0;
}

int lpm_add_block(struct lpm *l, uint32_t class_id, uint32_t block_id)
{
    if (l->n_blocks >= l->max_blocks || class_id == 0 || block_id == 0)
        return -1;
    l->cb[l->n_blocks].class_id = class_id;
    l->cb[l->n_blocks].block_id = block_id;
    l->n_blocks++;
    return 0;
}

static uint32_t find_node(const struct lpm *l, const uint8_t *masked, unsigned plen)
{
    uint32_t h = node_hash(masked, plen);
    for (uint32_t i = h & l->idx.mask; l->idx.slots[i].ref; i = (i + 1) & l->idx.mask) {
        if (l->idx.slots[i].hash != h)
            continue;
        const struct lpm_node *n = &l->node[l->idx.slots[i].ref - 1];
        if (n->plen == plen && memcmp(n->addr, masked, 16) == 0)
            return l->idx.slots[i].ref - 1;
    }
    return NS_NONE32;
}

static uint32_t add_node(struct lpm *l, const uint8_t *masked, unsigned plen, uint32_t bmp)
{
    uint32_t ni = l->n_nodes++;
    memcpy(l->node[ni].addr, masked, 16);
    l->node[ni].plen = (uint8_t)plen;
    l->node[ni].bmp = bmp;
    hidx_insert(&l->idx, node_hash(masked, plen), ni + 1);
    return ni;
}

static int cmp_cb(const void *a, const void *b)
{
    const struct lpm_class_block *x = a, *y = b;
    if (x->class_id != y->class_id)
        return x->class_id < y->class_id ? -1 : 1;
    return (x->block_id > y->block_id) - (x->block_id < y->block_id);
}

int lpm_seal(struct lpm *l)
{
    uint32_t n = l->n_prefixes;
    /* class -> blocks: sort, dedup, then each prefix gets its class's span */
    qsort(l->cb, l->n_blocks, sizeof(*l->cb), cmp_cb);
    uint32_t w = 0;
    for (uint32_t i = 0; i < l->n_blocks; i++)
        if (w == 0 || cmp_cb(&l->cb[w - 1], &l->cb[i]) != 0)
            l->cb[w++] = l->cb[i];
    l->n_blocks = w;
    l->blocks = calloc(w ? w : 1, sizeof(uint32_t));
    l->blk_off = calloc(n ? n : 1, sizeof(uint32_t));
    l->blk_cnt = calloc(n ? n : 1, sizeof(uint32_t));
    if (!l->blocks || !l->blk_off || !l->blk_cnt)
        return -1;
    for (uint32_t i = 0; i < w; i++)
        l->blocks[i] = l->cb[i].block_id;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = l->prefix[i].class_id, lo = 0, hi = w;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (l->cb[mid].class_id < c) lo = mid + 1; else hi = mid;
        }
        uint32_t e = lo;
        while (e < w && l->cb[e].class_id == c)
            e++;
        l->blk_off[i] = lo;
        l->blk_cnt[i] = e - lo;
    }

    /* distinct lengths */
    uint8_t seen[129] = {0};
    for (uint32_t i = 0; i < n; i++)
        seen[l->prefix[i].plen] = 1;
    l->n_lens = 0;
    for (unsigned len = 0; len <= 128; len++)
        if (seen[len])
            l->lens[l->n_lens++] = (uint8_t)len;
    /* each prefix adds itself plus at most one marker per search level */
    unsigned levels = 0;
    while ((1u << levels) <= l->n_lens)
        levels++;
    uint64_t max_nodes = (uint64_t)n * (levels + 1);
    l->node = calloc(max_nodes ? max_nodes : 1, sizeof(*l->node));
    if (!l->node || hidx_init(&l->idx, max_nodes) != 0)
        return -1;

    /* pass 1: real prefixes (a duplicate prefix is an error) */
    for (uint32_t i = 0; i < n; i++) {
        const struct lpm_prefix *p = &l->prefix[i];
        if (find_node(l, p->addr, p->plen) != NS_NONE32)
            return -1;
        add_node(l, p->addr, p->plen, i);
    }
    uint32_t n_real = l->n_nodes;
    /* pass 2: markers on each real prefix's search path */
    uint8_t m[16];
    for (uint32_t i = 0; i < n; i++) {
        const struct lpm_prefix *p = &l->prefix[i];
        int lo = 0, hi = l->n_lens - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            unsigned ml = l->lens[mid];
            if (ml == p->plen)
                break;
            if (ml > p->plen) {
                hi = mid - 1;
                continue;
            }
            mask_addr(m, p->addr, ml);
            uint32_t ni = find_node(l, m, ml);
            if (ni == NS_NONE32) {
                /* bmp: the longest real prefix of length <= ml covering m */
                uint32_t bmp = NS_NONE32;
                uint8_t mm[16];
                for (int k = mid; k >= 0 && bmp == NS_NONE32; k--) {
                    mask_addr(mm, m, l->lens[k]);
                    uint32_t r = find_node(l, mm, l->lens[k]);
                    if (r != NS_NONE32 && r < n_real)
                        bmp = l->node[r].bmp;
                }
                add_node(l, m, ml, bmp);
            }
            lo = mid + 1;
        }
    }
    return 0;
}

uint32_t lpm_lookup(const struct lpm *l, const uint8_t *addr16)
{
    uint32_t best = NS_NONE32;
    if (!l->n_lens)
        return best;
    int lo = 0, hi = l->n_lens - 1;
    uint8_t m[16];
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        unsigned ml = l->lens[mid];
        mask_addr(m, addr16, ml);
        uint32_t ni = find_node(l, m, ml);
        if (ni != NS_NONE32) {
            best = l->node[ni].bmp;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best;
}

uint64_t lpm_bytes(const struct lpm *l)
{
    return (uint64_t)l->max_prefixes * (sizeof(struct lpm_prefix) + (l->blk_off ? 8 : 0)) +
           (uint64_t)l->max_blocks * sizeof(struct lpm_class_block) +
           (l->blocks ? (uint64_t)l->n_blocks * 4 : 0) +
           (l->node ? (uint64_t)l->n_nodes * sizeof(struct lpm_node) : 0) + hidx_bytes(&l->idx);
}
