/* ns_rewrite_frame: writes a result's translation into its frame (see netsem.h).
 * Checksums are updated incrementally (RFC 1624) where the old value is known to be
 * right: the IPv4 header, and the TCP, UDP and ICMPv6 checksums whose pseudo-header
 * covers the addresses; SCTP's CRC32c covers the ports only and is recomputed. */
#include "nsint.h"
#include "reasons.h"
#include "sanity.h"

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), 16-bit words of old -> new. */
static void csum_replace(uint8_t *field, const uint8_t *old, const uint8_t *new, uint32_t len)
{
    uint32_t sum = (uint16_t)~rd16(field);
    for (uint32_t i = 0; i + 1 < len; i += 2) {
        sum += (uint16_t)~rd16(old + i);
        sum += rd16(new + i);
    }
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t c = (uint16_t)~sum;
    field[0] = (uint8_t)(c >> 8);
    field[1] = (uint8_t)c;
}

static uint32_t crc32c(const uint8_t *p, uint32_t n)
{
    static uint32_t tab[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            tab[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < n; i++)
        c = tab[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* A partial checksum field (CHECKSUM_PARTIAL) holds the pseudo-header sum itself,
 * not its complement: complementing around csum_replace updates it the same way
 * (Linux's inet_proto_csum_replace4 with pseudohdr set). */
static void csum_replace_partial(uint8_t *field, const uint8_t *old, const uint8_t *new, uint32_t len)
{
    field[0] = (uint8_t)~field[0];
    field[1] = (uint8_t)~field[1];
    csum_replace(field, old, new, len);
    field[0] = (uint8_t)~field[0];
    field[1] = (uint8_t)~field[1];
}

/* Replaces one address (4 or 16 bytes at a) and/or port (at port, may be NULL),
 * fixing the checksums that cover them. partial: the L4 checksum is partial, so it
 * covers the addresses (its pseudo-header) but not yet the ports. */
static void replace_end(uint8_t *ip, uint8_t *a, const uint8_t *new16, uint8_t *l4,
                        uint8_t *port, uint16_t new_port, const struct ns_pkt *pkt, int partial)
{
    const int v4 = pkt->family == 4;
    const uint32_t alen = v4 ? 4 : 16;
    const uint8_t *na = v4 ? new16 + 12 : new16;
    uint8_t *l4sum = NULL;
    if (l4) {
        if (pkt->proto == NS_PROTO_TCP)
            l4sum = l4 + 16;
        else if (pkt->proto == NS_PROTO_UDP && (!v4 || rd16(l4 + 6) != 0))
            l4sum = l4 + 6;   /* an IPv4 UDP checksum of 0 means none */
        else if (pkt->proto == NS_PROTO_ICMPV6)
            l4sum = l4 + 2;
    }
    if (memcmp(a, na, alen) != 0) {
        if (v4)
            csum_replace(ip + 10, a, na, 4);
        if (l4sum)
            (partial ? csum_replace_partial : csum_replace)(l4sum, a, na, alen);
        memcpy(a, na, alen);
    }
    if (port && rd16(port) != new_port) {
        uint8_t np[2] = {(uint8_t)(new_port >> 8), (uint8_t)new_port};
        if (l4sum && !partial)
            csum_replace(l4sum, port, np, 2);
        memcpy(port, np, 2);
    }
    if (l4sum && !partial && pkt->proto == NS_PROTO_UDP && rd16(l4sum) == 0)
        l4sum[0] = l4sum[1] = 0xff;   /* a computed 0 is sent as all ones */
}

/* An ICMP error's quoted packet, rewritten to match its translated outer header (see
 * NS_REWRITE_SRC in netsem.h): the quote's source follows the new destination, its
 * destination the new source; the quote's own IPv4 header checksum and, where the
 * quote holds it, its L4 checksum are updated; then the error's ICMP checksum is
 * computed again over the whole message. */
static void rewrite_quote(uint8_t *ip, uint8_t *icmp, uint32_t icmp_len, const struct ns_pkt *pkt,
                          const struct ns_result *r)
{
    uint8_t *q = icmp + 8;
    const int v4 = pkt->family == 4;
    const uint32_t qhl = v4 ? (uint32_t)(q[0] & 0x0f) * 4 : 40;
    const uint32_t qlen = icmp_len - 8;
    struct ns_pkt inner;
    memset(&inner, 0, sizeof(inner));
    inner.family = pkt->family;
    inner.proto = pkt->iproto;
    uint8_t *ql4 = q + qhl;
    const uint32_t l4room = qlen - qhl;   /* parse_inner saw at least 8 */
    const int ports = inner.proto == NS_PROTO_TCP || inner.proto == NS_PROTO_UDP ||
                      inner.proto == NS_PROTO_SCTP;
    /* the L4 checksum is fixed only when the quote holds it */
    const uint32_t sum_end = inner.proto == NS_PROTO_TCP ? 18 : inner.proto == NS_PROTO_ICMPV6 ? 4
                           : inner.proto == NS_PROTO_UDP ? 8 : 0;
    uint8_t *l4 = sum_end && l4room >= sum_end ? ql4 : NULL;
    if (r->rewrite & NS_REWRITE_DST)
        replace_end(q, q + (v4 ? 12 : 8), r->dst, l4, ports ? ql4 : NULL, r->dport, &inner, 0);
    if (r->rewrite & NS_REWRITE_SRC)
        replace_end(q, q + (v4 ? 16 : 24), r->src, l4, ports ? ql4 + 2 : NULL, r->sport, &inner, 0);
    icmp[2] = icmp[3] = 0;
    uint32_t sum = ns_csum_add(0, icmp, icmp_len);
    if (!v4) {   /* ICMPv6: the pseudo-header too */
        sum = ns_csum_add(sum, ip + 8, 32);
        sum += icmp_len + NS_PROTO_ICMPV6;
    }
    uint16_t c = ns_csum_fold(sum);
    icmp[2] = (uint8_t)(c >> 8);
    icmp[3] = (uint8_t)c;
}

int ns_rewrite_frame(uint8_t *frame, uint32_t len, const struct ns_result *r)
{
    return ns_rewrite_frame_offload(frame, len, r, 0);
}

int ns_rewrite_frame_offload(uint8_t *frame, uint32_t len, const struct ns_result *r, int partial)
{
    if (!r->rewrite)
        return 0;
    struct ns_pkt pkt;
    int pr = sanity_parse(frame, len, &pkt);
    if (pr != NS_R_CONTINUE || pkt.family != r->family || pkt.proto != r->proto)
        return -1;
    uint8_t *ip = frame + pkt.l3;
    uint8_t *l4 = pkt.l4 ? frame + pkt.l4 : NULL;
    const int ports = l4 && (pkt.proto == NS_PROTO_TCP || pkt.proto == NS_PROTO_UDP ||
                             pkt.proto == NS_PROTO_SCTP);
    uint8_t *src = ip + (pkt.family == 4 ? 12 : 8);
    uint8_t *dst = ip + (pkt.family == 4 ? 16 : 24);
    if (r->rewrite & NS_REWRITE_SRC)
        replace_end(ip, src, r->src, l4, ports ? l4 : NULL, r->sport, &pkt, partial);
    if (r->rewrite & NS_REWRITE_DST)
        replace_end(ip, dst, r->dst, l4, ports ? l4 + 2 : NULL, r->dport, &pkt, partial);
    if (l4 && pkt.icmp_kind == NS_ICMP_ERROR) {
        uint32_t end = pkt.family == 4 ? pkt.l3 + rd16(ip + 2) : pkt.l3 + 40 + rd16(ip + 4);
        rewrite_quote(ip, l4, end - pkt.l4, &pkt, r);
    }
    if (ports && pkt.proto == NS_PROTO_SCTP) {
        uint32_t end = pkt.family == 4 ? pkt.l3 + rd16(ip + 2) : pkt.l3 + 40 + rd16(ip + 4);
        uint32_t n = end - pkt.l4;
        memset(l4 + 8, 0, 4);
        uint32_t c = crc32c(l4, n);
        for (int i = 0; i < 4; i++)   /* CRC32c goes on the wire least significant byte first */
            l4[8 + i] = (uint8_t)(c >> (8 * i));
    }
    return 0;
}
