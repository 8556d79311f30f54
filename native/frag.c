/* Fragment table (see frag.h). */
#include "frag.h"

static uint32_t key_hash(const struct frag_key *k)
{
    return ns_hash_words(k, sizeof(*k), 0x3243f6a8885a308dull);
}

int frag_init(struct frag_table *f, uint32_t cap)
{
    memset(f, 0, sizeof(*f));
    if (cap == 0 || cap > (1u << 30))
        return -1;
    f->cap = cap;
    f->free_head = f->head = f->tail = NS_NONE32;
    f->e = calloc(cap, sizeof(*f->e));
    if (!f->e || hidx_init(&f->idx, cap) != 0) {
        frag_fini(f);
        return -1;
    }
    return 0;
}

void frag_fini(struct frag_table *f)
{
    free(f->e);
    f->e = NULL;
    hidx_fini(&f->idx);
}

uint64_t frag_bytes(const struct frag_table *f)
{
    return (uint64_t)f->cap * sizeof(struct frag_entry) + hidx_bytes(&f->idx);
}

static uint32_t find(const struct frag_table *f, const struct frag_key *k, uint32_t h)
{
    for (uint32_t s = h & f->idx.mask; f->idx.slots[s].ref; s = (s + 1) & f->idx.mask) {
        if (f->idx.slots[s].hash != h)
            continue;
        uint32_t i = f->idx.slots[s].ref - 1;
        if (memcmp(&f->e[i].key, k, sizeof(*k)) == 0)
            return i;
    }
    return NS_NONE32;
}

static void unlink_fifo(struct frag_table *f, uint32_t i)
{
    struct frag_entry *e = &f->e[i];
    if (e->prev != NS_NONE32) f->e[e->prev].next = e->next; else f->head = e->next;
    if (e->next != NS_NONE32) f->e[e->next].prev = e->prev; else f->tail = e->prev;
}

static void append_fifo(struct frag_table *f, uint32_t i)
{
    struct frag_entry *e = &f->e[i];
    e->next = NS_NONE32;
    e->prev = f->tail;
    if (f->tail != NS_NONE32) f->e[f->tail].next = i; else f->head = i;
    f->tail = i;
}

static void delete(struct frag_table *f, uint32_t i)
{
    struct frag_entry *e = &f->e[i];
    uint32_t s = hidx_find(&f->idx, e->hash, i + 1);
    if (s != NS_NONE32)
        hidx_remove_at(&f->idx, s);
    unlink_fifo(f, i);
    e->used = 0;
    e->next = f->free_head;
    f->free_head = i;
    f->n_used--;
}

int frag_lookup(const struct frag_table *f, const struct frag_key *k, uint64_t now,
                uint16_t *port)
{
    uint32_t i = find(f, k, key_hash(k));
    if (i == NS_NONE32 || f->e[i].expiry <= now)
        return -1;
    *port = f->e[i].port;
    return 0;
}

uint32_t frag_reclaim(struct frag_table *f, uint64_t now, uint32_t budget)
{
    uint32_t n = 0;
    while (n < budget && f->head != NS_NONE32 && f->e[f->head].expiry <= now) {
        delete(f, f->head);
        n++;
    }
    return n;
}

int frag_record(struct frag_table *f, const struct frag_key *k, uint16_t port, uint64_t now)
{
    uint32_t h = key_hash(k);
    uint32_t i = find(f, k, h);
    if (i != NS_NONE32) {           /* re-recorded (expired or not): refresh */
        f->e[i].port = port;
        f->e[i].expiry = ns_sat_add(now, NS_FRAG_TIMEOUT);
        unlink_fifo(f, i);
        append_fifo(f, i);
        return 0;
    }
    if (f->free_head == NS_NONE32 && f->bump == f->cap)
        frag_reclaim(f, now, 1);
    if (f->free_head != NS_NONE32) {
        i = f->free_head;
        f->free_head = f->e[i].next;
    } else if (f->bump < f->cap) {
        i = f->bump++;
    } else {
        return -1;
    }
    struct frag_entry *e = &f->e[i];
    e->key = *k;
    e->hash = h;
    e->port = port;
    e->used = 1;
    e->pad = 0;
    e->expiry = ns_sat_add(now, NS_FRAG_TIMEOUT);
    hidx_insert(&f->idx, h, i + 1);
    append_fifo(f, i);
    f->n_used++;
    return 0;
}
