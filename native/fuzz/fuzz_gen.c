/* What the mutator generates: frames aimed at a table set's pods, Service VIPs, node
 * ports and the outside, and frames that follow the input's earlier ones (the same
 * connection either way, its reply from the backend the Maglev table picks or to the
 * masquerade address, ICMP errors quoting it as its receiver saw it, later
 * fragments). Byte-level mutation (LLVMFuzzerMutate) and bogus quotes do the rest.
 * Generated addresses stay in 198.18.0.0/15 and 2001:db8::/32 (and their IPv4-mapped
 * forms); the special classes the sanity filter refuses are left to byte mutation. */
#include "fuzz.h"

uint32_t fz_rand(struct fz_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 16);
}

static int one_in(struct fz_rng *r, uint32_t n) { return fz_below(r, n) == 0; }

static int fam_of(const uint8_t *a) { return addr_is_v4mapped(a) ? 4 : 6; }

/* An address outside the cluster: 198.19.200.x or 2001:db8:ff::x. */
static void outside(struct fz_rng *r, int fam, uint8_t *a)
{
    memset(a, 0, 16);
    if (fam == 4) {
        a[10] = a[11] = 0xff, a[12] = 198, a[13] = 19, a[14] = 200, a[15] = (uint8_t)(1 + fz_below(r, 254));
    } else {
        a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8, a[5] = 0xff, a[15] = (uint8_t)(1 + fz_below(r, 254));
    }
}

/* A random endpoint of kind (0: any) and family (0: any) in zone (-1: any), or NULL. */
static const struct fz_ep *pick_ep(struct fz_rng *r, const struct fz_set *s, int kind, int fam, int zone)
{
    uint32_t start = fz_below(r, s->n_ep);
    for (uint32_t k = 0; k < s->n_ep; k++) {
        const struct fz_ep *e = &s->ep[(start + k) % s->n_ep];
        if ((!kind || e->kind == kind) && (!fam || fam_of(e->addr) == fam) && (zone < 0 || e->zone == zone))
            return e;
    }
    return NULL;
}

static const struct fz_ep *find_ep(const struct fz_set *s, uint16_t zone, const uint8_t *a)
{
    for (uint32_t i = 0; i < s->n_ep; i++)
        if (s->ep[i].zone == zone && memcmp(s->ep[i].addr, a, 16) == 0)
            return &s->ep[i];
    return NULL;
}

static uint16_t pick_port(struct fz_rng *r, const struct fz_set *s)
{
    switch (fz_below(r, 4)) {
    case 0: return (uint16_t)fz_rand(r);
    case 1: return (uint16_t)(32768 + fz_below(r, 28232));
    default: return s->n_ports ? s->ports[fz_below(r, s->n_ports)] : 80;
    }
}

static uint8_t tcp_flags(struct fz_rng *r, int opening, int reply)
{
    static const uint8_t some[] = {0x10, 0x18, 0x11, 0x04, 0x14, 0x02, 0x12, 0x01, 0x03, 0x06, 0x00, 0x3f};
    if (opening && !one_in(r, 6))
        return 0x02;
    if (reply && one_in(r, 2))
        return 0x12;
    return one_in(r, 8) ? (uint8_t)fz_rand(r) : some[fz_below(r, sizeof(some))];
}

static uint8_t sctp_chunk(struct fz_rng *r, int opening, int reply)
{
    static const uint8_t some[] = {0, 1, 2, 3, 6, 7, 8, 10, 11, 14};
    if (opening && !one_in(r, 6))
        return NS_SCTP_INIT;
    if (reply && one_in(r, 2))
        return NS_SCTP_INIT_ACK;
    return some[fz_below(r, sizeof(some))];
}

/* Header dressing common to every generated frame: tags, options, extension
 * headers, fragments, sizes, lengths that lie. */
static void dress(struct fz_rng *r, struct fz_pkt *p)
{
    p->vlan = one_in(r, 8);
    p->v4_opt_words = one_in(r, 8) ? (uint8_t)(1 + fz_below(r, 10)) : 0;
    if (p->family == 6 && one_in(r, 6)) {
        static const uint8_t kinds[] = {0, 43, 60, 44};
        p->n_ext = (uint8_t)(1 + fz_below(r, one_in(r, 8) ? 6 : 3));
        for (uint32_t i = 0; i < p->n_ext; i++)
            p->ext[i] = kinds[fz_below(r, 4)];
    }
    p->frag = one_in(r, 12) ? (uint8_t)(1 + fz_below(r, 3)) : 0;
    p->frag_id = fz_rand(r) & (p->family == 4 ? 0xffff : 0xffffffff);
    p->frag_off = (uint16_t)(1 + fz_below(r, 8000));
    p->tcp_doff = one_in(r, 6) ? (uint8_t)(5 + fz_below(r, 11)) : 5;
    static const uint16_t big[] = {1400, 1480, 2049, 9000, 65000};
    p->payload = (uint16_t)(one_in(r, 40) ? big[fz_below(r, one_in(r, 20) ? 5 : 4)] : fz_below(r, 48));
    p->len_mode = one_in(r, 7) ? (uint8_t)fz_below(r, FZ_LEN_MODES) : FZ_LEN_EXACT;
    p->bad_csum = one_in(r, 40);
    if (p->family == 6 && one_in(r, 40)) {       /* IPv4-mapped IPv6 at either end */
        uint8_t *a = one_in(r, 2) ? p->src : p->dst;
        memset(a, 0, 10), a[10] = a[11] = 0xff, a[12] = 198, a[13] = 18, a[14] = 0;
        a[15] = (uint8_t)(1 + fz_below(r, 8));
    }
}

static void set_proto(struct fz_rng *r, struct fz_pkt *p, uint8_t proto, int opening, int reply)
{
    p->proto = proto;
    if (proto == NS_PROTO_ICMP || proto == NS_PROTO_ICMPV6) {
        p->proto = p->family == 4 ? NS_PROTO_ICMP : NS_PROTO_ICMPV6;
        int req = opening || (!reply && !one_in(r, 4));
        p->icmp_type = p->family == 4 ? (req ? 8 : 0) : (req ? 128 : 129);
        if (one_in(r, 16))
            p->icmp_type = (uint8_t)(p->family == 6 && one_in(r, 2) ? 130 + fz_below(r, 14) : fz_rand(r));
        p->dport = p->sport;
    }
    p->tcp_flags = tcp_flags(r, opening, reply);
    p->sctp_chunk = sctp_chunk(r, opening, reply);
}

/* A new connection (or an attempt): pods, the outside, nodes and VIPs as sources;
 * frontends, pods, nodes and the outside as destinations, in the source's zone. */
static void new_flow(struct fz_rng *r, const struct fz_set *s, struct fz_pkt *p, uint16_t *port)
{
    static const uint8_t protos[] = {NS_PROTO_TCP, NS_PROTO_TCP, NS_PROTO_UDP, NS_PROTO_SCTP, NS_PROTO_ICMP};
    const struct fz_ep *src = NULL;
    uint32_t k = fz_below(r, 10);
    int fam = one_in(r, 3) ? 6 : 4;
    if (k < 5)
        src = pick_ep(r, s, NS_EP_POD, 0, -1);
    else if (k == 7)
        src = pick_ep(r, s, NS_EP_NODE, 0, -1);
    else if (k == 8)
        src = pick_ep(r, s, NS_EP_SERVICE, 0, -1);
    if (src) {
        fam = fam_of(src->addr);
        memcpy(p->src, src->addr, 16);
        *port = src->kind == NS_EP_POD ? src->port : NS_PORT_UPLINK;
    } else {
        outside(r, fam, p->src);
        *port = NS_PORT_UPLINK;
    }
    if (one_in(r, 12))
        *port = one_in(r, 2) ? NS_PORT_UNKNOWN : (uint16_t)fz_below(r, 16);   /* unknown, or spoofed */
    const int zone = fz_port_zone(s, *port);
    p->family = (uint8_t)fam;
    p->sport = one_in(r, 4) ? pick_port(r, s) : (uint16_t)(32768 + fz_below(r, 28232));
    uint8_t proto = protos[fz_below(r, sizeof(protos))];
    p->dport = pick_port(r, s);
    const struct fz_ep *dst = NULL;
    int done = 0;
    k = fz_below(r, 10);
    if (k < 4 && s->n_fe) {                            /* a frontend: VIP or node port */
        for (uint32_t i = 0, j = fz_below(r, s->n_fe); i < s->n_fe && !done; i++, j = (j + 1) % s->n_fe)
            if (fam_of(s->fe[j].addr) == fam && (s->fe[j].zone == zone || one_in(r, 8))) {
                memcpy(p->dst, s->fe[j].addr, 16);
                if (!one_in(r, 8))
                    proto = s->fe[j].proto, p->dport = s->fe[j].port;
                done = 1;
            }
    } else if (k < 7) {
        dst = pick_ep(r, s, NS_EP_POD, fam, one_in(r, 8) ? -1 : zone);
    } else if (k == 7) {
        dst = pick_ep(r, s, NS_EP_NODE, fam, -1);
    }
    if (dst)
        memcpy(p->dst, dst->addr, 16);
    else if (!done)
        outside(r, fam, p->dst);
    set_proto(r, p, proto, 1, 0);
}

/* The backend the frontend's Maglev table gives the tuple (affinity aside), or -1. */
static int backend_of(const struct fz_fe *f, const struct ns_pkt *t)
{
    if (!f->n || !f->m)
        return -1;
    const int cip = f->flags & NS_FE_CLIENT_IP;
    uint32_t h = ns_flow_hash(t->src, t->dst, cip ? 0 : t->sport, cip ? 0 : t->dport, t->proto);
    uint16_t i = fz_u16(f->slots + 2 * (h % f->m));
    return i < f->n ? i : -1;
}

static const struct fz_fe *frontend_of(const struct fz_set *s, uint16_t zone, const struct ns_pkt *t)
{
    for (uint32_t i = 0; i < s->n_fe; i++) {
        const struct fz_fe *f = &s->fe[i];
        if (f->zone == zone && f->proto == t->proto && f->port == t->dport && !memcmp(f->addr, t->dst, 16))
            return f;
    }
    return NULL;
}

/* Where the earlier packet t (arrived on port, zone) really went: its destination
 * after DNAT (*xd, *xdport) and its source after masquerade (*xs, *xsport). */
static void as_received(struct fz_rng *r, const struct fz_set *s, const struct ns_pkt *t, uint16_t zone,
                        uint8_t *xs, uint16_t *xsport, uint8_t *xd, uint16_t *xdport)
{
    memcpy(xs, t->src, 16), memcpy(xd, t->dst, 16);
    *xsport = t->sport, *xdport = t->dport;
    const struct fz_fe *f = frontend_of(s, zone, t);
    int b = f ? backend_of(f, t) : -1;
    if (b >= 0 && !one_in(r, 8)) {
        memcpy(xd, f->be_addrs + 16 * b, 16);
        *xdport = fz_u16(f->be_ports + 2 * b);
    }
    const struct fz_ep *se = find_ep(s, zone, t->src), *de = find_ep(s, zone, xd);
    const int i = t->family == 6;
    int hairpin = b >= 0 && se && !memcmp(xd, t->src, 16);
    if (se && se->kind == NS_EP_POD && s->has_snat[i] && (hairpin || !de) && !one_in(r, 8)) {
        memcpy(xs, s->snat[i], 16);      /* masquerade keeps a port of its range when free */
        if (*xsport < 32768 || *xsport > 60999)
            *xsport = (uint16_t)(32768 + fz_below(r, 28232));
    }
}

static uint16_t port_at(const struct fz_set *s, uint16_t zone, const uint8_t *a)
{
    const struct fz_ep *e = find_ep(s, zone, a);
    return e && e->kind == NS_EP_POD ? e->port : NS_PORT_UPLINK;
}

/* A quote: the first bytes of packet q, as an ICMP error carries it. */
static uint32_t quote(struct fz_rng *r, struct fz_pkt *q, uint8_t *buf, uint32_t cap)
{
    q->payload = (uint16_t)fz_below(r, 16);
    uint32_t n = fz_build_ip(buf, cap, q, fz_rand(r));
    uint32_t hl = q->family == 4 ? (uint32_t)(buf[0] & 15) * 4 : 40;
    switch (fz_below(r, 8)) {
    case 0: return n;                                  /* all of it */
    case 1: return n < hl + 8 ? n : hl + fz_below(r, 8);   /* too short for ports */
    case 2: return fz_below(r, hl + 8);
    default: return n < hl + 8 ? n : hl + 8;           /* what routers quote */
    }
}

uint32_t fz_gen(struct fz_rng *r, const struct fz_set *s, const struct fz_prev *prev, uint32_t n_prev,
                uint8_t *out, uint32_t cap, uint16_t *port)
{
    struct fz_pkt p;
    memset(&p, 0, sizeof(p));
    uint32_t k = fz_below(r, 20);
    if (k == 0) {                                      /* not IP at all: ARP, LLDP */
        uint32_t n = 14 + fz_below(r, 46);
        if (n > cap)
            return 0;
        memset(out, 0xab, n);
        out[12] = one_in(r, 2) ? 0x08 : 0x88, out[13] = out[12] == 0x08 ? 0x06 : 0xcc;
        *port = (uint16_t)fz_below(r, 8);
        return n;
    }
    struct ns_pkt t;
    const struct fz_prev *pv = n_prev ? &prev[fz_below(r, n_prev)] : NULL;
    if (k >= 18)                                       /* later fragments follow first ones */
        for (uint32_t i = 0, j = fz_below(r, n_prev); i < n_prev; i++, j = (j + 1) % n_prev)
            if (sanity_parse(prev[j].frame, prev[j].len, &t) == NS_R_CONTINUE && t.frag == NS_FRAG_FIRST) {
                pv = &prev[j];
                break;
            }
    if (k < 8 || !pv || sanity_parse(pv->frame, pv->len, &t) != NS_R_CONTINUE || !t.family) {
        new_flow(r, s, &p, port);
        dress(r, &p);
        return fz_build_frame(out, cap, &p, fz_rand(r));
    }
    const uint16_t zone = fz_port_zone(s, pv->port);
    p.family = t.family;
    uint8_t xs[16], xd[16];
    uint16_t xsport, xdport;
    as_received(r, s, &t, zone, xs, &xsport, xd, &xdport);
    if (k < 11) {                                      /* the same connection, same way */
        memcpy(p.src, t.src, 16), memcpy(p.dst, t.dst, 16);
        p.sport = t.sport, p.dport = t.dport, *port = pv->port;
        set_proto(r, &p, t.proto, 0, 0);
    } else if (k < 15) {                               /* its reply, from where it went */
        memcpy(p.src, xd, 16), memcpy(p.dst, xs, 16);
        p.sport = xdport, p.dport = xsport;
        *port = port_at(s, zone, xd);
        set_proto(r, &p, t.proto, 0, 1);
    } else if (k < 18) {                               /* an ICMP error quoting it */
        struct fz_pkt q;
        memset(&q, 0, sizeof(q));
        q.family = t.family;
        if (one_in(r, 3)) {                            /* from the client, about a reply */
            memcpy(q.src, t.dst, 16), memcpy(q.dst, t.src, 16);   /* as the client saw it */
            q.sport = t.dport, q.dport = t.sport;
        } else {                                       /* to the client, as received */
            memcpy(q.src, xs, 16), memcpy(q.dst, xd, 16);
            q.sport = xsport, q.dport = xdport;
        }
        int back = !memcmp(q.dst, t.src, 16);
        if (one_in(r, 6)) {                            /* a bogus tuple */
            outside(r, q.family, one_in(r, 2) ? q.src : q.dst);
            q.sport = pick_port(r, s);
        }
        set_proto(r, &q, t.proto, 0, back);
        if (one_in(r, 10))                             /* an error about an error */
            q.proto = q.family == 4 ? NS_PROTO_ICMP : NS_PROTO_ICMPV6, q.icmp_type = q.family == 4 ? 3 : 1;
        if (q.family == 6 && one_in(r, 30))
            memset(q.dst, 0, 10), q.dst[10] = q.dst[11] = 0xff;
        uint8_t qb[256];
        p.quote = qb;
        p.quote_len = quote(r, &q, qb, sizeof(qb));
        /* from the quote's receiver (or a router outside), back to its sender */
        memcpy(p.src, q.dst, 16);
        if (one_in(r, 4))
            outside(r, p.family, p.src);
        memcpy(p.dst, q.src, 16);
        if (one_in(r, 10))                             /* misdirected */
            outside(r, p.family, p.dst);
        *port = port_at(s, zone, p.src);
        if (one_in(r, 20))
            p.family = p.family == 4 ? 6 : 4, memcpy(p.src, t.src, 16);
        p.proto = p.family == 4 ? NS_PROTO_ICMP : NS_PROTO_ICMPV6;
        static const uint8_t t4[] = {3, 3, 3, 11, 12, 4, 5}, t6[] = {1, 1, 3, 4, 2};
        p.icmp_type = p.family == 4 ? t4[fz_below(r, sizeof(t4))] : t6[fz_below(r, sizeof(t6))];
        p.icmp_code = (uint8_t)fz_below(r, p.family == 4 ? 16 : 7);
        p.vlan = one_in(r, 8);
        return fz_build_frame(out, cap, &p, fz_rand(r));
    } else {                                           /* a later fragment of it */
        memcpy(p.src, t.src, 16), memcpy(p.dst, t.dst, 16);
        p.proto = t.frag ? t.frag_proto : t.proto, *port = pv->port;
        dress(r, &p);
        p.frag = 2, p.frag_id = t.frag ? t.frag_id : p.frag_id;
        p.payload = (uint16_t)(8 * (1 + fz_below(r, 20)));
        return fz_build_frame(out, cap, &p, fz_rand(r));
    }
    dress(r, &p);
    if (p.frag == 2)
        p.frag = 0;
    return fz_build_frame(out, cap, &p, fz_rand(r));
}
