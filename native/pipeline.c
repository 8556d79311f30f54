/* Pipeline driver, the packet path (see pipeline.h), in the seed's order: sanity
 * and anti-spoofing -> connection tracker (replies reverse-translated) -> service
 * mapper (may translate) -> route -> egress policy -> ingress policy -> commit. */
#include "pipeline.h"
#include "policy.h"
#include "service.h"

/* Where a packet to daddr goes: the pod's port; from a pod, anything else goes out
 * the uplink; from the uplink, only to a pod. */
static int route(const struct ns_tables *t, uint16_t zone, const uint8_t *daddr,
                 uint16_t arrival, uint16_t *out)
{
    const struct ns_endpoint *dep = tables_endpoint(t, zone, daddr);
    if (dep && dep->kind == NS_EP_POD)
        *out = dep->port;
    else if (arrival != NS_PORT_UPLINK)
        *out = NS_PORT_UPLINK;
    else
        return NS_R_NO_ROUTE;
    return NS_R_CONTINUE;
}

/* The translation a connection entry holds, applied to a packet of it: the original
 * direction goes to the translated destination from the translated source; replies
 * come from the original destination to the original source. */
static void translate(const struct ct_entry *e, int dir, struct ns_result *res)
{
    if (!e->nat)
        return;
    if (dir == CT_DIR_ORIG) {
        if (e->nat & CT_NAT_DST) {
            memcpy(res->dst, e->xdst, 16);
            res->dport = e->xport;
            res->rewrite |= NS_REWRITE_DST;
        }
        if (e->nat & CT_NAT_SRC) {
            memcpy(res->src, e->xsrc, 16);
            res->sport = e->xsport;
            res->rewrite |= NS_REWRITE_SRC;
        }
    } else {
        if (e->nat & CT_NAT_DST) {
            memcpy(res->src, e->key.dst, 16);
            res->sport = e->key.dport;
            res->rewrite |= NS_REWRITE_SRC;
        }
        if (e->nat & CT_NAT_SRC) {
            memcpy(res->dst, e->key.src, 16);
            res->dport = e->key.sport;
            res->rewrite |= NS_REWRITE_DST;
        }
    }
}

/* Source NAT for a new connection from a pod (after policy, which saw the real
 * source): masquerade when it leaves for an address outside the cluster, as CNIs
 * do; hairpin when the service mapper sent it back to the pod it came from, so the
 * reply comes back through the switch to be reverse-translated. */
static int wants_snat(uint16_t arrival, uint16_t out, const struct ns_endpoint *dep, int xlate)
{
    if (arrival == NS_PORT_UPLINK)
        return 0;
    if (out == NS_PORT_UPLINK)
        return dep == NULL;
    return xlate && out == arrival;
}

/* One parsed packet (parse result r, conntrack key and hash built beforehand):
 * returns its reason; fills res->out_port, the rule ids and any translation. */
static int run_one(struct ns_pipeline *p, const struct ns_pkt *pkt, const struct svc_hashes *hint, int r,
                   const struct ct_key *key, uint32_t hash, uint16_t in_port, uint64_t now,
                   struct ns_result *res)
{
    if (r != NS_R_CONTINUE)
        return r;
    struct ns_tables *t = p->tables;
    const uint16_t zone = key->zone;
    const struct ns_endpoint *sep = tables_endpoint(t, zone, pkt->src);

    /* 1. anti-spoofing: from a pod port only that pod's addresses; from the uplink
     * no pod's nor a Service's. The effective arrival port. */
    uint16_t arrival;
    const int src_pod = sep && sep->kind == NS_EP_POD;
    if (in_port != NS_PORT_UNKNOWN) {
        if (in_port != NS_PORT_UPLINK ? (!src_pod || sep->port != in_port)
                                      : (sep && sep->kind != NS_EP_NODE))
            return NS_R_SPOOFED_SOURCE;
        arrival = in_port;
    } else {
        arrival = src_pod ? sep->port : NS_PORT_UPLINK;
    }

    /* a later fragment follows its first fragment's decision */
    struct frag_key fk;
    if (pkt->frag != NS_FRAG_NONE) {
        memset(&fk, 0, sizeof(fk));
        memcpy(fk.src, pkt->src, 16);
        memcpy(fk.dst, pkt->dst, 16);
        fk.id = pkt->frag_id;
        fk.family = pkt->family;
        fk.proto = pkt->frag_proto;
        fk.zone = zone;
    }
    if (pkt->frag == NS_FRAG_LATER) {
        uint16_t fport;
        if (frag_lookup(&p->frag, &fk, now, &fport) != 0)
            return NS_R_FRAGMENT_UNKNOWN;
        res->out_port = fport;
        return NS_R_FRAGMENT;
    }

    /* 2. connection tracker */
    uint16_t out;
    int dir = 0;
    if (pkt->icmp_kind == NS_ICMP_OTHER)
        return NS_R_UNSUPPORTED_ICMP;
    if (pkt->icmp_kind == NS_ICMP_ERROR) {
        /* The quoted packet is one the error's sender received: translated, as it
         * travelled. Its reversal is the connection's reply key (it went in the
         * original direction) or its original key (it was a reply). */
        struct ct_key ik, rk;
        ns_make_key(&ik, zone, pkt->isrc, pkt->idst, pkt->isport, pkt->idport, pkt->iproto, pkt->iecho);
        ct_reply_of(&ik, NULL, &rk);
        uint32_t ei = ct_lookup(&p->ct, &rk, ct_key_hash(&rk), now, &dir);
        if (ei == NS_NONE32)
            return NS_R_ICMP_ERROR_NO_CONNECTION;
        /* as Linux conntrack: the error must go back to whoever sent the quoted packet */
        if (memcmp(pkt->dst, pkt->isrc, 16) != 0)
            return NS_R_ICMP_ERROR_MISDIRECTED;
        /* translated as a packet of the direction it travels (a reply's when it
         * quotes an original-direction packet); ns_rewrite_frame carries each
         * rewritten end into the quote (see NS_REWRITE_SRC in netsem.h) */
        translate(&p->ct.e[ei], dir, res);
        r = NS_R_RELATED;   /* no refresh, opens nothing */
        goto route;
    }
    int opener = ns_can_open(pkt);
    uint32_t ci = ct_lookup(&p->ct, key, hash, now, &dir);
    if (ci != NS_NONE32 && ct_state_reopenable(p->ct.e[ci].state)) {
        if (opener) {
            ct_delete(&p->ct, ci);   /* the old connection is over; policed as new */
            ci = NS_NONE32;
        } else if (ct_state_closed_tcp(p->ct.e[ci].state)) {
            return NS_R_CONNECTION_CLOSED;
        }
    }
    if (ci != NS_NONE32) {
        uint8_t before = p->ct.e[ci].state;
        uint8_t after = ct_update(&p->ct, ci, dir,
                                  pkt->proto == NS_PROTO_TCP ? pkt->tcp_flags : pkt->sctp_chunk, now);
        if (after != before && ct_state_is_close(after)) {
            struct ns_event *ev = ct_report(&p->ct, ci, NS_EV_CLOSED, now);
            if (ev)
                ev->tcp_flags = pkt->tcp_flags;
        }
        translate(&p->ct.e[ci], dir, res);
        r = dir == CT_DIR_REPLY ? NS_R_REPLY : NS_R_ESTABLISHED;
        goto route;
    }
    if (!opener)
        return NS_R_NO_CONNECTION;

    /* 3. service mapper */
    const struct ns_endpoint *dep = hint ? tables_endpoint_h(t, zone, pkt->dst, hint->ep)
                                         : tables_endpoint(t, zone, pkt->dst);
    struct ct_nat nat;
    nat.flags = 0;
    int xlate = 0;
    r = service_map(t, &p->aff, p->generation, now, dep, pkt, hint && t->n_frontends ? &hint->fe : NULL,
                    nat.xdst, &nat.xport, &xlate);
    if (r != NS_R_CONTINUE)
        return r;
    if (xlate) {
        nat.flags = CT_NAT_DST;
        memcpy(res->dst, nat.xdst, 16);
        res->dport = nat.xport;
        res->rewrite = NS_REWRITE_DST;
        dep = tables_endpoint(t, zone, nat.xdst);
    } else if (arrival == NS_PORT_UPLINK && dep && dep->kind == NS_EP_POD && !sep &&
               !(t->options & NS_OPT_ROUTE_POD_ADDRESSES)) {
        return NS_R_POD_ADDRESS_NOT_ROUTED;   /* the outside reaches pods through Services */
    }

    /* 4. route, 5. egress and ingress policy */
    r = route(t, zone, res->dst, arrival, &out);
    if (r != NS_R_CONTINUE)
        return r;
    r = policy_verdict(t, arrival, sep, dep, pkt->src, res->dst, pkt->proto, res->dport,
                       &res->egress_rule, &res->ingress_rule);
    if (r != NS_R_CONTINUE)
        return r;

    /* 6. commit, with source NAT where it is due */
    if (wants_snat(arrival, out, dep, xlate)) {
        const uint8_t *a = tables_snat_address(t, pkt->family);
        if (a) {
            nat.flags |= CT_NAT_SRC;
            memcpy(nat.xsrc, a, 16);
            if (ct_choose_source_port(&p->ct, key, &nat, now) != 0)
                return NS_R_SNAT_PORTS_EXHAUSTED;
            memcpy(res->src, nat.xsrc, 16);
            res->sport = nat.xsport;
            res->rewrite |= NS_REWRITE_SRC;
        }
    }
    if (ct_reply_clashes(&p->ct, key, &nat, now))   /* the key itself was just looked up */
        return NS_R_CONNTRACK_CLASH;
    if (ct_port_full(&p->ct, arrival, now))
        return NS_R_CONNTRACK_POD_LIMIT;
    ci = ct_insert(&p->ct, key, hash, ns_open_state(pkt->proto), &nat, arrival, now);
    if (ci == NS_NONE32)
        return NS_R_CONNTRACK_FULL;
    struct ct_entry *e = &p->ct.e[ci];
    e->generation = p->generation;
    e->egress_rule = res->egress_rule;
    e->ingress_rule = res->ingress_rule;
    tables_count_hit(t, res->egress_rule);
    tables_count_hit(t, res->ingress_rule);
    struct ns_event *ev = ct_report(&p->ct, ci, NS_EV_NEW, now);
    if (ev) {
        ev->reason = NS_R_NEW;
        ev->out_port = out;
        ev->tcp_flags = pkt->tcp_flags;
    }
    r = NS_R_NEW;
    goto forward;

route:
    if (route(t, zone, res->dst, arrival, &out) != NS_R_CONTINUE)
        return NS_R_NO_ROUTE;
forward:
    if (pkt->frag == NS_FRAG_FIRST && frag_record(&p->frag, &fk, out, now) != 0)
        return NS_R_FRAGMENT_TABLE_FULL;
    res->out_port = out;
    return r;
}

/* Pass (4) of the new-connection hints: the translated connection's reply-key slot
 * (the clash check reads it) and the backend's endpoint slot (route and policy). */
static void prefetch_translated(struct ns_pipeline *p, uint32_t j)
{
    const struct ns_backend *b = service_hashed_backend(p->tables, p->fe_hint[j], p->fe_hash[j]);
    if (!b)
        return;
    const struct ns_tables *t = p->tables;
    const uint16_t zone = p->key[j].zone;
    __builtin_prefetch(&t->ep_idx.slots[tables_endpoint_hash(zone, b->addr) & t->ep_idx.mask]);
    struct ct_nat nat;
    nat.flags = CT_NAT_DST;
    memcpy(nat.xdst, b->addr, 16);
    nat.xport = b->port;
    struct ct_key r;
    ct_reply_of(&p->key[j], &nat, &r);
    ct_prefetch_slot(&p->ct, ct_key_hash(&r));
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

static void result_start(const struct ns_pkt *pkt, uint16_t zone, struct ns_result *o)
{
    o->egress_rule = o->ingress_rule = NS_RULE_NONE;
    o->out_port = 0;
    o->zone = zone;
    o->rewrite = 0;
    o->proto = pkt->proto;
    o->family = pkt->family;
    o->pad[0] = o->pad[1] = 0;
    o->sport = pkt->sport;
    o->dport = pkt->dport;
    memcpy(o->src, pkt->src, 16);
    memcpy(o->dst, pkt->dst, 16);
}

static void result_finish(struct ns_pipeline *p, const struct ns_pkt *pkt, int r, uint16_t in_port,
                          uint64_t now, struct ns_result *o)
{
    o->verdict = ns_reason_verdict_table[r];
    o->reason = (uint8_t)r;
    o->ct_state = reason_ct_state(r);
    p->counter[r]++;
    if (o->verdict == NS_FORWARD)
        return;
    o->out_port = 0;
    if (o->rewrite) {           /* a dropped packet is reported as it arrived */
        o->rewrite = 0;
        o->sport = pkt->sport;
        o->dport = pkt->dport;
        memcpy(o->src, pkt->src, 16);
        memcpy(o->dst, pkt->dst, 16);
    }
    if (o->verdict != NS_DROP)
        return;
    struct ns_event *ev = events_slot(&p->ev);
    if (!ev)
        return;
    ev->time_ns = now;
    /* every policy tier's denial is a denial (the tiers' reasons follow one another) */
    ev->type = (r == NS_R_DENIED_EGRESS || r == NS_R_DENIED_INGRESS ||
                (r >= NS_R_DENIED_ADMIN_EGRESS && r <= NS_R_DENIED_BASELINE_INGRESS)) ? NS_EV_DENIED : NS_EV_DROP;
    ev->generation = p->generation;
    ev->reason = (uint8_t)r;
    ev->egress_rule = o->egress_rule;
    ev->ingress_rule = o->ingress_rule;
    ev->in_port = in_port;
    ev->sport = o->sport;
    ev->dport = o->dport;
    ev->zone = o->zone;
    ev->proto = o->proto;
    ev->family = o->family;
    ev->tcp_flags = pkt->tcp_flags;
    memcpy(ev->src, o->src, 16);
    memcpy(ev->dst, o->dst, 16);
}

uint32_t ns_pipeline_run(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                         const uint32_t *len, const uint16_t *in_port, uint32_t n,
                         uint64_t now_ns, struct ns_result *res)
{
    return ns_pipeline_run_offload(p, buf, off, len, in_port, NULL, n, now_ns, res);
}

uint32_t ns_pipeline_run_offload(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                                 const uint32_t *len, const uint16_t *in_port,
                                 const struct ns_offload *ol, uint32_t n, uint64_t now_ns,
                                 struct ns_result *res)
{
    p->last_now = now_ns;
    ct_reclaim(&p->ct, now_ns, p->lim.reclaim_per_batch);
    frag_reclaim(&p->frag, now_ns, p->lim.reclaim_per_batch);
    for (uint32_t base = 0; base < n; base += NS_CHUNK) {
        uint32_t m = n - base < NS_CHUNK ? n - base : NS_CHUNK;
        /* 1. parse, hash the conntrack key, prefetch its index bucket */
        for (uint32_t j = 0; j < m; j++) {
            struct ns_pkt *pkt = &p->pkt[j];
            p->parsed[j] = sanity_parse(buf + off[base + j], len[base + j], pkt);
            if (ol && p->parsed[j] == NS_R_CONTINUE)
                p->parsed[j] = sanity_offload(pkt, &ol[base + j]);
            ns_make_key(&p->key[j], tables_port_zone(p->tables, in_port[base + j]), pkt->src,
                     pkt->dst, pkt->sport, pkt->dport, pkt->proto, pkt->echo);
            if (p->parsed[j] == NS_R_CONTINUE) {
                p->hash[j] = ct_key_hash(&p->key[j]);
                ct_prefetch_slot(&p->ct, p->hash[j]);
            }
        }
        /* 2. prefetch the entries the buckets name; a packet whose home bucket holds
         * no fingerprint of its hash is likely new: prefetch what the service mapper,
         * route and policy will read (index slots, then entries, then backends) */
        for (uint32_t j = 0; j < m; j++) {
            p->likely_new[j] = 0;
            if (p->parsed[j] != NS_R_CONTINUE)
                continue;
            if (!ct_prefetch_entry(&p->ct, p->hash[j])) {
                p->likely_new[j] = 1;
                service_prefetch_slots(p->tables, p->key[j].zone, &p->pkt[j], &p->svc_h[j]);
            }
        }
        /* the rest of a likely-new packet's chain here for the chunk's first packets;
         * for the others while running the chunk, staggered (below) */
        const uint32_t head = m < NS_AHEAD ? m : NS_AHEAD;
        for (uint32_t j = 0; j < m; j++)
            p->fe_hint[j] = p->likely_new[j] && j < head ? service_prefetch_entries(p->tables, &p->svc_h[j])
                                                         : NULL;
        for (uint32_t j = 0; j < head; j++)
            if (p->fe_hint[j])
                p->fe_hash[j] = service_prefetch_backend(p->tables, p->fe_hint[j], &p->pkt[j]);
        for (uint32_t j = 0; j < head; j++)
            if (p->fe_hint[j])
                prefetch_translated(p, j);

        /* 3. run each packet, in order; the entry of the packet NS_AHEAD on is
         * prefetched again here, so its lead is that many packets' work, not the
         * short pass above (whose prefetches serve the chunk's first packets) */
        for (uint32_t j = 0; j < m; j++) {
            const uint32_t k = j + NS_AHEAD, k2 = j + NS_AHEAD * 2 / 3, k3 = j + NS_AHEAD / 3;
            if (k < m && p->parsed[k] == NS_R_CONTINUE) {
                if (!p->likely_new[k])
                    ct_prefetch_entry(&p->ct, p->hash[k]);
                else
                    p->fe_hint[k] = service_prefetch_entries(p->tables, &p->svc_h[k]);
            }
            if (k2 >= head && k2 < m && p->fe_hint[k2])
                p->fe_hash[k2] = service_prefetch_backend(p->tables, p->fe_hint[k2], &p->pkt[k2]);
            if (k3 >= head && k3 < m && p->fe_hint[k3])
                prefetch_translated(p, k3);
            struct ns_result *o = &res[base + j];
            uint16_t port = in_port[base + j];
            result_start(&p->pkt[j], p->key[j].zone, o);
            const struct svc_hashes *hint = p->likely_new[j] && p->tables ? &p->svc_h[j] : NULL;
            int r = run_one(p, &p->pkt[j], hint, p->parsed[j], &p->key[j], p->hash[j], port, now_ns, o);
            result_finish(p, &p->pkt[j], r, port, now_ns, o);
        }
    }
    return n;
}
