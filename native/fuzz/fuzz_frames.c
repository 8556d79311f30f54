/* Frame builders for the mutator, and the checksum arithmetic the invariants need.
 * Frames are built right (lengths and checksums agree) unless len_mode or bad_csum
 * asks for a lie, so that most of them get past the sanity filter to the stages
 * behind it; the lies reach the filter's every branch. */
#include "fuzz.h"

static uint32_t mix(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void w16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void w32(uint8_t *p, uint32_t v) { w16(p, v >> 16); w16(p + 2, v); }

uint16_t fz_ip_csum(const uint8_t *p, uint32_t n)
{
    return ns_csum_fold(ns_csum_add(0, p, n));
}

uint32_t fz_crc32c(const uint8_t *p, uint32_t n)
{
    static uint32_t tab[256];
    if (!tab[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            tab[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < n; i++)
        c = tab[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The pseudo-header sum of TCP, UDP and ICMPv6 (RFC 768, 793, 8200 8.1). */
static uint32_t pseudo(const uint8_t *ip, int v4, uint8_t proto, uint32_t l4len)
{
    uint32_t sum = v4 ? ns_csum_add(0, ip + 12, 8) : ns_csum_add(0, ip + 8, 32);
    return sum + proto + (l4len >> 16) + (l4len & 0xffff);
}

/* Writes the L4 checksum of the segment l4[0, n) (the SCTP CRC32c little-endian). */
static void l4_csum(uint8_t *ip, int v4, uint8_t proto, uint8_t *l4, uint32_t n)
{
    uint32_t at = proto == NS_PROTO_TCP ? 16 : proto == NS_PROTO_UDP ? 6 : 2;
    if (proto == NS_PROTO_SCTP) {
        if (n < 12)
            return;
        memset(l4 + 8, 0, 4);
        uint32_t c = fz_crc32c(l4, n);
        for (int i = 0; i < 4; i++)
            l4[8 + i] = (uint8_t)(c >> (8 * i));
        return;
    }
    if (n < at + 2)
        return;
    l4[at] = l4[at + 1] = 0;
    uint32_t sum = proto == NS_PROTO_ICMP ? 0 : pseudo(ip, v4, proto, n);
    uint16_t c = ns_csum_fold(ns_csum_add(sum, l4, n));
    if (proto == NS_PROTO_UDP && c == 0)
        c = 0xffff;
    w16(l4 + at, c);
}

int fz_l4_csum_ok(const uint8_t *frame, uint32_t len, const struct ns_pkt *pkt)
{
    if (pkt->frag != NS_FRAG_NONE || !pkt->l4 || !pkt->family)
        return -1;
    const uint8_t *ip = frame + pkt->l3;
    const int v4 = pkt->family == 4;
    uint32_t end = v4 ? pkt->l3 + rd16(ip + 2) : pkt->l3 + 40u + rd16(ip + 4);
    if (end > len || end < pkt->l4)
        return -1;
    const uint8_t *l4 = frame + pkt->l4;
    uint32_t n = end - pkt->l4;
    switch (pkt->proto) {
    case NS_PROTO_SCTP: {
        if (n < 12)
            return -1;
        uint8_t *copy = malloc(n);
        memcpy(copy, l4, n);
        memset(copy + 8, 0, 4);
        uint32_t c = fz_crc32c(copy, n);
        free(copy);
        return l4[8] == (uint8_t)c && l4[9] == (uint8_t)(c >> 8) && l4[10] == (uint8_t)(c >> 16) &&
               l4[11] == (uint8_t)(c >> 24);
    }
    case NS_PROTO_UDP:
        if (n < 8 || (v4 && rd16(l4 + 6) == 0))
            return -1;
        /* fall through */
    case NS_PROTO_TCP:
    case NS_PROTO_ICMPV6:
        if (n < 8)
            return -1;
        return ns_csum_fold(ns_csum_add(pseudo(ip, v4, pkt->proto, n), l4, n)) == 0;
    case NS_PROTO_ICMP:
        return n >= 8 && ns_csum_fold(ns_csum_add(0, l4, n)) == 0;
    default:
        return -1;
    }
}

void fz_fix_l4(uint8_t *frame, uint32_t len, const struct ns_pkt *pkt)
{
    const uint8_t pr = pkt->proto;
    if (pkt->frag != NS_FRAG_NONE || !pkt->l4 || !pkt->family || (pr != NS_PROTO_TCP && pr != NS_PROTO_UDP &&
        pr != NS_PROTO_SCTP && pr != NS_PROTO_ICMP && pr != NS_PROTO_ICMPV6))
        return;
    uint8_t *ip = frame + pkt->l3;
    const int v4 = pkt->family == 4;
    uint32_t end = v4 ? pkt->l3 + rd16(ip + 2) : pkt->l3 + 40u + rd16(ip + 4);
    if (end <= len && end >= pkt->l4)
        l4_csum(ip, v4, pr, frame + pkt->l4, end - pkt->l4);
}

/* The L4 header and payload at l4; its length. */
static uint32_t build_l4(uint8_t *l4, uint32_t cap, const struct fz_pkt *p, uint32_t *s)
{
    uint32_t n, pay = p->payload;
    switch (p->proto) {
    case NS_PROTO_TCP: {
        uint32_t doff = p->tcp_doff >= 5 && p->tcp_doff <= 15 ? p->tcp_doff : 5;
        n = doff * 4 + pay;
        if (n > cap)
            return 0;
        w16(l4, p->sport), w16(l4 + 2, p->dport), w32(l4 + 4, mix(s)), w32(l4 + 8, mix(s));
        l4[12] = (uint8_t)(doff << 4);
        l4[13] = p->tcp_flags;
        w16(l4 + 14, 65535), w16(l4 + 16, 0), w16(l4 + 18, 0);
        for (uint32_t i = 20; i < doff * 4; i++)
            l4[i] = i == 20 && doff > 5 ? 2 : i == 21 ? 4 : 1;   /* an MSS option, then NOPs */
        if (p->len_mode == FZ_LEN_BAD_L4)
            l4[12] = (uint8_t)((mix(s) & 1 ? 4 : 15) << 4);
        break;
    }
    case NS_PROTO_UDP:
        n = 8 + pay;
        if (n > cap)
            return 0;
        w16(l4, p->sport), w16(l4 + 2, p->dport), w16(l4 + 6, 0);
        w16(l4 + 4, p->len_mode == FZ_LEN_BAD_L4 ? (mix(s) & 1 ? 7 : n + 1 + (mix(s) & 63)) : n);
        break;
    case NS_PROTO_SCTP:
        n = 16 + ((pay + 3) & ~3u);
        if (n > cap)
            return 0;
        w16(l4, p->sport), w16(l4 + 2, p->dport), w32(l4 + 4, p->sctp_chunk == NS_SCTP_INIT ? 0 : mix(s));
        l4[12] = p->sctp_chunk, l4[13] = 0;
        w16(l4 + 14, 4 + pay);
        break;
    case NS_PROTO_ICMP:
    case NS_PROTO_ICMPV6:
        n = 8 + (p->quote ? p->quote_len : pay);
        if (n > cap)
            return 0;
        l4[0] = p->icmp_type, l4[1] = p->icmp_code, w16(l4 + 2, 0);
        w16(l4 + 4, p->sport), w16(l4 + 6, mix(s) & 0xffff);   /* echo: identifier, sequence */
        if (p->quote) {
            w32(l4 + 4, p->icmp_type == 2 && p->proto == NS_PROTO_ICMPV6 ? 1280 : 0);
            memcpy(l4 + 8, p->quote, p->quote_len);
            pay = 0;
        }
        break;
    default:
        n = pay;
        if (n > cap)
            return 0;
        break;
    }
    for (uint32_t i = n - pay; i < n; i++)
        l4[i] = (uint8_t)(i * 7 + 1);
    return n;
}

/* An IPv6 extension header (8 or 16 bytes) of type t before nh at e; its length. */
static uint32_t build_ext(uint8_t *e, uint8_t t, uint8_t nh, const struct fz_pkt *p, uint32_t *s)
{
    if (t == 44) {                                   /* Fragment */
        uint16_t fo = p->frag == 2 ? (uint16_t)((p->frag_off ? p->frag_off : 1) << 3) | (mix(s) & 1)
                    : p->frag == 1 ? 1 : 0;
        e[0] = nh, e[1] = 0, w16(e + 2, fo), w32(e + 4, p->frag_id);
        return 8;
    }
    uint32_t len = mix(s) & 1 ? 16 : 8;
    memset(e, 0, len);
    e[0] = nh, e[1] = (uint8_t)(len / 8 - 1);
    if (t == 43) {                                   /* Routing: type 4, no segments left */
        e[2] = 4;
    } else {                                         /* Hop-by-Hop, Destination: PadN */
        e[2] = 1, e[3] = (uint8_t)(len - 4);
    }
    return len;
}

uint32_t fz_build_ip(uint8_t *out, uint32_t cap, const struct fz_pkt *p, uint32_t seed)
{
    uint32_t s = seed | 1;
    const int v4 = p->family == 4;
    uint32_t hl;
    if (v4) {
        hl = 20 + 4u * (p->v4_opt_words > 10 ? 10 : p->v4_opt_words);
        if (hl > cap)
            return 0;
        out[0] = (uint8_t)(0x40 | hl / 4), out[1] = 0;
        w16(out + 4, p->frag_id & 0xffff);
        uint16_t fo = p->frag == 1 ? 0x2000 : p->frag == 2 ? (p->frag_off ? p->frag_off : 1) & 0x1fff
                    : 0x4000;                       /* DF on whole packets */
        if (p->frag == 2 && (mix(&s) & 1))
            fo |= 0x2000;
        w16(out + 6, fo);
        out[8] = 64, out[9] = p->proto;
        memcpy(out + 12, p->src + 12, 4);
        memcpy(out + 16, p->dst + 12, 4);
        for (uint32_t i = 20; i < hl; i++)           /* router alert, then NOPs, EOL */
            out[i] = i == 20 && hl > 24 ? 148 : i == 21 && hl > 24 ? 4 : i == 22 || i == 23 ? 0
                   : i == hl - 1 ? 0 : 1;
    } else {
        if (cap < 40)
            return 0;
        out[0] = 0x60, out[1] = 0, out[2] = 0, out[3] = 0;
        out[7] = 64;
        memcpy(out + 8, p->src, 16);
        memcpy(out + 24, p->dst, 16);
        uint8_t chain[8];
        uint32_t n = p->n_ext > 6 ? 6 : p->n_ext, has_frag = 0;
        for (uint32_t i = 0; i < n; i++)
            has_frag |= (chain[i] = p->ext[i]) == 44;
        if (p->frag && !has_frag)
            chain[n++] = 44;
        hl = 40;
        uint8_t *nh = out + 6;
        for (uint32_t i = 0; i < n; i++) {
            if (hl + 16 > cap)
                return 0;
            *nh = chain[i];
            nh = out + hl;
            hl += build_ext(out + hl, chain[i], 0, p, &s);
        }
        *nh = p->proto;
    }
    uint32_t l4n = build_l4(out + hl, cap - hl, p, &s);
    if (!l4n && (p->payload || p->proto == NS_PROTO_TCP || p->proto == NS_PROTO_UDP))
        return 0;
    uint32_t tot = hl + l4n;
    if (tot > 65535 + (v4 ? 0u : 40u))
        return 0;
    if (p->frag != 2)
        l4_csum(out, v4, p->proto, out + hl, l4n);
    if (p->bad_csum) {
        uint32_t at = p->proto == NS_PROTO_TCP ? 16 : p->proto == NS_PROTO_UDP ? 6
                    : p->proto == NS_PROTO_SCTP ? 8 : 2;
        if (l4n > at)
            out[hl + at] ^= 0x5a;
    }
    uint32_t said = tot + (p->len_mode == FZ_LEN_LONG_IP ? 1 + (mix(&s) & 255) : 0);
    if (v4) {
        w16(out + 2, said > 65535 ? 65535 : said);
        w16(out + 10, 0);
        w16(out + 10, fz_ip_csum(out, hl));
    } else {
        w16(out + 4, said - 40 > 65535 ? 65535 : said - 40);
    }
    return tot;
}

uint32_t fz_build_frame(uint8_t *out, uint32_t cap, const struct fz_pkt *p, uint32_t seed)
{
    uint32_t s = seed | 1, l2 = p->vlan ? 18 : 14;
    if (cap < l2 + 40)
        return 0;
    static const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
    memcpy(out, macs, 12);
    if (p->vlan)
        w16(out + 12, 0x8100), w16(out + 14, mix(&s) & 0x0fff);
    w16(out + l2 - 2, p->family == 4 ? 0x0800 : 0x86DD);
    uint32_t n = fz_build_ip(out + l2, cap - l2, p, seed);
    if (!n)
        return 0;
    n += l2;
    if (p->len_mode == FZ_LEN_CUT)
        n = l2 + mix(&s) % (n - l2);
    else if (p->len_mode == FZ_LEN_PAD) {
        uint32_t pad = 1 + mix(&s) % 46;
        if (n + pad <= cap) {
            memset(out + n, 0, pad);
            n += pad;
        }
    }
    return n;
}
