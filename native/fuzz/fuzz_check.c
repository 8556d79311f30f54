/* The invariants on every batch and swap (fuzz_check.h). What they hold the code to is
 * what netsem.h and docs/pipeline.md promise: a reason the X-macro knows with its
 * verdict and conntrack state; a dropped packet reported as it arrived, without a
 * port or a translation; the zone of the arrival port; a forwarded packet's port the
 * pod at its (translated) destination, or the uplink from anywhere but the uplink;
 * a DNAT to one of the frontend's backends and a source NAT to the node's address;
 * rule ids the tables have; counters that add up to the frames; one event per drop
 * and per new connection, alike; a swap that deletes only what it reports; and the
 * same results from the twin that ran the frames one at a time. */
#include <stdio.h>
#include "fuzz_check.h"

uint64_t fz_reasons[256], fz_rewrites, fz_swaps;   /* what the checks saw, for the exit report */
static const uint8_t *fail_frame;   /* for fz_fail from the batch checks */
static uint32_t fail_len;

static void hex(const char *label, const uint8_t *p, uint32_t n)
{
    fprintf(stderr, "  %s:", label);
    for (uint32_t i = 0; i < n; i++)
        fprintf(stderr, "%s%02x", i % 32 ? "" : "\n    ", p[i]);
    fprintf(stderr, "\n");
}

static void print_result(const char *label, const struct ns_result *r)
{
    const char *name = ns_reason_name(r->reason);
    fprintf(stderr, "  %s: verdict %u reason %u (%s) ct %u out %u zone %u family %u proto %u rewrite %u "
            "ports %u->%u rules %u/%u\n", label, r->verdict, r->reason, name ? name : "?", r->ct_state,
            r->out_port, r->zone, r->family, r->proto, r->rewrite, r->sport, r->dport, r->egress_rule,
            r->ingress_rule);
    hex("src", r->src, 16);
    hex("dst", r->dst, 16);
}

void fz_fail(const char *what, const struct ns_result *r, const uint8_t *frame, uint32_t len)
{
    fprintf(stderr, "netsem-fuzz: invariant violated: %s\n", what);
    if (r)
        print_result("result", r);
    if (frame)
        hex("frame (first 128 bytes)", frame, len < 128 ? len : 128);
    abort();
}

#define CHECK(cond, what) do { if (!(cond)) fz_fail(what, r, fail_frame, fail_len); } while (0)

static const uint8_t zero16[16];

static int is_pod_at(const struct fz_run *run, uint16_t zone, const uint8_t *a, uint16_t *port)
{
    uint8_t kind = 0;
    uint32_t ident;
    return run->cur && ns_tables_lookup_endpoint(run->cur, zone, a, &kind, port, &ident) == 0 &&
           kind == NS_EP_POD;
}

static const struct fz_fe *frontend(const struct fz_set *s, uint16_t zone, const struct ns_pkt *p)
{
    for (uint32_t i = 0; s && i < s->n_fe; i++) {
        const struct fz_fe *f = &s->fe[i];
        if (f->zone == zone && f->proto == p->proto && f->port == p->dport && !memcmp(f->addr, p->dst, 16))
            return f;
    }
    return NULL;
}

static uint8_t state_of(int reason)
{
    switch (reason) {
    case NS_R_NEW: return NS_CT_NEW;
    case NS_R_ESTABLISHED: return NS_CT_ESTABLISHED;
    case NS_R_REPLY: return NS_CT_REPLY;
    case NS_R_RELATED: return NS_CT_RELATED;
    default: return NS_CT_NONE;
    }
}

/* A new connection's translations: to a backend of the frontend it addressed, from
 * the node's address of its family. */
static void check_new(const struct fz_run *run, const struct ns_result *r, const struct ns_pkt *p, uint16_t in)
{
    const struct fz_set *s = run->cur_set;
    if (r->rewrite & NS_REWRITE_DST) {
        const struct fz_fe *f = frontend(s, r->zone, p);
        CHECK(f && f->n, "DNAT of a connection that addressed no frontend with backends");
        int found = 0;
        for (uint32_t i = 0; i < f->n && !found; i++)
            found = !memcmp(f->be_addrs + 16 * i, r->dst, 16) && fz_u16(f->be_ports + 2 * i) == r->dport;
        CHECK(found, "DNAT to an address and port that is none of the frontend's backends");
    } else {
        CHECK(!memcmp(r->dst, p->dst, 16) && r->dport == p->dport, "a destination changed without DNAT");
    }
    if (r->rewrite & NS_REWRITE_SRC) {
        const int i = r->family == 6;
        CHECK(s && s->has_snat[i] && !memcmp(r->src, s->snat[i], 16), "source NAT to another address");
        CHECK(in != NS_PORT_UPLINK, "source NAT of a connection from the uplink");
        if (p->proto == NS_PROTO_ICMP || p->proto == NS_PROTO_ICMPV6)
            CHECK(r->sport == p->sport, "source NAT changed an echo identifier");
        else
            CHECK(r->sport >= 32768 && r->sport <= 60999, "a source NAT port outside 32768-60999");
    } else {
        CHECK(!memcmp(r->src, p->src, 16) && r->sport == p->sport, "a source changed without source NAT");
    }
}

static void check_result(const struct fz_run *run, const struct ns_result *r, const struct ns_pkt *p,
                         int parsed, uint16_t in)
{
    CHECK(r->reason < ns_reason_count(), "a reason past ns_reason_count()");
    CHECK(r->verdict == ns_reason_verdict(r->reason), "a verdict that is not its reason's");
    CHECK(r->ct_state == state_of(r->reason), "a conntrack state that is not its reason's");
    CHECK(!r->pad[0] && !r->pad[1] && !(r->rewrite & ~(NS_REWRITE_SRC | NS_REWRITE_DST)), "stray bits");
    CHECK(r->zone == (run->cur ? fz_port_zone(run->cur_set, in) : NS_ZONE_DEFAULT), "not the port's zone");
    CHECK(r->family == 0 || r->family == 4 || r->family == 6, "a family that is not 0, 4 or 6");
    CHECK(r->family == p->family && r->proto == p->proto, "family or protocol not the frame's");
    if (r->family == 4)
        CHECK(addr_is_v4mapped(r->src) && addr_is_v4mapped(r->dst), "an IPv4 result with an IPv6 address");
    if (r->family == 0)
        CHECK(!memcmp(r->src, zero16, 16) && !memcmp(r->dst, zero16, 16) && !r->sport && !r->dport,
              "a tuple for a frame that is not IP");
    CHECK(r->egress_rule == NS_RULE_NONE || (run->cur && r->egress_rule < run->cur_set->lim.rules),
          "an egress rule id the tables do not have");
    CHECK(r->ingress_rule == NS_RULE_NONE || (run->cur && r->ingress_rule < run->cur_set->lim.rules),
          "an ingress rule id the tables do not have");
    if (!r->rewrite)   /* reported as it arrived (drops always) */
        CHECK(!memcmp(r->src, p->src, 16) && !memcmp(r->dst, p->dst, 16) && r->sport == p->sport &&
              r->dport == p->dport, "an untranslated result whose tuple is not the frame's");
    if (r->verdict != NS_FORWARD) {
        CHECK(!r->out_port && !r->rewrite, "a packet not forwarded with a port or a translation");
        return;
    }
    CHECK(parsed == NS_R_CONTINUE && (r->family == 4 || r->family == 6), "forwarded, but it did not parse");
    if (r->family == 6)
        CHECK(!addr_is_v4mapped(r->src) && !addr_is_v4mapped(r->dst), "an IPv4-mapped IPv6 address forwarded");
    if (r->reason == NS_R_FRAGMENT) {
        CHECK(!r->rewrite, "a later fragment translated");
        return;
    }
    const uint8_t pr = r->proto;
    CHECK(pr == NS_PROTO_TCP || pr == NS_PROTO_UDP || pr == NS_PROTO_SCTP ||
          pr == (r->family == 4 ? NS_PROTO_ICMP : NS_PROTO_ICMPV6), "a protocol the pipeline does not know");
    uint16_t at = 0;
    if (r->out_port) {
        CHECK(is_pod_at(run, r->zone, r->dst, &at) && at == r->out_port, "out port is not the destination pod's");
    } else {
        CHECK(!is_pod_at(run, r->zone, r->dst, &at), "a pod destination sent to the uplink");
        uint16_t arrival = in;
        if (in == NS_PORT_UNKNOWN && !is_pod_at(run, r->zone, p->src, &arrival))
            arrival = NS_PORT_UPLINK;
        CHECK(arrival != NS_PORT_UPLINK, "from the uplink back to the uplink");
    }
    if (r->reason == NS_R_NEW)
        check_new(run, r, p, in);
}

/* ---- events ---- */
static struct ns_event evs[8192];

static uint32_t drain(struct ns_pipeline *p)
{
    uint32_t n = 0, k;
    while ((k = ns_pipeline_events_read(p, evs + n, 256)) > 0 && n < 8192 - 256)
        n += k;
    return n;
}

static void check_events(const struct fz_run *run, uint32_t n, uint64_t when)
{
    const struct ns_result *r = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const struct ns_event *e = &evs[i];
        CHECK(e->type >= NS_EV_NEW && e->type <= NS_EV_REVOKED, "an event of no known type");
        CHECK(e->reason == 0xFF || e->reason < ns_reason_count(), "an event with an unknown reason");
        if (e->type == NS_EV_NEW || e->type == NS_EV_DROP || e->type == NS_EV_DENIED)
            CHECK(e->reason < ns_reason_count(), "a packet event without its reason");
        if (e->type == NS_EV_DROP || e->type == NS_EV_DENIED)
            CHECK(ns_reason_verdict(e->reason) == NS_DROP, "a drop event for a packet not dropped");
        if (e->type == NS_EV_DENIED)
            CHECK(!strcmp(ns_reason_stage(e->reason), "policy"), "a denial event not decided by policy");
        if (e->type == NS_EV_DROP)
            CHECK(strcmp(ns_reason_stage(e->reason), "policy"), "a policy denial reported as a plain drop");
        CHECK(e->generation <= run->generation, "an event of a table set not yet swapped in");
        CHECK(e->time_ns == when, "an event not stamped with its batch's now");
        CHECK(!(e->xlated & ~(NS_XLATE_DST | NS_XLATE_SRC)), "stray translation bits in an event");
    }
}

/* With no event lost, each dropped packet's event, in order, says what its result
 * says, and each new connection's what its result and its frame say. */
static void match_events(const struct fz_batch *b, uint32_t n_ev, const struct ns_pkt *pk)
{
    uint32_t e = 0;
    const struct ns_result *r = NULL;
    for (uint32_t i = 0; i < b->n; i++) {
        r = &b->res[i];
        if (r->verdict == NS_LOCAL || (r->verdict == NS_FORWARD && r->reason != NS_R_NEW))
            continue;
        int want_new = r->reason == NS_R_NEW;
        /* connection events (closed, expired) come between; and a first fragment that
         * opened a connection before the fragment table refused it leaves the
         * connection committed (pipeline.c "forward:"; the oracle does the same) */
        while (e < n_ev && ((evs[e].type != NS_EV_NEW && evs[e].type != NS_EV_DROP && evs[e].type != NS_EV_DENIED) ||
                            (evs[e].type == NS_EV_NEW && r->reason == NS_R_FRAGMENT_TABLE_FULL)))
            e++;
        CHECK(e < n_ev, want_new ? "a new connection without its event" : "a drop without its event");
        CHECK(want_new == (evs[e].type == NS_EV_NEW), "events out of the packets' order");
        const struct ns_event *v = &evs[e++];
        CHECK(v->reason == r->reason && v->zone == r->zone && v->proto == r->proto &&
              v->egress_rule == r->egress_rule && v->ingress_rule == r->ingress_rule,
              "an event that is not its packet's");
        const struct ns_pkt *p = &pk[i];
        CHECK(!memcmp(v->src, p->src, 16) && !memcmp(v->dst, p->dst, 16) && v->sport == p->sport &&
              v->dport == p->dport, "an event whose tuple is not the packet's as it arrived");
        if (!want_new) {
            CHECK(v->in_port == b->port[i] && v->family == r->family, "a drop event's port or family");
            continue;
        }
        CHECK(v->out_port == r->out_port, "a new connection's event with another out port");
        CHECK(!!(v->xlated & NS_XLATE_DST) == !!(r->rewrite & NS_REWRITE_DST) &&
              !!(v->xlated & NS_XLATE_SRC) == !!(r->rewrite & NS_REWRITE_SRC), "an event's translation");
        if (v->xlated & NS_XLATE_DST)
            CHECK(!memcmp(v->xdst, r->dst, 16) && v->xport == r->dport, "an event's translated destination");
        if (v->xlated & NS_XLATE_SRC)
            CHECK(!memcmp(v->xsrc, r->src, 16) && v->xsport == r->sport, "an event's translated source");
    }
    for (; e < n_ev; e++)
        CHECK(evs[e].type != NS_EV_DROP && evs[e].type != NS_EV_DENIED && evs[e].type != NS_EV_NEW,
              "an event for a packet that had none");
}

static void check_tables_state(const struct fz_run *run, struct ns_pipeline *p)
{
    const struct ns_result *r = NULL;
    uint64_t sum = 0, total = 0;
    for (int s = 1; s < ns_ct_state_count(); s++)
        sum += ns_pipeline_ct_state_count(p, s);
    CHECK(sum == ns_pipeline_connections(p), "conntrack states do not add up to its entries");
    CHECK(ns_pipeline_connections(p) <= run->lim.connections, "more connections than the capacity");
    CHECK(ns_pipeline_fragments(p) <= run->lim.fragments, "more fragments than the capacity");
    for (int i = 0; i < ns_reason_count(); i++)
        total += ns_pipeline_counter(p, i);
    CHECK(total == run->frames, "the counters do not add up to the frames run");
}

void fz_check_swap(struct fz_run *run, struct ns_tables *t, int recheck)
{
    const struct ns_result *r = NULL;
    fail_frame = NULL;
    drain(run->b);
    uint32_t before_a = ns_pipeline_connections(run->a), before_b = ns_pipeline_connections(run->b);
    uint32_t da = 0, db = 0;
    uint64_t lost = ns_pipeline_events_lost(run->a);
    struct ns_tables *oa = ns_pipeline_swap_tables(run->a, t, recheck, &da);
    struct ns_tables *ob = ns_pipeline_swap_tables(run->b, t, recheck, &db);
    CHECK(oa == run->cur && ob == run->cur, "a swap returned other tables than were in");
    CHECK(da == db, "disagreement: a recheck deleted differently after batched and single runs");
    CHECK(recheck || !da, "a swap without recheck deleted connections");
    CHECK(ns_pipeline_connections(run->a) == before_a - da && ns_pipeline_connections(run->b) == before_b - db,
          "a recheck deleted other than it reported");
    run->cur = t;
    fz_swaps++;
    run->cur_set = t ? &fz_sets[run->set] : NULL;
    run->generation++;
    uint32_t n = drain(run->a), revoked = 0;
    check_events(run, n, run->last_now);
    for (uint32_t i = 0; i < n; i++)
        revoked += evs[i].type == NS_EV_REVOKED;
    if (ns_pipeline_events_lost(run->a) == lost && run->lim.events)
        CHECK(revoked == da, "a revoked connection without its event");
}

void fz_check_batch(struct fz_run *run, const struct fz_batch *b)
{
    static uint64_t hist[256];
    static struct ns_pkt pk[FZ_BATCH];
    static int parsed[FZ_BATCH];
    const struct ns_result *r = NULL;
    fail_frame = NULL;
    memset(b->res, 0xA5, b->n * sizeof(*b->res));    /* any byte left unwritten differs from the twin's */
    memset(b->twin, 0x5A, b->n * sizeof(*b->twin));
    uint64_t lost = ns_pipeline_events_lost(run->a);
    CHECK(ns_pipeline_run(run->a, b->buf, b->off, b->len, b->port, b->n, b->now, b->res) == b->n,
          "ns_pipeline_run did not return n");
    for (uint32_t i = 0; i < b->n; i++)
        CHECK(ns_pipeline_run(run->b, b->buf, b->off + i, b->len + i, b->port + i, 1, b->now, b->twin + i) == 1,
              "ns_pipeline_run did not return 1");
    run->frames += b->n;
    run->last_now = b->now;
    memset(hist, 0, sizeof(hist));
    for (uint32_t i = 0; i < b->n; i++) {
        r = &b->res[i];
        fail_frame = b->buf + b->off[i], fail_len = b->len[i];
        if (memcmp(r, &b->twin[i], sizeof(*r)) != 0) {
            print_result("twin (one frame per call)", &b->twin[i]);
            CHECK(0, "disagreement: a batch's result differs from the same frame run alone");
        }
        parsed[i] = sanity_parse(fail_frame, fail_len, &pk[i]);
        check_result(run, r, &pk[i], parsed[i], b->port[i]);
        if (r->verdict == NS_FORWARD && r->rewrite) {
            uint32_t o = (i + 1) % b->n;
            fz_check_rewrite(r, fail_frame, fail_len, &pk[i], b->buf + b->off[o], b->len[o]);
            fz_rewrites++;
        }
        fz_reasons[r->reason]++;
        hist[r->reason]++;   /* uint8_t: within hist[256] */
    }
    fail_frame = NULL;
    r = NULL;
    for (int k = 0; k < ns_reason_count(); k++) {
        uint64_t na = ns_pipeline_counter(run->a, k), nb = ns_pipeline_counter(run->b, k);
        CHECK(na == nb, "disagreement: the twins' counters differ");
        CHECK(na - run->counted[k] == hist[k], "a reason's counter moved by other than its results");
        run->counted[k] = na;
    }
    check_tables_state(run, run->a);
    check_tables_state(run, run->b);
    drain(run->b);
    uint32_t n = drain(run->a);
    check_events(run, n, b->now);
    if (run->lim.events && ns_pipeline_events_lost(run->a) == lost)
        match_events(b, n, pk);
    /* the last new connection of the batch is in the table (nothing after it ran) */
    r = &b->res[b->n - 1];
    const struct ns_pkt *p = &pk[b->n - 1];
    if (r->reason == NS_R_NEW && b->now != UINT64_MAX)
        CHECK(ns_pipeline_ct_state(run->a, r->zone, p->src, p->dst, p->sport, p->dport, p->proto, p->echo,
                                   b->now) >= 0, "a new connection not in the table");
}
