/* The structure-aware mutator: an input is a header and records of one frame each
 * (fuzz.h); a mutation edits records, never the bytes across them, so frames stay
 * frames. It generates frames aimed at the input's table set (fuzz_gen.c), edits
 * header fields that the sanity filter and the stages branch on (checksums fixed
 * afterwards, mostly, so the edit reaches past the filter), edits the batching, time
 * steps, swaps and arrival ports, and hands single frames to libFuzzer's byte-level
 * LLVMFuzzerMutate. */
#include "fuzz.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

uint32_t fz_parse(const uint8_t *d, size_t n, struct fz_rec *r, uint32_t max)
{
    uint32_t k = 0;
    size_t at = FZ_HDR;
    while (at + FZ_REC <= n && k < max) {
        const uint8_t *h = d + at;
        uint32_t len = rd32(h + 4);
        at += FZ_REC;
        if (len > n - at)
            len = (uint32_t)(n - at);
        r[k++] = (struct fz_rec){h[0], h[1], rd16(h + 2), (uint32_t)at, len};
        at += len;
    }
    return k;
}

size_t fz_put_rec(uint8_t *out, size_t cap, uint8_t ctl, uint8_t tstep, uint16_t port,
                  const uint8_t *frame, uint32_t len)
{
    if (cap < FZ_REC || len > cap - FZ_REC)
        return 0;
    out[0] = ctl, out[1] = tstep, out[2] = (uint8_t)(port >> 8), out[3] = (uint8_t)port;
    out[4] = (uint8_t)(len >> 24), out[5] = (uint8_t)(len >> 16), out[6] = (uint8_t)(len >> 8);
    out[7] = (uint8_t)len;
    memcpy(out + FZ_REC, frame, len);
    return FZ_REC + len;
}

static int one_in(struct fz_rng *r, uint32_t n) { return fz_below(r, n) == 0; }

static uint8_t new_ctl(struct fz_rng *r)
{
    uint8_t c = one_in(r, 5) ? FZ_BREAK : 0;
    if (one_in(r, 30))
        c |= FZ_SWAP | (uint8_t)(fz_below(r, 8) << FZ_SWAP_SHIFT) | (one_in(r, 2) ? FZ_RECHECK : 0) |
             (one_in(r, 10) ? FZ_SWAP_NULL : 0);
    return c;
}

static uint8_t new_tstep(struct fz_rng *r)
{
    return one_in(r, 4) ? (uint8_t)fz_rand(r) : (uint8_t)fz_below(r, 4);
}

/* Fixes what an edit broke when asked: the IPv4 header checksum, then the L4 one. */
static void fix_csums(uint8_t *f, uint32_t len, int l4_too)
{
    uint32_t l3 = len >= 14 && rd16(f + 12) == 0x8100 ? 18 : 14;
    if (len >= l3 + 20 && (f[l3] >> 4) == 4) {
        uint32_t hl = (uint32_t)(f[l3] & 15) * 4;
        if (hl >= 20 && l3 + hl <= len) {
            f[l3 + 10] = f[l3 + 11] = 0;
            uint16_t c = fz_ip_csum(f + l3, hl);
            f[l3 + 10] = (uint8_t)(c >> 8), f[l3 + 11] = (uint8_t)c;
        }
    }
    struct ns_pkt p;
    if (l4_too && sanity_parse(f, len, &p) == NS_R_CONTINUE)
        fz_fix_l4(f, len, &p);
}

/* One header field of the frame set to a value its parser branches on. */
static void edit_field(struct fz_rng *r, const struct fz_set *s, uint8_t *f, uint32_t len)
{
    static const uint16_t ethertypes[] = {0x0800, 0x86DD, 0x8100, 0x0806, 0x88cc, 0x0000};
    static const uint8_t protos[] = {0, 1, 6, 17, 43, 44, 58, 60, 132, 59, 255};
    uint32_t l3 = len >= 14 && rd16(f + 12) == 0x8100 ? 18 : 14;
    struct ns_pkt p;
    int pr = sanity_parse(f, len, &p);
    uint8_t *l4 = p.l4 && p.l4 < len ? f + p.l4 : NULL;
    uint32_t l4n = l4 ? len - p.l4 : 0;
    uint32_t v = fz_rand(r);
    switch (fz_below(r, 12)) {
    case 0:
        if (len >= 14) {
            uint16_t e = ethertypes[fz_below(r, sizeof(ethertypes) / 2)];
            f[12] = (uint8_t)(e >> 8), f[13] = (uint8_t)e;
        }
        break;
    case 1:                                   /* IP version / IHL, or traffic class */
        if (len > l3)
            f[l3] = one_in(r, 2) ? (uint8_t)((f[l3] & 0xf0) | fz_below(r, 16)) : (uint8_t)v;
        break;
    case 2:                                   /* IPv4 total length, IPv6 payload length */
        if (len >= l3 + 6) {
            uint32_t at = l3 + (p.family == 6 ? 4 : 2), ip = len - l3;
            uint32_t want = one_in(r, 3) ? v & 0xffff : ip - (p.family == 6 ? 40 : 0) + fz_below(r, 9) - 4;
            f[at] = (uint8_t)(want >> 8), f[at + 1] = (uint8_t)want;
        }
        break;
    case 3:                                   /* fragment flags and offset; IPv6 flow label */
        if (len >= l3 + 8)
            f[l3 + 6] = (uint8_t)(one_in(r, 2) ? 0x20 : v), f[l3 + 7] = (uint8_t)(v >> 8);
        break;
    case 4:                                   /* protocol / next header */
        if (len >= l3 + 10)
            f[l3 + (p.family == 6 ? 6 : 9)] = protos[fz_below(r, sizeof(protos))];
        break;
    case 5:                                   /* an address: another endpoint's, or swapped */
        if (p.family && s->n_ep && len >= l3 + (p.family == 4 ? 20u : 40u)) {
            const struct fz_ep *e = &s->ep[fz_below(r, s->n_ep)];
            int dst = one_in(r, 2);
            uint32_t at = l3 + (p.family == 4 ? 12 + 4 * dst : 8 + 16 * dst);
            memcpy(f + at, p.family == 4 ? e->addr + 12 : e->addr, p.family == 4 ? 4 : 16);
        }
        break;
    case 6:                                   /* ports: swapped, zero, a rule's or a frontend's */
        if (l4n >= 4) {
            uint32_t at = one_in(r, 2) ? 0 : 2;
            uint16_t port = one_in(r, 4) ? 0 : s->n_ports ? s->ports[fz_below(r, s->n_ports)] : (uint16_t)v;
            l4[at] = (uint8_t)(port >> 8), l4[at + 1] = (uint8_t)port;
        }
        break;
    case 7:                                   /* TCP flags and data offset; SCTP chunk */
        if (p.proto == NS_PROTO_TCP && l4n >= 14)
            l4[13 - one_in(r, 3)] = (uint8_t)v;
        else if (p.proto == NS_PROTO_SCTP && l4n >= 13)
            l4[12] = (uint8_t)fz_below(r, 16);
        break;
    case 8:                                   /* UDP length; ICMP type and code */
        if (p.proto == NS_PROTO_UDP && l4n >= 6)
            l4[4] = (uint8_t)(v >> 8), l4[5] = (uint8_t)fz_below(r, 16);
        else if ((p.proto == NS_PROTO_ICMP || p.proto == NS_PROTO_ICMPV6) && l4n >= 2)
            l4[fz_below(r, 2)] = (uint8_t)v;
        break;
    case 9:                                   /* something in an ICMP error's quote */
        if (p.icmp_kind == NS_ICMP_ERROR && l4n > 8)
            l4[8 + fz_below(r, l4n - 8 > 48 ? 48 : l4n - 8)] = (uint8_t)v;
        break;
    case 10:                                  /* an IPv6 extension header's next header or length */
        if (p.family == 6 && len > l3 + 41)
            f[l3 + 40 + fz_below(r, 2)] = one_in(r, 2) ? protos[fz_below(r, sizeof(protos))] : (uint8_t)v;
        break;
    default:                                  /* the VLAN tag's ethertype */
        if (l3 == 18)
            f[16] = (uint8_t)(v >> 8), f[17] = (uint8_t)v;
        break;
    }
    (void)pr;
    fix_csums(f, len, !one_in(r, 4));
}

enum { M_APPEND, M_INSERT, M_REPLACE, M_BYTES, M_FIELD, M_CTL, M_DELETE, M_DUP, M_SWAP, M_HDR, M_RESIZE, M_N };

static uint8_t *scratch, *frame;
static size_t scratch_cap;

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    struct fz_rng r = {((uint64_t)seed << 1 | 1) * 0x9E3779B97F4A7C15ull};
    if (!fz_n_sets || max_size < FZ_HDR + FZ_REC + 64)
        return LLVMFuzzerMutate(data, size, max_size);
    if (scratch_cap < max_size) {
        free(scratch);
        scratch = malloc(max_size);
        scratch_cap = max_size;
    }
    if (!frame)
        frame = malloc(FZ_FRAME_MAX);
    static struct fz_rec rec[FZ_MAX_FRAMES];
    static struct fz_prev prev[FZ_MAX_FRAMES];
    uint32_t n = size >= FZ_HDR && !one_in(&r, 64) ? fz_parse(data, size, rec, FZ_MAX_FRAMES) : 0;
    for (uint32_t i = 0; i < n; i++)
        prev[i] = (struct fz_prev){data + rec[i].off, rec[i].len, rec[i].port};
    size_t out = FZ_HDR;
    if (size >= FZ_HDR && n)
        memcpy(scratch, data, FZ_HDR);
    else
        for (int i = 0; i < FZ_HDR; i++)
            scratch[i] = (uint8_t)fz_rand(&r);
    const struct fz_set *s = &fz_sets[scratch[0] % fz_n_sets];
    uint32_t op = n ? fz_below(&r, M_N) : M_APPEND, at = fz_below(&r, n), other = fz_below(&r, n);
    if (op == M_HDR) {
        scratch[fz_below(&r, FZ_HDR)] = (uint8_t)fz_rand(&r);
        s = &fz_sets[scratch[0] % fz_n_sets];
    }
    uint32_t room = (uint32_t)(max_size - FZ_REC < FZ_FRAME_MAX ? max_size - FZ_REC : FZ_FRAME_MAX);
    for (uint32_t i = 0; i <= n; i++) {
        if ((op == M_INSERT && i == at) || (op == M_APPEND && i == n)) {
            for (uint32_t k = 0, times = op == M_APPEND && !n ? 1 + fz_below(&r, 32) : 1 + fz_below(&r, 4);
                 k < times; k++) {
                uint16_t port = 0;
                uint32_t len = fz_gen(&r, s, prev, i, frame, room, &port);
                out += fz_put_rec(scratch + out, max_size - out, new_ctl(&r), new_tstep(&r), port, frame, len);
            }
        }
        if (i == n || (op == M_DELETE && i == at))
            continue;
        struct fz_rec c = rec[i];
        const uint8_t *src = data + c.off;
        uint32_t len = c.len;
        if (i == at && op != M_INSERT && op != M_APPEND && op != M_HDR && op != M_DUP && op != M_SWAP) {
            memcpy(frame, src, len);
            src = frame;
            if (op == M_REPLACE) {
                len = fz_gen(&r, s, prev, i, frame, room, &c.port);
            } else if (op == M_BYTES) {
                uint32_t cap = len * 2 + 64 < room ? len * 2 + 64 : room;
                len = (uint32_t)LLVMFuzzerMutate(frame, len, cap);
                if (one_in(&r, 2))
                    fix_csums(frame, len, one_in(&r, 2));
            } else if (op == M_FIELD) {
                edit_field(&r, s, frame, len);
            } else if (op == M_CTL) {
                uint32_t w = fz_below(&r, 3);
                if (w == 0)
                    c.ctl = one_in(&r, 2) ? new_ctl(&r) : c.ctl ^ (uint8_t)(1u << fz_below(&r, 7));
                else if (w == 1)
                    c.tstep = (uint8_t)fz_rand(&r);
                else
                    c.port = one_in(&r, 3) ? (uint16_t)(one_in(&r, 2) ? NS_PORT_UNKNOWN : fz_rand(&r))
                           : s->n_ep ? s->ep[fz_below(&r, s->n_ep)].port : 0;
            } else if (op == M_RESIZE) {
                if (one_in(&r, 2) || len + 64 > room)
                    len = fz_below(&r, len + 1);
                else
                    for (uint32_t k = 1 + fz_below(&r, 64); k; k--)
                        frame[len++] = (uint8_t)fz_rand(&r);
            }
        }
        if (op == M_SWAP && (i == at || i == other)) {
            struct fz_rec o = rec[i == at ? other : at];
            src = data + o.off, len = o.len, c.port = o.port;
        }
        out += fz_put_rec(scratch + out, max_size - out, c.ctl, c.tstep, c.port, src, len);
        if (op == M_DUP && i == at)
            out += fz_put_rec(scratch + out, max_size - out, new_ctl(&r), c.tstep, c.port, src, len);
    }
    memcpy(data, scratch, out);
    return out;
}
