/* The pipeline's lifecycle, accessors, reason tables and table swap (with the
 * recheck of established connections). The packet path is pipeline.c. */
#include <errno.h>

#include "pipeline.h"
#include "policy.h"

static const char *const reason_name[NS_R_COUNT] = {
#define NS_REASON_NAME(e, name, verdict, stage) name,
    NS_REASONS(NS_REASON_NAME)
#undef NS_REASON_NAME
};

const uint8_t ns_reason_verdict_table[NS_R_COUNT] = {
#define NS_REASON_VERDICT(e, name, verdict, stage) verdict,
    NS_REASONS(NS_REASON_VERDICT)
#undef NS_REASON_VERDICT
};

static const char *const reason_stage[NS_R_COUNT] = {
#define NS_REASON_STAGE(e, name, verdict, stage) stage,
    NS_REASONS(NS_REASON_STAGE)
#undef NS_REASON_STAGE
};

int ns_reason_count(void)
{
    return NS_R_COUNT;
}

const char *ns_reason_name(int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? reason_name[reason] : NULL;
}

int ns_reason_verdict(int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? ns_reason_verdict_table[reason] : -1;
}

const char *ns_reason_stage(int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? reason_stage[reason] : NULL;
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
    if (!p->lim.affinity) p->lim.affinity = NS_DEF_AFFINITY;
    if (aff_init(&p->aff, p->lim.affinity) != 0 ||
        events_init(&p->ev, p->lim.events) != 0 ||
        ct_init(&p->ct, p->lim.connections, p->lim.per_port, &p->ev) != 0 ||
        frag_init(&p->frag, p->lim.fragments) != 0) {
        ns_pipeline_free(p);
        return NULL;
    }
    p->lim.affinity = p->aff.mask + 1;
    return p;
}

struct ns_pipeline *ns_pipeline_new_at(const struct ns_ct_limits *limits, const char *ct_path, int attach,
                                       uint64_t now_ns, int64_t *result)
{
    struct ns_ct_limits lim = limits ? *limits : (struct ns_ct_limits){0};
    uint32_t cap = lim.connections ? lim.connections : NS_DEF_CONNECTIONS;
    lim.connections = 1;   /* the in-process table this makes is replaced below */
    struct ns_pipeline *p = ns_pipeline_new(&lim);
    *result = -ENOMEM;
    if (!p)
        return NULL;
    ct_fini(&p->ct);
    int64_t r = ct_init_file(&p->ct, cap, p->lim.per_port, &p->ev, ct_path, attach, now_ns);
    *result = r;
    if (r < 0) {
        memset(&p->ct, 0, sizeof(p->ct));
        ns_pipeline_free(p);
        return NULL;
    }
    p->lim.connections = p->ct.cap;
    p->last_now = now_ns;
    return p;
}

void ns_pipeline_free(struct ns_pipeline *p)
{
    if (!p)
        return;
    ct_fini(&p->ct);
    frag_fini(&p->frag);
    aff_fini(&p->aff);
    events_fini(&p->ev);
    free(p);
}

uint64_t ns_pipeline_affinity_full(const struct ns_pipeline *p)
{
    return p->aff.full;
}

uint64_t ns_pipeline_counter(const struct ns_pipeline *p, int reason)
{
    return (reason >= 0 && reason < NS_R_COUNT) ? p->counter[reason] : 0;
}

uint32_t ns_pipeline_generation(const struct ns_pipeline *p)
{
    return p->generation;
}

uint32_t ns_pipeline_connections(const struct ns_pipeline *p)
{
    return p->ct.n_used;
}

void ns_pipeline_limits(const struct ns_pipeline *p, struct ns_ct_limits *out)
{
    *out = p->lim;
    out->events = p->ev.cap;
}

uint32_t ns_pipeline_fragments(const struct ns_pipeline *p)
{
    return p->frag.n_used;
}

uint32_t ns_pipeline_ct_state_count(const struct ns_pipeline *p, int state)
{
    return (state > CT_FREE && state < CT_STATE_COUNT) ? p->ct.state_count[state] : 0;
}

uint32_t ns_pipeline_events_read(struct ns_pipeline *p, struct ns_event *out, uint32_t max)
{
    return events_read(&p->ev, out, max);
}

uint64_t ns_pipeline_events_lost(const struct ns_pipeline *p)
{
    return p->ev.lost;
}

uint32_t ns_ct_entry_size(void)
{
    return (uint32_t)sizeof(struct ct_entry);
}

uint64_t ns_pipeline_memory(const struct ns_pipeline *p)
{
    return sizeof(*p) + ct_bytes(&p->ct) + frag_bytes(&p->frag) + events_bytes(&p->ev) +
           (uint64_t)(p->aff.mask + 1) * sizeof(struct aff_entry);
}

int ns_pipeline_ct_state(const struct ns_pipeline *p, uint16_t zone, const uint8_t *src16,
                         const uint8_t *dst16, uint16_t sport, uint16_t dport, uint8_t proto,
                         uint8_t echo_reply, uint64_t now_ns)
{
    struct ct_key k;
    int dir;
    ns_make_key(&k, zone, src16, dst16, sport, dport, proto, echo_reply ? 1 : 0);
    uint32_t i = ct_find(&p->ct, &k, now_ns, &dir);
    return i == NS_NONE32 ? -1 : p->ct.e[i].state;
}

int ns_pipeline_ct_commit_translated(struct ns_pipeline *p, uint16_t zone, const uint8_t *src16,
                                     const uint8_t *dst16, uint16_t sport, uint16_t dport,
                                     uint8_t proto, const uint8_t *xdst16, uint16_t xport,
                                     uint16_t in_port, uint64_t now_ns)
{
    struct ct_key k;
    ns_make_key(&k, zone, src16, dst16, sport, dport, proto, 0);
    struct ct_nat nat;
    memset(&nat, 0, sizeof(nat));
    nat.flags = CT_NAT_DST;
    memcpy(nat.xdst, xdst16, 16);
    nat.xport = xport;
    if (ct_clashes(&p->ct, &k, &nat, now_ns))
        return -1;
    uint32_t i = ct_insert(&p->ct, &k, ct_key_hash(&k), ns_open_state(proto), &nat, in_port, now_ns);
    if (i == NS_NONE32)
        return -1;
    p->ct.e[i].generation = p->generation;
    struct ns_event *ev = ct_report(&p->ct, i, NS_EV_NEW, now_ns);
    if (ev)
        ev->reason = NS_R_NEW;
    return 0;
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
    p->generation++;
    if (recheck) {
        for (uint32_t i = 0; i < p->ct.bump; i++) {
            const struct ct_entry *e = &p->ct.e[i];
            if (e->state == CT_FREE || e->expiry <= p->last_now)
                continue;
            const int xd = e->nat & CT_NAT_DST;   /* policy saw the backend, not the VIP */
            const uint8_t *dst = xd ? e->xdst : e->key.dst;
            uint16_t dport = xd ? e->xport : e->key.dport;
            const struct ns_endpoint *sep = tables_endpoint(t, e->key.zone, e->key.src);
            const struct ns_endpoint *dep = tables_endpoint(t, e->key.zone, dst);
            uint32_t eg, in;
            if (policy_verdict(t, e->in_port, sep, dep, e->key.src, dst, e->key.proto, dport, &eg, &in) !=
                NS_R_CONTINUE) {
                ct_report(&p->ct, i, NS_EV_REVOKED, p->last_now);
                ct_delete(&p->ct, i);
                deleted++;
            }
        }
    }
    if (deleted_out)
        *deleted_out = deleted;
    return old;
}
