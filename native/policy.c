/* Policy filters (see policy.h). */
#include "policy.h"
#include "reasons.h"

/* The smallest rule id matching one direction (dir: NS_DIR_*, or a tier's
 * NS_DIR_ADMIN_* / NS_DIR_BASELINE_*), or NS_RULE_NONE: probe (local, dir, p, b) for
 * p in {0, peer} and b in {0} + blocks(class(peer address)) (docs/pipeline.md
 * "Policy table"). The number of probes depends on neither policies nor rules. */
/* The peer address's prefix (its class's blocks): looked up once per direction and
 * shared by the tiers' probes. */
struct peer_class {
    const uint32_t *blk;
    uint32_t nblk;
};

static struct peer_class peer_class_of(const struct ns_policy_part *pt, const uint8_t *peer_addr16)
{
    const uint32_t pi = lpm_lookup(&pt->lpm, peer_addr16);
    struct peer_class c = {NULL, 0};
    if (pi != NS_NONE32) {
        c.blk = pt->lpm.blocks + pt->lpm.blk_off[pi];
        c.nblk = pt->lpm.blk_cnt[pi];
    }
    return c;
}

static uint32_t probe(const struct ns_policy_part *pt, uint8_t dir, uint32_t local_identity,
                      uint32_t peer_identity, struct peer_class pc, uint8_t proto, uint16_t dport)
{
    uint32_t best = NS_RULE_NONE;
    /* ICMP/ICMPv6: dport 0, only entries of protocol 0 (rules without ports) */
    int icmp = proto == NS_PROTO_ICMP || proto == NS_PROTO_ICMPV6;
    if (icmp)
        dport = 0;
    const uint32_t *blk = pc.blk;
    const uint32_t nblk = pc.nblk;
    struct rule_key k = {.local = local_identity, .dir = dir};
    for (int pv = 0; pv < 2; pv++) {
        if (pv == 1 && peer_identity == 0)
            break;
        k.peer = pv ? peer_identity : 0;
        for (uint32_t b = 0; b <= nblk; b++) {
            k.block = b ? blk[b - 1] : 0;
            /* Peer-set states: a peer pod's pair, or (no peer pod) the
             * address's class, is one matrix read; the state's keys carry
             * the block for a peer pod (egress named ports to ipBlocks). */
            const uint32_t *cells = pv ? pt->cells[dir] : b ? pt->bcells[dir] : NULL;
            const uint32_t width = pv ? pt->cell_dim : pt->bcell_classes;
            const uint32_t col = pv ? peer_identity : k.block;
            uint32_t r;
            if (cells) {
                const uint32_t s = local_identity < pt->cell_dim && col < width
                                       ? cells[(size_t)local_identity * width + col] : 0;
                if (!s)
                    continue;
                const struct rule_key ks = {.local = 0, .peer = s, .block = pv ? k.block : 0,
                                            .dir = dir};
                r = rules_match(&pt->rules, &ks, proto, dport, icmp);
            } else {
                r = rules_match(&pt->rules, &k, proto, dport, icmp);
            }
            if (r < best)
                best = r;
        }
    }
    return best;
}

/* NetworkPolicy's verdict of one direction: a local identity that is not isolated
 * in that direction is allowed (rule NS_RULE_NONE); an isolated one by the smallest
 * matching rule id, or denied. pc: the peer's class, or NULL to look it up. */
static int np_check(const struct ns_tables *t, uint8_t dir, uint32_t local_identity, uint32_t peer_identity,
                    const uint8_t *peer_addr16, const struct peer_class *pc, uint8_t proto, uint16_t dport,
                    uint32_t *rule)
{
    uint32_t best = NS_RULE_NONE;
    int allowed = 1;
    uint8_t bit = dir == NS_DIR_EGRESS ? NS_ISOLATED_EGRESS : NS_ISOLATED_INGRESS;
    const struct ns_policy_part *pt = t ? t->pol : NULL;
    if (t && dir <= NS_DIR_EGRESS && local_identity != 0 && local_identity < pt->identities &&
        (pt->isolation[local_identity] & bit)) {
        allowed = 0;
        if (t->sealed) {
            best = probe(pt, dir, local_identity, peer_identity, pc ? *pc : peer_class_of(pt, peer_addr16), proto,
                         dport);
            allowed = best != NS_RULE_NONE;
        }
    }
    if (rule)
        *rule = best;
    return allowed;
}

int ns_tables_policy_check(const struct ns_tables *t, uint8_t dir, uint32_t local_identity,
                           uint32_t peer_identity, const uint8_t *peer_addr16, uint8_t proto,
                           uint16_t dport, uint32_t *rule)
{
    return np_check(t, dir, local_identity, peer_identity, peer_addr16, NULL, proto, dport, rule);
}

/* The tier's subject bit for the local identity (NS_SUBJECT_*): whether to probe. */
static int tier_subject(const struct ns_tables *t, uint8_t tier_dir, uint32_t local_identity)
{
    const struct ns_policy_part *pt = t ? t->pol : NULL;
    return t && t->sealed && tier_dir >= NS_DIR_ADMIN_INGRESS && tier_dir < NS_DIRS && local_identity != 0 &&
           local_identity < pt->identities && (pt->isolation[local_identity] & (1u << (tier_dir + 2)));
}

static int tier_action(const struct ns_tables *t, uint8_t tier_dir, uint32_t local_identity,
                       uint32_t peer_identity, const uint8_t *peer_addr16, struct peer_class *pc, int *have_pc,
                       uint8_t proto, uint16_t dport, uint32_t *rule)
{
    uint32_t r = NS_RULE_NONE;
    if (tier_subject(t, tier_dir, local_identity)) {
        if (!*have_pc) {
            *pc = peer_class_of(t->pol, peer_addr16);
            *have_pc = 1;
        }
        r = probe(t->pol, tier_dir, local_identity, peer_identity, *pc, proto, dport);
    }
    if (rule)
        *rule = r;
    return r == NS_RULE_NONE || r >= t->pol->n_actions ? NS_ACTION_NONE : t->pol->action[r];
}

int ns_tables_tier_check(const struct ns_tables *t, uint8_t tier_dir, uint32_t local_identity,
                         uint32_t peer_identity, const uint8_t *peer_addr16, uint8_t proto, uint16_t dport,
                         uint32_t *rule)
{
    struct peer_class pc;
    int have = 0;
    return tier_action(t, tier_dir, local_identity, peer_identity, peer_addr16, &pc, &have, proto, dport, rule);
}

/* One direction through the tiers (docs/semantics.md "Cluster-wide policy"): the
 * Admin tier's first matching rule, unless it passes; else NetworkPolicy for an
 * isolated local; else the Baseline tier's; else allowed. NS_R_CONTINUE, or the
 * drop reason (deny_np, or the tiers' reasons after it in reasons.h). */
int ns_tables_direction_verdict(const struct ns_tables *t, uint8_t dir, int tiers, uint32_t local,
                                uint32_t peer, const uint8_t *peer16, uint8_t proto, uint16_t dport,
                                uint32_t *rule)
{
    const int egress = dir == NS_DIR_EGRESS;
    const int deny_np = egress ? NS_R_DENIED_EGRESS : NS_R_DENIED_INGRESS;
    const int deny_admin = egress ? NS_R_DENIED_ADMIN_EGRESS : NS_R_DENIED_ADMIN_INGRESS;
    const int deny_baseline = egress ? NS_R_DENIED_BASELINE_EGRESS : NS_R_DENIED_BASELINE_INGRESS;
    uint32_t unused;
    if (!rule)
        rule = &unused;
    *rule = NS_RULE_NONE;
    if (dir > NS_DIR_EGRESS)
        return deny_np;             /* not a direction of NetworkPolicy's: refuse */
    if (!t)
        tiers = 0;                  /* no tables: nothing isolates, nothing denies */
    struct peer_class pc = {NULL, 0};
    int have_pc = 0;        /* the LPM lookup, once for every tier that probes */
    if (tiers) {
        const int a = tier_action(t, NS_DIR_ADMIN_INGRESS + dir, local, peer, peer16, &pc, &have_pc, proto, dport,
                                  rule);
        if (a == NS_ACTION_ALLOW)
            return NS_R_CONTINUE;
        if (a == NS_ACTION_DENY) {
            *rule = NS_RULE_NONE;
            return deny_admin;
        }
    }
    const uint8_t bit = dir == NS_DIR_EGRESS ? NS_ISOLATED_EGRESS : NS_ISOLATED_INGRESS;
    const struct ns_policy_part *pt = t ? t->pol : NULL;
    if (!tiers || (local < pt->identities && (pt->isolation[local] & bit))) {
        if (!np_check(t, dir, local, peer, peer16, have_pc ? &pc : NULL, proto, dport, rule)) {
            *rule = NS_RULE_NONE;
            return deny_np;
        }
        return NS_R_CONTINUE;
    }
    const int b = tier_action(t, NS_DIR_BASELINE_INGRESS + dir, local, peer, peer16, &pc, &have_pc, proto, dport,
                              rule);
    if (b == NS_ACTION_DENY) {
        *rule = NS_RULE_NONE;
        return deny_baseline;
    }
    if (b != NS_ACTION_ALLOW)
        *rule = NS_RULE_NONE;
    return NS_R_CONTINUE;
}

static uint32_t identity_of(const struct ns_endpoint *e)
{
    return (e && e->kind == NS_EP_POD) ? e->identity : 0;
}

int policy_verdict(const struct ns_tables *t, uint16_t arrival, const struct ns_endpoint *sep,
                   const struct ns_endpoint *dep, const uint8_t *src16, const uint8_t *dst16,
                   uint8_t proto, uint16_t dport, uint32_t *egress_rule, uint32_t *ingress_rule)
{
    *egress_rule = *ingress_rule = NS_RULE_NONE;
    /* one's own address (the same pod, or the same node) is not policed */
    if (ns_own_address(sep, dep))
        return NS_R_CONTINUE;
    /* networks: one, or two routable to each other (004 type 1), or nothing passes */
    const uint16_t snet = tables_port_network(t, arrival), dnet = tables_endpoint_network(t, dep);
    if (t && !tables_networks_meet(t, snet, dnet))
        return NS_R_NETWORK_UNREACHABLE;
    /* a node reaching a pod on it: pods cannot block their node (unless strict) */
    if (sep && dep && sep->kind == NS_EP_NODE && dep->kind == NS_EP_POD &&
        sep->node == dep->node && !(t && (t->options & NS_OPT_POLICE_NODE_TRAFFIC)))
        return NS_R_CONTINUE;
    uint32_t sid = identity_of(sep), did = identity_of(dep);
    if (!sid && !did)
        return NS_R_NO_ROUTE;   /* neither end is a pod: not a connection of the cluster */
    /* Across two routable networks each end's policies are its own network's, whose
     * selectors see pods by their addresses on that network: the peer is an address
     * (ipBlocks only), as multi-networkpolicy-tc and OVN-Kubernetes resolve them. */
    const int across = snet != dnet;
    /* Cluster-wide policy tiers apply on the cluster network (network 0) only. */
    const int tiers = t && (t->pol->tiers & ~((1u << NS_DIR_ADMIN_INGRESS) - 1));
    int r = ns_tables_direction_verdict(t, NS_DIR_EGRESS, tiers && snet == 0, sid, across ? 0 : did, dst16,
                                        proto, dport, egress_rule);
    if (r != NS_R_CONTINUE)
        return r;
    return ns_tables_direction_verdict(t, NS_DIR_INGRESS, tiers && dnet == 0, did, across ? 0 : sid, src16,
                                       proto, dport, ingress_rule);
}
