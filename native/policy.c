/* Policy rule table (see policy.h). */
#include "policy.h"

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

static int cmp_entry(const void *a, const void *b)
{
    const struct rule_entry *x = a, *y = b;
    return (x->rule_id > y->rule_id) - (x->rule_id < y->rule_id);
}

int rules_seal(struct rules *r)
{
    /* counting sort by key index, then sort each span by rule id */
    uint32_t off = 0;
    for (uint32_t k = 0; k < r->n_keys; k++) {
        r->keys[k].off = off;
        off += r->keys[k].cnt;
    }
    struct rule_entry *sorted = calloc(r->n_entries ? r->n_entries : 1, sizeof(*sorted));
    uint32_t *fill = calloc(r->n_keys ? r->n_keys : 1, sizeof(uint32_t));
    if (!sorted || !fill) {
        free(sorted);
        free(fill);
        return -1;
    }
    for (uint32_t i = 0; i < r->n_entries; i++) {
        uint32_t k = r->entry_key[i];
        sorted[r->keys[k].off + fill[k]++] = r->entry[i];
    }
    for (uint32_t k = 0; k < r->n_keys; k++)
        qsort(sorted + r->keys[k].off, r->keys[k].cnt, sizeof(*sorted), cmp_entry);
    memcpy(r->entry, sorted, (size_t)r->n_entries * sizeof(*sorted));
    free(sorted);
    free(fill);
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

uint32_t rules_match(const struct rules *r, const struct rule_key *k, uint8_t proto,
                     uint16_t dport, int any_proto_only)
{
    uint32_t ki = find_key(r, k, key_hash(k));
    if (ki == NS_NONE32)
        return NS_NONE32;
    const struct rule_entry *e = r->entry + r->keys[ki].off;
    for (uint32_t i = 0, n = r->keys[ki].cnt; i < n; i++) {
        if (e[i].proto != 0 && (any_proto_only || e[i].proto != proto))
            continue;
        if (e[i].lo <= dport && dport <= e[i].hi)
            return e[i].rule_id;   /* span is sorted: first match is smallest */
    }
    return NS_NONE32;
}
