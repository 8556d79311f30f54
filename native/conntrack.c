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
    [CT_TCP_LAST_ACK] = CT_T30,
};

static const uint64_t tclass_ns[CT_TCLASS_COUNT] = {
    [CT_T10] = 10 * NS_SEC,
    [CT_T30] = 30 * NS_SEC,
    [CT_T120] = 120 * NS_SEC,
    [CT_T180] = 180 * NS_SEC,
    [CT_T86400] = 86400 * NS_SEC,
};

uint32_t ct_key_hash(const struct ct_key *k)
{
    return ns_hash_words(k, sizeof(*k), 0x6c8e9cf570932bd5ull);
}

static int is_icmp(uint8_t proto)
{
    return proto == NS_PROTO_ICMP || proto == NS_PROTO_ICMPV6;
}

/* The reply key of `k` whose destination is translated to (xdst, xport) and source to
 * (xsrc, xsport), NULL where not: the one definition both entry points share. */
static void reply_of(const struct ct_key *k, const uint8_t *xdst, uint16_t xport, const uint8_t *xsrc,
                     uint16_t xsport, struct ct_key *r)
{
    memcpy(r->src, xdst ? xdst : k->dst, 16);
    memcpy(r->dst, xsrc ? xsrc : k->src, 16);
    r->sport = xdst ? xport : k->dport;
    r->dport = xsrc ? xsport : k->sport;
    r->zone = k->zone;
    r->proto = k->proto;
    r->echo = is_icmp(k->proto) ? (uint8_t)(k->echo ^ 1) : 0;
}

void ct_reply_of(const struct ct_key *k, const struct ct_nat *n, struct ct_key *r)
{
    const int xd = n && (n->flags & CT_NAT_DST), xs = n && (n->flags & CT_NAT_SRC);
    reply_of(k, xd ? n->xdst : NULL, xd ? n->xport : 0, xs ? n->xsrc : NULL, xs ? n->xsport : 0, r);
}

void ct_reply_key(const struct ct_entry *e, struct ct_key *r)
{
    /* from the entry's fields: find_match calls this for every reply reference it
     * meets, so no ct_nat is assembled on the way */
    const int xd = e->nat & CT_NAT_DST, xs = e->nat & CT_NAT_SRC;
    reply_of(&e->key, xd ? e->xdst : NULL, e->xport, xs ? e->xsrc : NULL, e->xsport, r);
}

/* ---- lookup ---- */
/* Entry i, met through a reference in direction d, if it answers to key (*dir set). */
static int entry_matches(const struct ct_entry *e, const struct ct_key *key, int d, int *dir)
{
    struct ct_key rk;
    if (d == CT_DIR_ORIG) {
        if (memcmp(&e->key, key, sizeof(*key)) != 0)
            return 0;
    } else {
        ct_reply_key(e, &rk);
        if (memcmp(&rk, key, sizeof(*key)) != 0)
            return 0;
        /* a symmetric key (its own reply key) is the original direction */
        if (memcmp(&e->key, key, sizeof(*key)) == 0)
            d = CT_DIR_ORIG;
    }
    *dir = d;
    return 1;
}

static uint32_t find_match(const struct ct_table *ct, const struct ct_key *key, uint32_t h,
                           uint64_t now, int skip_expired, int *dir)
{
    const struct ct_index *x = &ct->idx;
    const uint16_t fp = ctx_fp(h);
    /* at most every bucket once: in a small table every bucket may have overflowed */
    for (uint32_t bi = h & x->mask, n = 0; n <= x->mask; bi = (bi + 1) & x->mask, n++) {
        const struct ctx_bucket *b = &x->b[bi];
        for (int k = 0; k < CTX_SLOTS; k++) {
            if (!b->ref[k] || (b->tag[k] & CTX_FP) != fp)
                continue;
            uint32_t ref = b->ref[k] - 1, i = ref >> 1;
            const struct ct_entry *e = &ct->e[i];
            if (!entry_matches(e, key, (int)(ref & 1), dir) || (skip_expired && e->expiry <= now))
                continue;
            return i;
        }
        if (!b->overflow)   /* nothing homed here or before lies further on */
            break;
    }
    return NS_NONE32;
}

uint32_t ct_lookup(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint64_t now,
                   int *dir)
{
    for (;;) {
        uint32_t i = find_match(ct, key, h, now, 0, dir);
        if (i == NS_NONE32 || ct->e[i].expiry > now)
            return i;
        ct_report(ct, i, NS_EV_EXPIRED, now);   /* expired: absent; free it now */
        ct_delete(ct, i);
    }
}

uint32_t ct_find(const struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir)
{
    return find_match(ct, key, ct_key_hash(key), now, 1, dir);
}

static int has_ports(uint8_t proto)
{
    return proto == NS_PROTO_TCP || proto == NS_PROTO_UDP || proto == NS_PROTO_SCTP;
}

int ct_choose_source_port(struct ct_table *ct, const struct ct_key *key, struct ct_nat *nat,
                          uint64_t now)
{
    const int ports = has_ports(key->proto);
    const uint32_t h = ns_flow_hash(key->src, key->dst, key->sport, key->dport, key->proto);
    const int keep = !ports || (key->sport >= CT_SNAT_PORT_LO &&
                                key->sport < CT_SNAT_PORT_LO + CT_SNAT_PORT_N);
    struct ct_key r;
    int dir;
    for (uint32_t i = 0; i < (ports ? CT_SNAT_TRIES : 1u); i++) {
        nat->xsport = (i == 0 && keep) ? key->sport
                                       : (uint16_t)(CT_SNAT_PORT_LO + (h + i) % CT_SNAT_PORT_N);
        ct_reply_of(key, nat, &r);
        if (ct_lookup(ct, &r, ct_key_hash(&r), now, &dir) == NS_NONE32)
            return 0;
    }
    return -1;
}

int ct_reply_clashes(struct ct_table *ct, const struct ct_key *key, const struct ct_nat *nat, uint64_t now)
{
    if ((!nat || !nat->flags) && !ct->n_xlated)
        return 0;   /* without translations a key's reply is its reversal: no clash */
    struct ct_key r;
    int dir;
    ct_reply_of(key, nat, &r);
    return ct_lookup(ct, &r, ct_key_hash(&r), now, &dir) != NS_NONE32;
}

int ct_clashes(struct ct_table *ct, const struct ct_key *key, const struct ct_nat *nat, uint64_t now)
{
    int dir;
    if (((nat && nat->flags) || ct->n_xlated) && ct_lookup(ct, key, ct_key_hash(key), now, &dir) != NS_NONE32)
        return 1;
    return ct_reply_clashes(ct, key, nat, now);
}

/* ---- events ---- */
struct ns_event *ct_report(struct ct_table *ct, uint32_t i, uint8_t type, uint64_t now)
{
    struct ns_event *ev = ct->ev ? events_slot(ct->ev) : NULL;
    if (!ev)
        return NULL;
    const struct ct_entry *e = &ct->e[i];
    ev->time_ns = now;
    ev->type = type;
    ev->egress_rule = e->egress_rule;
    ev->ingress_rule = e->ingress_rule;
    ev->generation = e->generation;
    ev->in_port = e->in_port;
    ev->sport = e->key.sport;
    ev->dport = e->key.dport;
    ev->zone = e->key.zone;
    ev->proto = e->key.proto;
    ev->family = addr_is_v4mapped(e->key.src) ? 4 : 6;
    memcpy(ev->src, e->key.src, 16);
    memcpy(ev->dst, e->key.dst, 16);
    ev->xlated = e->nat;
    if (e->nat & CT_NAT_DST) {
        memcpy(ev->xdst, e->xdst, 16);
        ev->xport = e->xport;
    }
    if (e->nat & CT_NAT_SRC) {
        memcpy(ev->xsrc, e->xsrc, 16);
        ev->xsport = e->xsport;
    }
    ev->reason = 0xFF;       /* a connection event, not a packet's (callers may set it) */
    return ev;
}

/* ---- insert / delete ---- */
void ct_delete(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_key rkey;
    ct_reply_key(e, &rkey);
    ctx_remove(&ct->idx, ct_key_hash(&e->key), (i << 1) + 1);
    ctx_remove(&ct->idx, ct_key_hash(&rkey), (i << 1 | 1) + 1);
    fifo_unlink(ct, i);
    ct->state_count[e->state]--;
    ct->n_xlated -= e->nat != 0;
    if (ct->port_count)
        ct->port_count[e->in_port]--;
    e->state = CT_FREE;
    e->next = ct->free_head;
    ct->free_head = i;
    ct->n_used--;
}

uint32_t ct_insert(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint8_t state,
                   const struct ct_nat *nat, uint16_t in_port, uint64_t now)
{
    uint32_t i;
    if (ct->free_head == NS_NONE32 && ct->bump == ct->cap)
        ct_reclaim_expired(ct, now, 1);   /* "full" means every entry is live (docs/pipeline.md) */
    if (ct->free_head != NS_NONE32) {
        i = ct->free_head;
        ct->free_head = ct->e[i].next;
    } else if (ct->bump < ct->cap) {
        i = ct->bump++;
        ct_note_bump(ct);
    } else {
        return NS_NONE32;
    }
    struct ct_entry *e = &ct->e[i];
    memset(e, 0, sizeof(*e));
    e->key = *key;
    if (nat && nat->flags) {
        e->nat = nat->flags;
        if (nat->flags & CT_NAT_DST) {
            memcpy(e->xdst, nat->xdst, 16);
            e->xport = nat->xport;
        }
        if (nat->flags & CT_NAT_SRC) {
            memcpy(e->xsrc, nat->xsrc, 16);
            e->xsport = nat->xsport;
        }
        ct->n_xlated++;
    }
    e->state = state;
    e->tclass = state_tclass[state];
    e->expiry = ns_sat_add(now, tclass_ns[e->tclass]);
    e->qexp_ms = ms_stamp(e->expiry);
    e->created_ns = now;
    e->egress_rule = e->ingress_rule = NS_RULE_NONE;
    e->in_port = in_port;
    if (ct->port_count)
        ct->port_count[in_port]++;
    struct ct_key rkey;
    ct_reply_key(e, &rkey);
    ctx_insert(&ct->idx, h, (i << 1) + 1, e->nat != 0);
    ctx_insert(&ct->idx, ct_key_hash(&rkey), (i << 1 | 1) + 1, e->nat != 0);
    fifo_append(ct, i);
    ct->state_count[state]++;
    ct->n_used++;
    return i;
}

void ct_refresh(struct ct_table *ct, uint32_t i, uint8_t state, uint64_t now)
{
    struct ct_entry *e = &ct->e[i];
    uint8_t tc = state_tclass[state];
    if (state != e->state) {
        ct->state_count[e->state]--;
        ct->state_count[state]++;
        e->state = state;
    }
    e->expiry = ns_sat_add(now, tclass_ns[tc]);
    if (tc == e->tclass && ms_stamp(e->expiry) - e->qexp_ms < CT_REQUEUE_MS)
        return;   /* no other entry touched: the common case of an established packet */
    fifo_unlink(ct, i);
    e->tclass = tc;
    e->qexp_ms = ms_stamp(e->expiry);
    fifo_append(ct, i);
}
