/* Table sets for the harness, replayed from the traces gen_tables.py recorded while
 * the real compiler built them (one ns_tables_* call per record: op, payload length,
 * payload, the return value the compiler got). The replay makes the same calls and
 * must get the same answers; it keeps what the mutator aims at: the endpoints (pods,
 * VIPs, nodes), the frontends with their backends and Maglev slots, the port zones
 * and the source NAT addresses. */
#include <dirent.h>
#include <stdio.h>
#include "fuzz.h"

struct fz_set fz_sets[FZ_MAX_SETS];
uint32_t fz_n_sets;

enum {
    FT_NEW = 1, FT_ADD_ENDPOINTS, FT_ADD_ENDPOINT, FT_PORT_ZONE, FT_PORT_NETWORK, FT_ROUTABLE,
    FT_OPTIONS, FT_SNAT, FT_ISOLATION, FT_PREFIX, FT_CLASS_BLOCK, FT_RULE, FT_FRONTEND,
    FT_AFFINITY, FT_RULE_ACTION, FT_PEER_CELLS, FT_BLOCK_CELLS, FT_SEAL,
};

struct cur {                   /* a bounds-checked reader over one record's payload */
    const uint8_t *p, *end;
    const char *file;
};

static void die(const char *file, const char *what)
{
    fprintf(stderr, "netsem-fuzz: table trace %s: %s\n", file, what);
    abort();
}

static const uint8_t *take(struct cur *c, size_t n)
{
    if ((size_t)(c->end - c->p) < n)
        die(c->file, "record shorter than its fields");
    const uint8_t *r = c->p;
    c->p += n;
    return r;
}

static uint8_t g8(struct cur *c) { return *take(c, 1); }
static uint16_t g16(struct cur *c) { uint16_t v; memcpy(&v, take(c, 2), 2); return v; }
static uint32_t g32(struct cur *c) { uint32_t v; memcpy(&v, take(c, 4), 4); return v; }

uint16_t fz_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Arrays go to the C functions aligned, as cffi passed them. */
static void *copy(struct cur *c, size_t n)
{
    void *b = malloc(n ? n : 1);
    memcpy(b, take(c, n), n);
    return b;
}

static void add_port(struct fz_set *s, uint16_t port)
{
    for (uint32_t i = 0; i < s->n_ports; i++)
        if (s->ports[i] == port)
            return;
    if (s->n_ports < sizeof(s->ports) / sizeof(s->ports[0]))
        s->ports[s->n_ports++] = port;
}

static int replay_one(struct fz_set *s, int op, struct cur *c)
{
    struct ns_tables *t = s->t;
    if (op != FT_NEW && !t)
        die(c->file, "a call before ns_tables_new");
    switch (op) {
    case FT_NEW: {
        uint32_t *f = (uint32_t *)&s->lim;   /* the 11 uint32 fields, in declaration order */
        _Static_assert(sizeof(struct ns_table_limits) == 11 * 4, "gen_tables.py writes 11 limits");
        for (int i = 0; i < 11; i++)
            f[i] = g32(c);
        s->t = ns_tables_new(&s->lim);
        return s->t ? 0 : -1;
    }
    case FT_ADD_ENDPOINTS: {
        uint32_t n = g32(c), failed = 0;
        uint16_t *zones = copy(c, 2 * (size_t)n);
        uint8_t *addrs = copy(c, 16 * (size_t)n), *kinds = copy(c, n);
        uint16_t *ports = copy(c, 2 * (size_t)n);
        uint32_t *ids = copy(c, 4 * (size_t)n);
        uint16_t *nodes = copy(c, 2 * (size_t)n);
        uint32_t *owners = copy(c, 4 * (size_t)n);
        int rc = ns_tables_add_endpoints(t, n, zones, addrs, kinds, ports, ids, nodes, owners, &failed);
        s->ep = realloc(s->ep, (s->n_ep + n) * sizeof(*s->ep) + 1);
        for (uint32_t i = 0; i < n; i++) {
            struct fz_ep *e = &s->ep[s->n_ep++];
            memcpy(e->addr, addrs + 16 * i, 16);
            e->zone = zones[i];
            e->port = ports[i];
            e->kind = kinds[i];
        }
        free(zones), free(addrs), free(kinds), free(ports), free(ids), free(nodes), free(owners);
        return rc;
    }
    case FT_ADD_ENDPOINT: {
        struct fz_ep e;
        e.zone = g16(c);
        memcpy(e.addr, take(c, 16), 16);
        e.kind = g8(c);
        e.port = g16(c);
        uint32_t ident = g32(c);
        uint16_t node = g16(c);
        uint32_t owner = g32(c);
        s->ep = realloc(s->ep, (s->n_ep + 1) * sizeof(*s->ep));
        s->ep[s->n_ep++] = e;
        return ns_tables_add_endpoint(t, e.zone, e.addr, e.kind, e.port, ident, node, owner);
    }
    case FT_PORT_ZONE: {
        uint16_t port = g16(c), zone = g16(c);
        s->zone = realloc(s->zone, (s->n_zone + 1) * sizeof(*s->zone));
        s->zone[s->n_zone++] = (struct fz_zone){port, zone};
        return ns_tables_set_port_zone(t, port, zone);
    }
    case FT_PORT_NETWORK: {
        uint16_t port = g16(c), net = g16(c);
        return ns_tables_set_port_network(t, port, net);
    }
    case FT_ROUTABLE: {
        uint16_t a = g16(c), b = g16(c);
        return ns_tables_set_routable(t, a, b);
    }
    case FT_OPTIONS:
        return ns_tables_set_options(t, g32(c));
    case FT_SNAT: {
        const uint8_t *a = take(c, 16);
        int i = !addr_is_v4mapped(a);
        memcpy(s->snat[i], a, 16);
        s->has_snat[i] = 1;
        return ns_tables_set_snat_address(t, a);
    }
    case FT_ISOLATION: {
        uint32_t id = g32(c);
        return ns_tables_set_isolation(t, id, g8(c));
    }
    case FT_PREFIX: {
        const uint8_t *a = take(c, 16);
        uint8_t plen = g8(c);
        return ns_tables_add_prefix(t, a, plen, g32(c));
    }
    case FT_CLASS_BLOCK: {
        uint32_t cls = g32(c);
        return ns_tables_add_class_block(t, cls, g32(c));
    }
    case FT_RULE: {
        uint32_t local = g32(c);
        uint8_t dir = g8(c);
        uint32_t peer = g32(c), block = g32(c);
        uint8_t proto = g8(c);
        uint16_t lo = g16(c), hi = g16(c);
        add_port(s, lo);
        add_port(s, hi);
        return ns_tables_add_rule(t, local, dir, peer, block, proto, lo, hi, g32(c));
    }
    case FT_FRONTEND: {
        struct fz_fe f;
        f.zone = g16(c);
        memcpy(f.addr, take(c, 16), 16);
        f.proto = g8(c);
        f.port = g16(c);
        f.flags = g8(c);
        f.n = g16(c);
        f.be_addrs = take(c, 16 * (size_t)f.n);
        f.be_ports = take(c, 2 * (size_t)f.n);
        f.m = g16(c);
        f.slots = take(c, 2 * (size_t)f.m);
        s->fe = realloc(s->fe, (s->n_fe + 1) * sizeof(*s->fe));
        s->fe[s->n_fe++] = f;
        add_port(s, f.port);
        for (uint32_t i = 0; i < f.n; i++)
            add_port(s, fz_u16(f.be_ports + 2 * i));
        uint8_t *ba = malloc(16 * (size_t)f.n + 16);
        uint16_t *bp = malloc(2 * (size_t)f.n + 2), *sl = malloc(2 * (size_t)f.m + 2);
        memcpy(ba, f.be_addrs, 16 * (size_t)f.n);
        memcpy(bp, f.be_ports, 2 * (size_t)f.n);
        memcpy(sl, f.slots, 2 * (size_t)f.m);
        int rc = ns_tables_add_frontend(t, f.zone, f.addr, f.proto, f.port, f.flags, f.n, ba, bp, f.m, sl);
        free(ba), free(bp), free(sl);
        return rc;
    }
    case FT_AFFINITY: {
        uint16_t zone = g16(c);
        const uint8_t *a = take(c, 16);
        uint8_t proto = g8(c);
        uint16_t port = g16(c);
        return ns_tables_set_affinity_timeout(t, zone, a, proto, port, g32(c));
    }
    case FT_RULE_ACTION: {
        uint32_t rule = g32(c);
        return ns_tables_set_rule_action(t, rule, g8(c));
    }
    case FT_PEER_CELLS: {
        uint8_t dir = g8(c);
        uint32_t dim = g32(c);
        uint32_t *cells = copy(c, 4 * (size_t)dim * dim);
        int rc = ns_tables_set_peer_cells(t, dir, cells, dim);
        free(cells);
        return rc;
    }
    case FT_BLOCK_CELLS: {
        uint8_t dir = g8(c);
        uint32_t dim = g32(c), classes = g32(c);
        uint32_t *cells = copy(c, 4 * (size_t)dim * classes);
        int rc = ns_tables_set_block_cells(t, dir, cells, dim, classes);
        free(cells);
        return rc;
    }
    case FT_SEAL:
        return ns_tables_seal(t);
    default:
        die(c->file, "unknown op (gen_tables.py and fuzz_tables.c disagree)");
        return -1;
    }
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, "cannot open");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (sz < 0 || fread(b, 1, (size_t)sz, f) != (size_t)sz)
        die(path, "cannot read");
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void load_one(struct fz_set *s, const char *path)
{
    size_t n;
    memset(s, 0, sizeof(*s));
    s->trace = slurp(path, &n);
    if (n < 8 || memcmp(s->trace, "NSTT", 4) != 0 || s->trace[4] != 1)
        die(path, "not a version 1 table trace (run gen_tables.py again)");
    struct cur all = {s->trace + 8, s->trace + n, path};
    int sealed = 0;
    while (all.p < all.end) {
        int op = g8(&all);
        uint32_t plen = g32(&all);
        struct cur c = {take(&all, plen), NULL, path};
        c.end = c.p + plen;
        int32_t want;
        memcpy(&want, take(&all, 4), 4);
        int rc = replay_one(s, op, &c);
        if (c.p != c.end)
            die(path, "a record longer than its fields");
        if (rc != want) {
            fprintf(stderr, "netsem-fuzz: %s: op %d returned %d, the compiler got %d\n", path, op, rc, want);
            abort();
        }
        sealed |= op == FT_SEAL && rc == 0;
    }
    if (!sealed)
        die(path, "never sealed");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

uint32_t fz_load_sets(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        die(dir, "no such directory (make builds it; NETSEM_FUZZ_TABLES names another)");
    char *names[FZ_MAX_SETS];
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < FZ_MAX_SETS) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".bin") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    for (uint32_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        load_one(&fz_sets[i], path);
        free(names[i]);
    }
    fz_n_sets = n;
    return n;
}

uint16_t fz_port_zone(const struct fz_set *s, uint16_t port)
{
    uint16_t z = NS_ZONE_DEFAULT;
    for (uint32_t i = 0; i < s->n_zone; i++)
        if (s->zone[i].port == port)
            z = s->zone[i].zone;   /* the last call wins, as in the tables */
    return z;
}
