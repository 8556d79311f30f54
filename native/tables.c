/* Table set: endpoints, isolation, and the public ns_tables_* API. */
#include "tables.h"

static struct ns_policy_part *policy_part_new(const struct ns_table_limits *lim)
{
    struct ns_policy_part *pt = calloc(1, sizeof(*pt));
    if (!pt)
        return NULL;
    pt->refs = 1;
    pt->identities = lim->identities;
    pt->isolation = calloc(lim->identities, 1);
    pt->n_actions = lim->rules;
    pt->action = calloc(lim->rules ? lim->rules : 1, 1);
    if (!pt->isolation || !pt->action || lpm_init(&pt->lpm, lim->prefixes, lim->class_blocks) != 0 ||
        rules_init(&pt->rules, lim->rule_keys, lim->rule_entries) != 0) {
        free(pt->isolation);
        free(pt->action);
        lpm_fini(&pt->lpm);
        rules_fini(&pt->rules);
        free(pt);
        return NULL;
    }
    return pt;
}

/* Drops one table set's hold; the last frees it. */
static void policy_part_put(struct ns_policy_part *pt)
{
    if (!pt || __atomic_sub_fetch(&pt->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(pt->isolation);
    free(pt->action);
    for (int d = 0; d < NS_DIRS; d++) {
        free(pt->cells[d]);
        free(pt->bcells[d]);
    }
    lpm_fini(&pt->lpm);
    rules_fini(&pt->rules);
    free(pt);
}

/* The policy part, when adds to it are still open (not sealed, not shared). */
static struct ns_policy_part *open_policy(struct ns_tables *t)
{
    return (t && !t->sealed && !t->pol->sealed) ? t->pol : NULL;
}

int ns_tables_share_policy(struct ns_tables *t, const struct ns_tables *from)
{
    if (!t || t->sealed || !from || !from->sealed || t->pol == from->pol ||
        t->lim.rules < from->lim.rules || t->lim.identities < from->pol->identities)
        return -1;
    __atomic_add_fetch(&from->pol->refs, 1, __ATOMIC_ACQ_REL);
    policy_part_put(t->pol);
    t->pol = from->pol;
    return 0;
}

struct ns_tables *ns_tables_new(const struct ns_table_limits *limits)
{
    struct ns_tables *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (limits)
        t->lim = *limits;
    if (!t->lim.endpoints) t->lim.endpoints = NS_DEF_ENDPOINTS;
    if (!t->lim.identities) t->lim.identities = NS_DEF_IDENTITIES;
    if (!t->lim.rule_keys) t->lim.rule_keys = NS_DEF_RULE_KEYS;
    if (!t->lim.rule_entries) t->lim.rule_entries = NS_DEF_RULE_ENTRIES;
    if (!t->lim.prefixes) t->lim.prefixes = NS_DEF_PREFIXES;
    if (!t->lim.class_blocks) t->lim.class_blocks = NS_DEF_CLASS_BLOCKS;
    if (!t->lim.rules) t->lim.rules = NS_DEF_RULES;
    if (!t->lim.frontends) t->lim.frontends = NS_DEF_FRONTENDS;
    if (!t->lim.backends) t->lim.backends = NS_DEF_BACKENDS;
    if (!t->lim.maglev_slots) t->lim.maglev_slots = NS_DEF_MAGLEV_SLOTS;
    if (!t->lim.networks) t->lim.networks = NS_DEF_NETWORKS;
    if (t->lim.networks > NS_MAX_NETWORKS) {
        free(t);
        return NULL;
    }
    t->ep = ns_table_alloc((uint64_t)t->lim.endpoints * sizeof(*t->ep));
    t->pol = policy_part_new(&t->lim);
    t->port_zone = calloc(NS_PORTS, sizeof(*t->port_zone));
    t->port_net = calloc(NS_PORTS, sizeof(*t->port_net));
    t->routable = calloc(((uint64_t)t->lim.networks * t->lim.networks + 63) / 64, sizeof(*t->routable));
    t->rule_hits = calloc(t->lim.rules, sizeof(*t->rule_hits));
    t->fe = ns_table_alloc((uint64_t)t->lim.frontends * sizeof(*t->fe));
    t->be = ns_table_alloc((uint64_t)t->lim.backends * sizeof(*t->be));
    t->maglev = ns_table_alloc((uint64_t)t->lim.maglev_slots * sizeof(*t->maglev));
    if (!t->ep || !t->pol || !t->port_zone || !t->port_net || !t->routable || !t->rule_hits || hidx_init(&t->ep_idx, t->lim.endpoints) != 0 ||
        !t->fe || !t->be || !t->maglev || hidx_init(&t->fe_idx, t->lim.frontends) != 0) {
        ns_tables_free(t);
        return NULL;
    }
    return t;
}

void ns_tables_free(struct ns_tables *t)
{
    if (!t)
        return;
    free(t->ep);
    policy_part_put(t->pol);
    free(t->port_zone);
    free(t->port_net);
    free(t->routable);
    free(t->rule_hits);
    hidx_fini(&t->ep_idx);
    free(t->fe);
    free(t->be);
    free(t->maglev);
    hidx_fini(&t->fe_idx);
    free(t);
}

int ns_tables_add_endpoint(struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                           uint8_t kind, uint16_t port, uint32_t identity, uint16_t node,
                           uint32_t owner)
{
    if (!t || t->sealed || t->n_endpoints >= t->lim.endpoints)
        return -1;
    if (kind == NS_EP_POD) {
        /* a pod port is 1..65534; identity 0 is the world */
        if (port == NS_PORT_UPLINK || port == NS_PORT_UNKNOWN || identity == 0 ||
            identity >= t->lim.identities)
            return -1;
    } else if (kind == NS_EP_SERVICE || kind == NS_EP_NODE) {
        if (port != 0 || identity != 0)
            return -1;
    } else {
        return -1;
    }
    if (tables_endpoint(t, zone, addr16))
        return -1;   /* duplicate address in the zone */
    uint32_t i = t->n_endpoints++;
    struct ns_endpoint *e = &t->ep[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->addr, addr16, 16);
    e->zone = zone;
    e->kind = kind;
    e->port = port;
    e->identity = identity;
    e->node = node;
    e->owner = owner;
    hidx_insert(&t->ep_idx, tables_endpoint_hash(zone, addr16), i + 1);
    return 0;
}

int ns_tables_add_endpoints(struct ns_tables *t, uint32_t n, const uint16_t *zones, const uint8_t *addrs16,
                            const uint8_t *kinds, const uint16_t *ports, const uint32_t *identities,
                            const uint16_t *nodes, const uint32_t *owners, uint32_t *failed)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ns_tables_add_endpoint(t, zones[i], addrs16 + 16 * (size_t)i, kinds[i], ports[i], identities[i],
                                   nodes[i], owners[i]) != 0) {
            if (failed)
                *failed = i;
            return -1;
        }
    }
    return 0;
}

int ns_tables_add_frontend(struct ns_tables *t, uint16_t zone, const uint8_t *addr16, uint8_t proto,
                           uint16_t port, uint8_t flags, uint16_t n, const uint8_t *backend_addrs16,
                           const uint16_t *backend_ports, uint16_t m, const uint16_t *slots)
{
    if (!t || t->sealed || m == 0 || (flags & ~NS_FE_CLIENT_IP) || t->n_frontends >= t->lim.frontends ||
        n > t->lim.backends - t->n_backends || (n && m > t->lim.maglev_slots - t->n_slots))
        return -1;
    const struct ns_endpoint *e = tables_endpoint(t, zone, addr16);
    if (!e || (e->kind != NS_EP_SERVICE && e->kind != NS_EP_NODE) || tables_frontend(t, zone, addr16, proto, port))
        return -1;
    for (uint32_t i = 0; n && i < m; i++)
        if (slots[i] >= n)
            return -1;
    uint32_t fi = t->n_frontends++;
    struct ns_frontend *f = &t->fe[fi];
    memset(f, 0, sizeof(*f));
    memcpy(f->addr, addr16, 16);
    f->zone = zone;
    f->proto = proto;
    f->flags = flags;
    f->port = port;
    f->n_backends = n;
    f->m = m;
    f->affinity_s = 10800;   /* the API's default timeoutSeconds */
    f->first_backend = t->n_backends;
    f->first_slot = t->n_slots;
    for (uint32_t i = 0; i < n; i++) {
        struct ns_backend *b = &t->be[t->n_backends++];
        memset(b, 0, sizeof(*b));
        memcpy(b->addr, backend_addrs16 + 16 * i, 16);
        b->port = backend_ports[i];
    }
    if (n) {
        memcpy(t->maglev + t->n_slots, slots, (size_t)m * sizeof(uint16_t));
        t->n_slots += m;
    }
    hidx_insert(&t->fe_idx, tables_frontend_hash(zone, addr16, proto, port), fi + 1);
    return 0;
}

int ns_tables_set_port_zone(struct ns_tables *t, uint16_t port, uint16_t zone)
{
    if (!t || t->sealed)
        return -1;
    t->port_zone[port] = zone;
    return 0;
}

int ns_tables_set_port_network(struct ns_tables *t, uint16_t port, uint16_t network)
{
    if (!t || t->sealed || network >= t->lim.networks)
        return -1;
    t->port_net[port] = network;
    return 0;
}

int ns_tables_set_routable(struct ns_tables *t, uint16_t a, uint16_t b)
{
    if (!t || t->sealed || a >= t->lim.networks || b >= t->lim.networks)
        return -1;
    const uint32_t ab = (uint32_t)a * t->lim.networks + b, ba = (uint32_t)b * t->lim.networks + a;
    t->routable[ab >> 6] |= 1ull << (ab & 63);    /* routing is both ways */
    t->routable[ba >> 6] |= 1ull << (ba & 63);
    return 0;
}

int ns_tables_set_options(struct ns_tables *t, uint32_t options)
{
    if (!t || t->sealed ||
        (options & ~(uint32_t)(NS_OPT_POLICE_NODE_TRAFFIC | NS_OPT_ROUTE_POD_ADDRESSES)))
        return -1;
    t->options = options;
    return 0;
}

int ns_tables_set_snat_address(struct ns_tables *t, const uint8_t *addr16)
{
    if (!t || t->sealed || !addr16)
        return -1;
    const int i = !addr_is_v4mapped(addr16);
    memcpy(t->snat[i], addr16, 16);
    t->has_snat[i] = 1;
    return 0;
}

uint64_t ns_tables_rule_hits(const struct ns_tables *t, uint32_t rule_id)
{
    return (t && rule_id < t->lim.rules) ? t->rule_hits[rule_id] : 0;
}

int ns_tables_set_isolation(struct ns_tables *t, uint32_t identity, uint8_t mask)
{
    struct ns_policy_part *pt = open_policy(t);
    if (!pt || identity == 0 || identity >= pt->identities ||
        (mask & ~(NS_ISOLATED_INGRESS | NS_ISOLATED_EGRESS | NS_SUBJECT_ADMIN_INGRESS | NS_SUBJECT_ADMIN_EGRESS |
                  NS_SUBJECT_BASELINE_INGRESS | NS_SUBJECT_BASELINE_EGRESS)))
        return -1;
    pt->isolation[identity] = mask;
    return 0;
}

int ns_tables_add_prefix(struct ns_tables *t, const uint8_t *addr16, uint8_t plen,
                         uint32_t class_id)
{
    struct ns_policy_part *pt = open_policy(t);
    return pt ? lpm_add(&pt->lpm, addr16, plen, class_id) : -1;
}

int ns_tables_add_class_block(struct ns_tables *t, uint32_t class_id, uint32_t block_id)
{
    struct ns_policy_part *pt = open_policy(t);
    return pt ? lpm_add_block(&pt->lpm, class_id, block_id) : -1;
}

int ns_tables_add_rule(struct ns_tables *t, uint32_t local_identity, uint8_t dir,
                       uint32_t peer_identity, uint32_t block_id, uint8_t proto,
                       uint16_t port_lo, uint16_t port_hi, uint32_t rule_id)
{
    /* local 0: a peer-set state's key (peer = the state; block 0, or an address class) */
    struct ns_policy_part *pt = open_policy(t);
    if (!pt || (local_identity == 0 && peer_identity == 0) ||
        dir >= NS_DIRS || port_lo > port_hi || rule_id == NS_RULE_NONE ||
        (dir > NS_DIR_EGRESS && rule_id >= pt->n_actions))      /* a tier's rule has an action */
        return -1;
    struct rule_key k = {.local = local_identity, .peer = peer_identity, .block = block_id,
                         .dir = dir};
    if (rules_add(&pt->rules, &k, proto, port_lo, port_hi, rule_id) != 0)
        return -1;
    pt->tiers |= 1u << dir;
    return 0;
}

int ns_tables_set_rule_action(struct ns_tables *t, uint32_t rule, uint8_t action)
{
    struct ns_policy_part *pt = open_policy(t);
    if (!pt || rule >= pt->n_actions || action > NS_ACTION_PASS)
        return -1;
    pt->action[rule] = action;
    return 0;
}

int ns_tables_seal(struct ns_tables *t)
{
    if (!t || t->sealed)
        return -1;
    struct ns_policy_part *pt = t->pol;
    if (!pt->sealed) {      /* a shared part was sealed by the table set that built it */
        if (lpm_seal(&pt->lpm) != 0 || rules_seal(&pt->rules) != 0)
            return -1;
        pt->sealed = 1;
    }
    t->sealed = 1;
    return 0;
}

static uint64_t cells_bytes(const struct ns_policy_part *pt)
{
    uint64_t n = 0;
    for (int d = 0; d < NS_DIRS; d++)
        n += (uint64_t)!!pt->cells[d] * pt->cell_dim * pt->cell_dim +
             (uint64_t)!!pt->bcells[d] * pt->cell_dim * pt->bcell_classes;
    return n * sizeof(uint32_t);
}

uint64_t ns_tables_memory(const struct ns_tables *t)
{
    if (!t)
        return 0;
    const struct ns_policy_part *pt = t->pol;
    return sizeof(*t) + (uint64_t)t->lim.endpoints * sizeof(struct ns_endpoint) +
           hidx_bytes(&t->ep_idx) + sizeof(*pt) + pt->identities + lpm_bytes(&pt->lpm) +
           rules_bytes(&pt->rules) + NS_PORTS * sizeof(uint16_t) +
           (uint64_t)t->lim.rules * sizeof(uint64_t) +
           (uint64_t)t->lim.frontends * sizeof(struct ns_frontend) + hidx_bytes(&t->fe_idx) +
           (uint64_t)t->lim.backends * sizeof(struct ns_backend) +
           (uint64_t)t->lim.maglev_slots * sizeof(uint16_t) +
           cells_bytes(pt) + pt->n_actions;
}

int ns_tables_set_block_cells(struct ns_tables *t, uint8_t dir, const uint32_t *cells, uint32_t dim,
                              uint32_t classes)
{
    struct ns_policy_part *pt = open_policy(t);
    if (!pt || dir >= NS_DIRS || !cells || dim == 0 || dim > NS_MAX_CELL_DIM ||
        dim > pt->identities || (pt->cell_dim && pt->cell_dim != dim) || pt->bcells[dir] ||
        classes == 0 || classes > t->lim.prefixes + 1 || (pt->bcell_classes && pt->bcell_classes != classes))
        return -1;
    /* tens of MB read at random: huge pages, faulted in before use (ns_table_copy) */
    uint32_t *m = ns_table_copy(cells, (size_t)dim * classes * sizeof(*m));
    if (!m)
        return -1;
    pt->bcells[dir] = m;
    pt->cell_dim = dim;
    pt->bcell_classes = classes;
    return 0;
}

int ns_tables_set_peer_cells(struct ns_tables *t, uint8_t dir, const uint32_t *cells, uint32_t dim)
{
    struct ns_policy_part *pt = open_policy(t);
    if (!pt || dir >= NS_DIRS || !cells || dim == 0 || dim > NS_MAX_CELL_DIM ||
        dim > pt->identities || (pt->cell_dim && pt->cell_dim != dim) || pt->cells[dir])
        return -1;
    /* tens of MB read at random: huge pages, faulted in before use (ns_table_copy) */
    uint32_t *m = ns_table_copy(cells, (size_t)dim * dim * sizeof(*m));
    if (!m)
        return -1;
    pt->cells[dir] = m;
    pt->cell_dim = dim;
    return 0;
}

int ns_tables_lookup_endpoint(const struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                              uint8_t *kind, uint16_t *port, uint32_t *identity)
{
    const struct ns_endpoint *e = tables_endpoint(t, zone, addr16);
    if (!e)
        return -1;
    if (kind) *kind = e->kind;
    if (port) *port = e->port;
    if (identity) *identity = e->identity;
    return 0;
}

uint32_t ns_tables_lookup_class(const struct ns_tables *t, const uint8_t *addr16)
{
    if (!t || !t->sealed)
        return 0;
    return lpm_class(&t->pol->lpm, lpm_lookup(&t->pol->lpm, addr16));
}

int ns_tables_set_affinity_timeout(struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                                   uint8_t proto, uint16_t port, uint32_t seconds)
{
    if (!t || t->sealed || seconds == 0)
        return -1;
    struct ns_frontend *f = (struct ns_frontend *)tables_frontend(t, zone, addr16, proto, port);
    if (!f)
        return -1;
    f->affinity_s = seconds;
    return 0;
}
