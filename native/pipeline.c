/* Pipeline driver (see pipeline.h): sanity -> anti-spoofing -> route ->
 * fragments -> conntrack -> service -> egress/ingress policy -> commit. */
#include "pipeline.h"
#include "sanity.h"
#include "service.h"

static const char *const reason_name[NS_R_COUNT] = {
#define NS_REASON_NAME(e, name, verdict) name,
    NS_REASONS(NS_REASON_NAME)
#undef NS_REASON_NAME
};

static const uint8_t reason_verdict[NS_R_COUNT] = {
#define NS_REASON_VERDICT(e, name, verdict) verdict,
    NS_REASONS(NS_REASON_VERDICT)
#undef NS_REASON_VERDICT
};

int ns_reason_count(void)
{
    return NS_R_COUNT;
}

const char *ns_reason_name(int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? reason_name[reason] : NULL;
}

/* ---- lifecycle ---- */
struct ns_pipeline *ns_pipeline_new(const struct ns_ct_limits *limits)
{
    struct ns_pipeline *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (limits)
        p->lim = *limits;
    if (!p->lim.connections) p->lim.connections = NS_DEF_CONNECTIONS;
    if (!p->lim.fragments) p->lim.fragments = NS_DEF_FRAGMENTS;
    if (!p->lim.reclaim_per_batch) p->lim.reclaim_per_batch = NS_DEF_RECLAIM;
    if (ct_init(&p->ct, p->lim.connections) != 0) {
        free(p);
        return NULL;
    }
    if (frag_init(&p->frag, p->lim.fragments) != 0) {
        ct_fini(&p->ct);
        free(p);
        return NULL;
    }
    return p;
}

void ns_pipeline_free(struct ns_pipeline *p)
{
    if (!p)
        return;
    ct_fini(&p->ct);
    frag_fini(&p->frag);
    free(p);
}

uint64_t ns_pipeline_counter(const struct ns_pipeline *p, int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? p->counter[reason] : 0;
}

uint32_t ns_pipeline_connections(const struct ns_pipeline *p)
{
    return p->ct.n_used;
}

uint32_t ns_pipeline_fragments(const struct ns_pipeline *p)
{
    return p->frag.n_used;
}

uint32_t ns_ct_entry_size(void)
{
    return (uint32_t)sizeof(struct ct_entry);
}

uint64_t ns_pipeline_memory(const struct ns_pipeline *p)
{
    return sizeof(*p) + ct_bytes(&p->ct) + frag_bytes(&p->frag);
}

static void make_key(struct ct_key *k, const uint8_t *src, const uint8_t *dst, uint16_t sport,
                     uint16_t dport, uint8_t proto)
{
    memcpy(k->src, src, 16);
    memcpy(k->dst, dst, 16);
    k->sport = sport;
    k->dport = dport;
    k->zone = 0;
    k->proto = proto;
    k->pad = 0;
}

int ns_pipeline_ct_state(const struct ns_pipeline *p, const uint8_t *src16, const uint8_t *dst16,
                         uint16_t sport, uint16_t dport, uint8_t proto, uint64_t now_ns)
{
    struct ct_key k;
    int dir;
    make_key(&k, src16, dst16, sport, dport, proto);
    uint32_t i = ct_find(&p->ct, &k, now_ns, &dir);
    return i == NS_NONE32 ? -1 : p->ct.e[i].state;
}

/* ---- policy (egress then ingress), shared by new connections and recheck ---- */
static int policy_verdict(const struct ns_tables *t, const struct ns_endpoint *sep,
                          const struct ns_endpoint *dep, const uint8_t *src, const uint8_t *dst,
                          uint8_t proto, uint16_t dport, struct ns_result *res)
{
    /* a pod talking to its own address skips both checks */
    if (sep && dep && sep->port == dep->port)
        return NS_R_CONTINUE;
    uint32_t sid = sep ? sep->identity : 0, did = dep ? dep->identity : 0;
    if (!ns_tables_policy_check(t, NS_DIR_EGRESS, sid, did, dst, proto, dport,
                                &res->egress_rule)) {
        res->egress_rule = NS_RULE_NONE;
        return NS_R_DENIED_EGRESS;
    }
    if (!ns_tables_policy_check(t, NS_DIR_INGRESS, did, sid, src, proto, dport,
                                &res->ingress_rule)) {
        res->ingress_rule = NS_RULE_NONE;
        return NS_R_DENIED_INGRESS;
    }
    return NS_R_CONTINUE;
}

static int can_open(const struct ns_pkt *pkt)
{
    switch (pkt->proto) {
    case 6:
        return (pkt->tcp_flags & NS_TCP_SYN) && !(pkt->tcp_flags & (NS_TCP_ACK | NS_TCP_RST));
    case 17:
        return 1;
    case 132:
        return pkt->sctp_chunk == NS_SCTP_INIT;
    default:
        return pkt->icmp_kind == NS_ICMP_ECHO_REQUEST;
    }
}

static uint8_t open_state(uint8_t proto)
{
    switch (proto) {
    case 6: return CT_TCP_SYN_SENT;
    case 17: return CT_UDP_FIRST;
    case 132: return CT_SCTP_INIT;
    default: return CT_ICMP;
    }
}

/* One packet: returns its reason; fills res->out_port and rule ids. */
/* One parsed packet (parse result r, conntrack key hash h): returns its reason;
 * fills res->out_port and rule ids. */
static int run_one(struct ns_pipeline *p, struct ns_pkt *pkt, int r, const struct ct_key *pkey,
                   uint32_t hash, uint16_t in_port, uint64_t now, struct ns_result *res)
{
    if (r != NS_R_CONTINUE)
        return r;
    const struct ns_tables *t = p->tables;
    const struct ns_endpoint *sep = tables_endpoint(t, pkt->src);
    const struct ns_endpoint *dep = tables_endpoint(t, pkt->dst);

    /* anti-spoofing; the effective arrival port */
    uint16_t arrival;
    if (in_port != NS_PORT_UNKNOWN) {
        if (in_port != NS_PORT_UPLINK ? (!sep || sep->port != in_port) : (sep != NULL))
            return NS_R_SPOOFED_SOURCE;
        arrival = in_port;
    } else {
        arrival = sep ? sep->port : NS_PORT_UPLINK;
    }

    /* route */
    uint16_t out;
    if (dep)
        out = dep->port;
    else if (arrival != NS_PORT_UPLINK)
        out = NS_PORT_UPLINK;
    else
        return NS_R_NO_ROUTE;

    /* a later fragment follows its first fragment's decision */
    struct frag_key fk;
    if (pkt->frag != NS_FRAG_NONE) {
        memset(&fk, 0, sizeof(fk));
        memcpy(fk.src, pkt->src, 16);
        memcpy(fk.dst, pkt->dst, 16);
        fk.id = pkt->frag_id;
        fk.family = pkt->family;
        fk.proto = pkt->frag_proto;
    }
    if (pkt->frag == NS_FRAG_LATER) {
        uint16_t fport;
        if (frag_lookup(&p->frag, &fk, now, &fport) != 0)
            return NS_R_FRAGMENT_UNKNOWN;
        res->out_port = fport;
        return NS_R_FRAGMENT;
    }

    /* connection tracker */
    struct ct_key key;
    int dir = 0;
    if (pkt->icmp_kind == NS_ICMP_OTHER)
        return NS_R_UNSUPPORTED_ICMP;
    if (pkt->icmp_kind == NS_ICMP_ERROR) {
        make_key(&key, pkt->isrc, pkt->idst, pkt->isport, pkt->idport, pkt->iproto);
        if (ct_lookup(&p->ct, &key, now, &dir) == NS_NONE32)
            return NS_R_ICMP_ERROR_NO_CONNECTION;
        r = NS_R_RELATED;   /* no refresh, opens nothing */
        goto forward;
    }
    key = *pkey;
    int opener = can_open(pkt);
    uint32_t ci = ct_lookup_hashed(&p->ct, &key, hash, now, &dir);
    if (ci != NS_NONE32 && opener && ct_state_reopenable(p->ct.e[ci].state)) {
        ct_delete(&p->ct, ci);
        ci = NS_NONE32;
    }
    if (ci != NS_NONE32) {
        ct_update(&p->ct, ci, dir, pkt->proto == 6 ? pkt->tcp_flags : pkt->sctp_chunk, now);
        r = dir == CT_DIR_REPLY ? NS_R_REPLY : NS_R_ESTABLISHED;
        goto forward;
    }
    if (!opener)
        return NS_R_NO_CONNECTION;

    /* service mapper, then policy */
    r = service_map(t, pkt);
    if (r != NS_R_CONTINUE)
        return r;
    r = policy_verdict(t, sep, dep, pkt->src, pkt->dst, pkt->proto, pkt->dport, res);
    if (r != NS_R_CONTINUE)
        return r;

    /* commit */
    if (ct_insert(&p->ct, &key, open_state(pkt->proto), now) == NS_NONE32)
        return NS_R_CONNTRACK_FULL;
    r = NS_R_NEW;

forward:
    if (pkt->frag == NS_FRAG_FIRST && frag_record(&p->frag, &fk, out, now) != 0)
        return NS_R_FRAGMENT_TABLE_FULL;
    res->out_port = out;
    return r;
}

static uint8_t reason_ct_state(int r)
{
    switch (r) {
    case NS_R_NEW: return NS_CT_NEW;
    case NS_R_ESTABLISHED: return NS_CT_ESTABLISHED;
    case NS_R_REPLY: return NS_CT_REPLY;
    case NS_R_RELATED: return NS_CT_RELATED;
    default: return NS_CT_NONE;
    }
}

static void result_of(struct ns_pipeline *p, const struct ns_pkt *pkt, int r, struct ns_result *o)
{
    o->verdict = reason_verdict[r];
    if (o->verdict != NS_FORWARD)
        o->out_port = 0;
    o->reason = (uint8_t)r;
    o->ct_state = reason_ct_state(r);
    o->proto = pkt->proto;
    o->family = pkt->family;
    o->pad = 0;
    o->sport = pkt->sport;
    o->dport = pkt->dport;
    memcpy(o->src, pkt->src, 16);
    memcpy(o->dst, pkt->dst, 16);
    p->counter[r]++;
}

uint32_t ns_pipeline_run(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                         const uint16_t *len, const uint16_t *in_port, uint32_t n,
                         uint64_t now_ns, struct ns_result *res)
{
    p->last_now = now_ns;
    ct_reclaim(&p->ct, now_ns, p->lim.reclaim_per_batch);
    frag_reclaim(&p->frag, now_ns, p->lim.reclaim_per_batch);
    for (uint32_t base = 0; base < n; base += NS_CHUNK) {
        uint32_t m = n - base < NS_CHUNK ? n - base : NS_CHUNK;
        /* 1. parse, hash the conntrack key, prefetch its index slot */
        for (uint32_t j = 0; j < m; j++) {
            struct ns_pkt *pkt = &p->pkt[j];
            p->parsed[j] = sanity_parse(buf + off[base + j], len[base + j], pkt);
            if (p->parsed[j] == NS_R_CONTINUE) {
                make_key(&p->key[j], pkt->src, pkt->dst, pkt->sport, pkt->dport, pkt->proto);
                p->hash[j] = ct_key_hash(&p->key[j]);
                ct_prefetch_slot(&p->ct, p->hash[j]);
            }
        }
        /* 2. prefetch the entries the slots name */
        for (uint32_t j = 0; j < m; j++)
            if (p->parsed[j] == NS_R_CONTINUE)
                ct_prefetch_entry(&p->ct, p->hash[j]);
        /* 3. run each packet, in order */
        for (uint32_t j = 0; j < m; j++) {
            struct ns_result *o = &res[base + j];
            o->egress_rule = o->ingress_rule = NS_RULE_NONE;
            o->out_port = 0;
            int r = run_one(p, &p->pkt[j], p->parsed[j], &p->key[j], p->hash[j], in_port[base + j],
                            now_ns, o);
            result_of(p, &p->pkt[j], r, o);
        }
    }
    return n;
}

/* ---- table swap ---- */
struct ns_tables *ns_pipeline_swap_tables(struct ns_pipeline *p, struct ns_tables *t,
                                          int recheck, uint32_t *deleted_out)
{
    uint32_t deleted = 0;
    if (deleted_out)
        *deleted_out = 0;
    if (t && !t->sealed)
        return t;   /* refused: not sealed; the caller still owns t */
    struct ns_tables *old = p->tables;
    p->tables = t;
    if (recheck) {
        struct ns_result scratch;
        for (uint32_t i = 0; i < p->ct.bump; i++) {
            const struct ct_entry *e = &p->ct.e[i];
            if (e->state == CT_FREE || e->expiry <= p->last_now)
                continue;
            const struct ns_endpoint *sep = tables_endpoint(t, e->key.src);
            const struct ns_endpoint *dep = tables_endpoint(t, e->key.dst);
            if (policy_verdict(t, sep, dep, e->key.src, e->key.dst, e->key.proto, e->key.dport,
                               &scratch) != NS_R_CONTINUE) {
                ct_delete(&p->ct, i);
                deleted++;
            }
        }
    }
    if (deleted_out)
        *deleted_out = deleted;
    return old;
}
