/* Connection tracker (see conntrack.h). */
#include "conntrack.h"
#include "sanity.h"

static const uint8_t state_tclass[CT_STATE_COUNT] = {
    [CT_FREE] = CT_T10,
    [CT_TCP_SYN_SENT] = CT_T30,
    [CT_TCP_SYN_RECV] = CT_T30,
    [CT_TCP_ESTABLISHED] = CT_T86400,
    [CT_TCP_FIN_WAIT] = CT_T120,
    [CT_TCP_TIME_WAIT] = CT_T30,
    [CT_TCP_CLOSED] = CT_T10,
    [CT_UDP_FIRST] = CT_T30,
    [CT_UDP_REPLIED] = CT_T180,
    [CT_SCTP_INIT] = CT_T30,
    [CT_SCTP_ESTABLISHED] = CT_T86400,
    [CT_SCTP_CLOSED] = CT_T10,
    [CT_ICMP] = CT_T30,
};

static const uint64_t tclass_ns[CT_TCLASS_COUNT] = {
    [CT_T10] = 10 * NS_SEC,
    [CT_T30] = 30 * NS_SEC,
    [CT_T120] = 120 * NS_SEC,
    [CT_T180] = 180 * NS_SEC,
    [CT_T86400] = 86400 * NS_SEC,
};

static uint32_t key_hash(const struct ct_key *k)
{
    return ns_hash_words(k, sizeof(*k), 0x6c8e9cf570932bd5ull);
}

static void key_reverse(struct ct_key *r, const struct ct_key *k)
{
    memcpy(r->src, k->dst, 16);
    memcpy(r->dst, k->src, 16);
    r->sport = k->dport;
    r->dport = k->sport;
    r->zone = k->zone;
    r->proto = k->proto;
    r->pad = 0;
}

int ct_init(struct ct_table *ct, uint32_t cap)
{
    memset(ct, 0, sizeof(*ct));
    if (cap == 0 || cap > (1u << 30))
        return -1;
    ct->cap = cap;
    ct->free_head = NS_NONE32;
    for (int c = 0; c < CT_TCLASS_COUNT; c++)
        ct->fifo[c].head = ct->fifo[c].tail = NS_NONE32;
    ct->e = calloc(cap, sizeof(*ct->e));
    if (!ct->e || hidx_init(&ct->idx, 2ull * cap) != 0) {
        ct_fini(ct);
        return -1;
    }
    ns_prefault(ct->e, (uint64_t)cap * sizeof(*ct->e));
    return 0;
}

void ct_fini(struct ct_table *ct)
{
    free(ct->e);
    ct->e = NULL;
    hidx_fini(&ct->idx);
}

uint64_t ct_bytes(const struct ct_table *ct)
{
    return (uint64_t)ct->cap * sizeof(struct ct_entry) + hidx_bytes(&ct->idx);
}

/* ---- FIFOs ---- */
static void fifo_unlink(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_fifo *f = &ct->fifo[e->tclass];
    if (e->prev != NS_NONE32) ct->e[e->prev].next = e->next; else f->head = e->next;
    if (e->next != NS_NONE32) ct->e[e->next].prev = e->prev; else f->tail = e->prev;
}

static void fifo_append(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_fifo *f = &ct->fifo[e->tclass];
    e->next = NS_NONE32;
    e->prev = f->tail;
    if (f->tail != NS_NONE32) ct->e[f->tail].next = i; else f->head = i;
    f->tail = i;
}

/* ---- lookup ---- */
static uint32_t find_match(const struct ct_table *ct, const struct ct_key *key,
                           const struct ct_key *rkey, uint32_t h, uint64_t now,
                           int skip_expired, int *dir)
{
    const struct hidx *x = &ct->idx;
    for (uint32_t s = h & x->mask; x->slots[s].ref; s = (s + 1) & x->mask) {
        if (x->slots[s].hash != h)
            continue;
        uint32_t ref = x->slots[s].ref - 1;
        uint32_t i = ref >> 1;
        int d = (int)(ref & 1);
        const struct ct_entry *e = &ct->e[i];
        if (memcmp(&e->key, d ? rkey : key, sizeof(*key)) != 0)
            continue;
        if (skip_expired && e->expiry <= now)
            continue;
        /* a symmetric key (src == dst, sport == dport) is the original direction */
        if (d && memcmp(key, rkey, sizeof(*key)) == 0)
            d = CT_DIR_ORIG;
        *dir = d;
        return i;
    }
    return NS_NONE32;
}

uint32_t ct_key_hash(const struct ct_key *k)
{
    return key_hash(k);
}

uint32_t ct_lookup(struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir)
{
    return ct_lookup_hashed(ct, key, key_hash(key), now, dir);
}

uint32_t ct_lookup_hashed(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint64_t now,
                          int *dir)
{
    struct ct_key rkey;
    key_reverse(&rkey, key);
    for (;;) {
        uint32_t i = find_match(ct, key, &rkey, h, now, 0, dir);
        if (i == NS_NONE32 || ct->e[i].expiry > now)
            return i;
        ct_delete(ct, i);   /* expired: absent; free it now */
    }
}

uint32_t ct_find(const struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir)
{
    struct ct_key rkey;
    key_reverse(&rkey, key);
    return find_match(ct, key, &rkey, key_hash(key), now, 1, dir);
}

/* ---- insert / delete ---- */
static uint32_t ms_stamp(uint64_t ns)
{
    return (uint32_t)(ns / 1000000u);
}

void ct_delete(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_key rkey;
    key_reverse(&rkey, &e->key);
    uint32_t s = hidx_find(&ct->idx, key_hash(&e->key), (i << 1) + 1);
    if (s != NS_NONE32)
        hidx_remove_at(&ct->idx, s);
    s = hidx_find(&ct->idx, key_hash(&rkey), (i << 1 | 1) + 1);
    if (s != NS_NONE32)
        hidx_remove_at(&ct->idx, s);
    fifo_unlink(ct, i);
    e->state = CT_FREE;
    e->next = ct->free_head;
    ct->free_head = i;
    ct->n_used--;
}

/* FIFO order is by qexp_ms (the expiry when queued). A refresh requeues only when
 * the expiry moved at least CT_REQUEUE_MS past it, so a busy connection is moved at
 * most once a second, not once a packet; an entry's real expiry is then in
 * [qexp, qexp + CT_REQUEUE_MS). Reclaim can be up to that late, never early. */
#define CT_REQUEUE_MS 1000u

static int stamp_passed(uint32_t stamp, uint32_t now_ms)
{
    return (int32_t)(stamp - now_ms) <= 0;
}

uint32_t ct_reclaim(struct ct_table *ct, uint64_t now, uint32_t budget)
{
    uint32_t done = 0;
    int progress = 1;
    while (done < budget && progress) {
        progress = 0;
        for (int c = 0; c < CT_TCLASS_COUNT && done < budget; c++) {
            uint32_t h = ct->fifo[c].head;
            if (h != NS_NONE32 && ct->e[h].expiry <= now) {
                ct_delete(ct, h);
                done++;
                progress = 1;
            }
        }
    }
    return done;
}

/* Frees one expired entry if there is any: only entries whose queued stamp has
 * passed can have expired, and they are at the FIFO heads. */
static int ct_reclaim_one(struct ct_table *ct, uint64_t now)
{
    uint32_t now_ms = ms_stamp(now);
    for (int c = 0; c < CT_TCLASS_COUNT; c++) {
        for (uint32_t i = ct->fifo[c].head; i != NS_NONE32 && stamp_passed(ct->e[i].qexp_ms, now_ms);
             i = ct->e[i].next) {
            if (ct->e[i].expiry <= now) {
                ct_delete(ct, i);
                return 1;
            }
        }
    }
    return 0;
}

uint32_t ct_insert(struct ct_table *ct, const struct ct_key *key, uint8_t state, uint64_t now)
{
    uint32_t i;
    if (ct->free_head == NS_NONE32 && ct->bump == ct->cap)
        ct_reclaim_one(ct, now);   /* "full" means every entry is live (docs/pipeline.md) */
    if (ct->free_head != NS_NONE32) {
        i = ct->free_head;
        ct->free_head = ct->e[i].next;
    } else if (ct->bump < ct->cap) {
        i = ct->bump++;
    } else {
        return NS_NONE32;
    }
    struct ct_entry *e = &ct->e[i];
    struct ct_key rkey;
    e->key = *key;
    e->key.pad = 0;
    uint32_t hash = key_hash(&e->key);
    key_reverse(&rkey, &e->key);
    e->state = state;
    e->fin_dir = 0;
    e->pad = 0;
    e->tclass = state_tclass[state];
    e->expiry = now + tclass_ns[e->tclass];
    e->qexp_ms = ms_stamp(e->expiry);
    hidx_insert(&ct->idx, hash, (i << 1) + 1);
    hidx_insert(&ct->idx, key_hash(&rkey), (i << 1 | 1) + 1);
    fifo_append(ct, i);
    ct->n_used++;
    return i;
}

void ct_refresh(struct ct_table *ct, uint32_t i, uint8_t state, uint64_t now)
{
    struct ct_entry *e = &ct->e[i];
    uint8_t tc = state_tclass[state];
    e->state = state;
    e->expiry = now + tclass_ns[tc];
    if (tc == e->tclass && ms_stamp(e->expiry) - e->qexp_ms < CT_REQUEUE_MS)
        return;   /* no other entry touched: the common case of an established packet */
    fifo_unlink(ct, i);
    e->tclass = tc;
    e->qexp_ms = ms_stamp(e->expiry);
    fifo_append(ct, i);
}

/* ---- per-protocol transitions (docs/pipeline.md state table) ---- */
static uint8_t tcp_next(struct ct_entry *e, int dir, uint8_t flags)
{
    if (flags & NS_TCP_RST)
        return CT_TCP_CLOSED;
    switch (e->state) {
    case CT_TCP_SYN_SENT:
        if (dir == CT_DIR_REPLY && (flags & NS_TCP_SYN) && (flags & NS_TCP_ACK))
            return CT_TCP_SYN_RECV;
        break;
    case CT_TCP_SYN_RECV:
        if (dir == CT_DIR_ORIG && (flags & NS_TCP_ACK) && !(flags & NS_TCP_SYN))
            return CT_TCP_ESTABLISHED;
        break;
    case CT_TCP_ESTABLISHED:
        if (flags & NS_TCP_FIN) {
            e->fin_dir = (uint8_t)dir;
            return CT_TCP_FIN_WAIT;
        }
        break;
    case CT_TCP_FIN_WAIT:
        if ((flags & NS_TCP_FIN) && dir != e->fin_dir)
            return CT_TCP_TIME_WAIT;
        break;
    default:
        break;
    }
    return e->state;
}

static uint8_t sctp_next(const struct ct_entry *e, int dir, uint8_t chunk)
{
    if (chunk == NS_SCTP_ABORT || chunk == NS_SCTP_SHUTDOWN || chunk == NS_SCTP_SHUTDOWN_ACK ||
        chunk == NS_SCTP_SHUTDOWN_COMPLETE)
        return CT_SCTP_CLOSED;
    if (e->state == CT_SCTP_INIT && dir == CT_DIR_REPLY && chunk == NS_SCTP_INIT_ACK)
        return CT_SCTP_ESTABLISHED;
    return e->state;
}

void ct_update(struct ct_table *ct, uint32_t i, int dir, uint8_t l4info, uint64_t now)
{
    struct ct_entry *e = &ct->e[i];
    uint8_t s = e->state;
    switch (e->key.proto) {
    case 6:
        s = tcp_next(e, dir, l4info);
        break;
    case 17:
        if (dir == CT_DIR_REPLY)
            s = CT_UDP_REPLIED;
        break;
    case 132:
        s = sctp_next(e, dir, l4info);
        break;
    default:   /* ICMP echo: one state */
        break;
    }
    ct_refresh(ct, i, s, now);
}
