/* Rule table (see rules.h). */
#include "rules.h"

static uint32_t key_hash(const struct rule_key *k)
{
    return ns_hash_words(k, sizeof(*k), 0x7a3c5e1du);
}

int rules_init(struct rules *r, uint32_t max_keys, uint32_t max_entries)
{
    memset(r, 0, sizeof(*r));
    r->max_keys = max_keys;
    r->max_entries = max_entries;
    r->keys = calloc(max_keys ? max_keys : 1, sizeof(*r->keys));
    r->entry = calloc(max_entries ? max_entries : 1, sizeof(*r->entry));
    r->entry_key = calloc(max_entries ? max_entries : 1, sizeof(uint32_t));
    if (!r->keys || !r->entry || !r->entry_key || hidx_init(&r->idx, max_keys) != 0)
        return -1;
    return 0;
}

void rules_fini(struct rules *r)
{
    free(r->keys);
    free(r->entry);
    free(r->entry_key);
    hidx_fini(&r->idx);
    memset(r, 0, sizeof(*r));
}

static uint32_t find_key(const struct rules *r, const struct rule_key *k, uint32_t h)
{
    for (uint32_t i = h & r->idx.mask; r->idx.slots[i].ref; i = (i + 1) & r->idx.mask) {
        if (r->idx.slots[i].hash != h)
            continue;
        uint32_t ki = r->idx.slots[i].ref - 1;
        if (memcmp(&r->keys[ki].key, k, sizeof(*k)) == 0)
            return ki;
    }
    return NS_NONE32;
}

int rules_add(struct rules *r, const struct rule_key *k, uint8_t proto, uint16_t lo,
              uint16_t hi, uint32_t rule_id)
{
    if (r->n_entries >= r->max_entries)
        return -1;
    uint32_t h = key_hash(k);
    uint32_t ki = find_key(r, k, h);
    if (ki == NS_NONE32) {
        if (r->n_keys >= r->max_keys)
            return -1;
        ki = r->n_keys++;
        r->keys[ki].key = *k;
        r->keys[ki].cnt = 0;
        hidx_insert(&r->idx, h, ki + 1);
    }
    struct rule_entry *e = &r->entry[r->n_entries];
    e->rule_id = rule_id;
    e->lo = lo;
    e->hi = hi;
    e->proto = proto;
    memset(e->pad, 0, sizeof(e->pad));
    r->entry_key[r->n_entries++] = ki;
    r->keys[ki].cnt++;
    return 0;
}

static int cmp_proto_lo(const void *a, const void *b)
{
    const struct rule_entry *x = a, *y = b;
    if (x->proto != y->proto)
        return (x->proto > y->proto) - (x->proto < y->proto);
    return (x->lo > y->lo) - (x->lo < y->lo);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Min-heap of entries by rule id (the sweep's active set). */
static void heap_push(const struct rule_entry **h, uint32_t *n, const struct rule_entry *e)
{
    uint32_t i = (*n)++;
    while (i && h[(i - 1) / 2]->rule_id > e->rule_id) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static void heap_pop(const struct rule_entry **h, uint32_t *n)
{
    const struct rule_entry *last = h[--(*n)];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1]->rule_id < h[c]->rule_id)
            c++;
        if (h[c]->rule_id >= last->rule_id)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
}

/* Turns one protocol's entries (sorted by lo) into disjoint port segments, each
 * carrying the smallest rule id that covers it: a sweep over the range ends with
 * a min-heap of the covering entries. Writes at most 2m segments; returns how many. */
static uint32_t segments_of(const struct rule_entry *in, uint32_t m, struct rule_entry *out,
                            uint32_t *bounds, const struct rule_entry **heap)
{
    uint32_t nb = 0, nh = 0, ns = 0, next = 0;
    for (uint32_t i = 0; i < m; i++) {
        bounds[nb++] = in[i].lo;
        bounds[nb++] = (uint32_t)in[i].hi + 1;
    }
    qsort(bounds, nb, sizeof(*bounds), cmp_u32);
    for (uint32_t b = 0; b + 1 < nb; b++) {
        uint32_t lo = bounds[b], hi = bounds[b + 1] - 1;
        if (bounds[b + 1] == lo)
            continue;
        while (next < m && in[next].lo <= lo)
            heap_push(heap, &nh, &in[next++]);
        while (nh && heap[0]->hi < lo)
            heap_pop(heap, &nh);
        if (!nh)
            continue;
        uint32_t id = heap[0]->rule_id;
        if (ns && out[ns - 1].rule_id == id && (uint32_t)out[ns - 1].hi + 1 == lo) {
            out[ns - 1].hi = (uint16_t)hi;
            continue;
        }
        out[ns].rule_id = id;
        out[ns].lo = (uint16_t)lo;
        out[ns].hi = (uint16_t)hi;
        out[ns].proto = in[0].proto;
        memset(out[ns].pad, 0, sizeof(out[ns].pad));
        ns++;
    }
    return ns;
}

int rules_seal(struct rules *r)
{
    /* Group the entries by key (counting sort), then replace each key's entries by
     * disjoint (protocol, port range) segments carrying the smallest rule id that
     * covers them, sorted by (protocol, lo): a lookup is two binary searches,
     * however many rules share a key. */
    uint32_t n = r->n_entries, off = 0;
    for (uint32_t k = 0; k < r->n_keys; k++) {
        r->keys[k].off = off;
        off += r->keys[k].cnt;
    }
    struct rule_entry *grouped = calloc(n ? n : 1, sizeof(*grouped));
    struct rule_entry *segs = calloc(2 * (size_t)n + 1, sizeof(*segs));
    uint32_t *fill = calloc(r->n_keys ? r->n_keys : 1, sizeof(uint32_t));
    uint32_t *bounds = calloc(2 * (size_t)n + 1, sizeof(uint32_t));
    const struct rule_entry **heap = calloc(n ? n : 1, sizeof(*heap));
    if (!grouped || !segs || !fill || !bounds || !heap) {
        free(grouped); free(segs); free(fill); free(bounds); free(heap);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = r->entry_key[i];
        grouped[r->keys[k].off + fill[k]++] = r->entry[i];
    }
    uint32_t ns = 0;
    for (uint32_t k = 0; k < r->n_keys; k++) {
        struct rule_entry *span = grouped + r->keys[k].off;
        uint32_t cnt = r->keys[k].cnt, first = ns;
        qsort(span, cnt, sizeof(*span), cmp_proto_lo);
        for (uint32_t i = 0; i < cnt;) {
            uint32_t j = i;
            while (j < cnt && span[j].proto == span[i].proto)
                j++;
            ns += segments_of(span + i, j - i, segs + ns, bounds, heap);
            i = j;
        }
        r->keys[k].off = first;
        r->keys[k].cnt = ns - first;
    }
    free(r->entry);
    r->entry = segs;          /* now the segments; at most 2n + 1 */
    r->n_entries = ns;
    r->max_entries = 2 * n + 1;   /* the segment array's capacity (no add after seal) */
    free(grouped); free(fill); free(bounds); free(heap);
    free(r->entry_key);
    r->entry_key = NULL;
    return 0;
}

uint64_t rules_bytes(const struct rules *r)
{
    return (uint64_t)r->max_keys * sizeof(struct rule_keyrec) +
           (uint64_t)r->max_entries * (sizeof(struct rule_entry) + (r->entry_key ? 4 : 0)) +
           hidx_bytes(&r->idx);
}

/* Smallest rule id of the segment of `proto` covering dport in span, or NS_NONE32. */
static uint32_t span_match(const struct rule_entry *e, uint32_t n, uint8_t proto, uint16_t dport)
{
    /* last segment with (proto, lo) <= (proto, dport) */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (e[mid].proto < proto || (e[mid].proto == proto && e[mid].lo <= dport))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NS_NONE32;
    const struct rule_entry *s = &e[lo - 1];
    return (s->proto == proto && s->lo <= dport && dport <= s->hi) ? s->rule_id : NS_NONE32;
}

uint32_t rules_match(const struct rules *r, const struct rule_key *k, uint8_t proto,
                     uint16_t dport, int any_proto_only)
{
    uint32_t ki = find_key(r, k, key_hash(k));
    if (ki == NS_NONE32)
        return NS_NONE32;
    const struct rule_entry *e = r->entry + r->keys[ki].off;
    uint32_t n = r->keys[ki].cnt;
    uint32_t best = span_match(e, n, 0, dport);        /* entries for any protocol */
    if (!any_proto_only && proto != 0) {
        uint32_t id = span_match(e, n, proto, dport);
        if (id < best)
            best = id;
    }
    return best;
}
