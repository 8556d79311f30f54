/* What the switch answers itself (proxy ARP for the gateway and every address,
 * neighbour advertisements, and the rejects of Service ports without a ready
 * backend), and the IP hop it is (TTL / hop limit). */
#include "switch_int.h"
#include "sanity.h"      /* NS_TCP_* flags */
#include "reasons.h"

uint32_t sw_l3_offset(const uint8_t *f, uint32_t len)
{
    if (len >= 18 && rd16(f + 12) == 0x8100)
        return 18;
    return 14;
}

/* Returns 1 when the frame may go on (TTL/hop limit decremented), 0 to drop. */
int sw_decrement_ttl(uint8_t *f, uint32_t len, uint8_t family)
{
    uint32_t l3 = sw_l3_offset(f, len);
    if (family == 4) {
        uint8_t *ip = f + l3;
        if (ip[8] <= 1)
            return 0;
        ip[8]--;
        /* RFC 1624 incremental update, as Linux ip_decrease_ttl: the TTL is the
         * high byte of its 16-bit word, so the sum drops by 0x0100. */
        uint32_t check = rd16(ip + 10) + 0x0100;
        check += check >= 0xFFFF;
        ip[10] = (uint8_t)(check >> 8);
        ip[11] = (uint8_t)check;
        return 1;
    }
    if (family == 6) {
        uint8_t *ip = f + l3;
        if (ip[7] <= 1)
            return 0;
        ip[7]--;
        return 1;
    }
    return 1;
}

uint16_t sw_arp_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                          int *ignored)
{
    uint32_t l3 = sw_l3_offset(f, len);
    const uint8_t *a = f + l3;
    *ignored = 1;
    if (len < l3 + 28 || rd16(a) != 1 || rd16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4)
        return 0;
    if (rd16(a + 6) != 1)
        return 0;                      /* only requests */
    const uint8_t *sha = a + 8, *spa = a + 14, *tpa = a + 24;
    if (!memcmp(spa, "\0\0\0\0", 4) || !memcmp(spa, tpa, 4))
        return 0;                      /* probe or gratuitous: the address is the pod's own */
    if (sha[0] & 1)
        return 0;
    memcpy(pt->pod_mac, sha, 6);       /* learn the pod's MAC from its request */
    pt->pod_mac_known = 1;
    memcpy(out, sha, 6);
    memcpy(out + 6, pt->gw_mac, 6);
    out[12] = 0x08; out[13] = 0x06;
    uint8_t *r = out + 14;
    r[0] = 0; r[1] = 1; r[2] = 0x08; r[3] = 0; r[4] = 6; r[5] = 4; r[6] = 0; r[7] = 2;
    memcpy(r + 8, pt->gw_mac, 6);
    memcpy(r + 14, tpa, 4);
    memcpy(r + 18, sha, 6);
    memcpy(r + 24, spa, 4);
    memset(out + 42, 0, 18);           /* pad to the 60-byte minimum */
    *ignored = 0;
    return 60;
}

uint16_t sw_nd_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                         int *ignored)
{
    static const uint8_t unspec[16] = {0};
    static const uint8_t gw6[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint32_t l3 = sw_l3_offset(f, len);
    const uint8_t *ip = f + l3;
    *ignored = 1;
    if (len < l3 + 40 + 24 || ip[6] != 58)
        return 0;
    const uint8_t *icmp = ip + 40, *src = ip + 8, *target = icmp + 8;
    if (icmp[0] != 135)
        return 0;                      /* only neighbour solicitations */
    if (!memcmp(src, unspec, 16) || !memcmp(src, target, 16))
        return 0;                      /* DAD, or the pod's own address */
    if (f[6] & 1)
        return 0;
    memcpy(pt->pod_mac, f + 6, 6);
    pt->pod_mac_known = 1;
    memcpy(out, f + 6, 6);
    memcpy(out + 6, pt->gw_mac, 6);
    out[12] = 0x86; out[13] = 0xdd;
    uint8_t *o = out + 14;
    o[0] = 0x60; o[1] = 0; o[2] = 0; o[3] = 0;
    o[4] = 0; o[5] = 32;               /* payload: NA 24 + option 8 */
    o[6] = 58; o[7] = 255;
    memcpy(o + 8, target, 16);
    memcpy(o + 24, src, 16);
    uint8_t *na = o + 40;
    na[0] = 136; na[1] = 0; na[2] = 0; na[3] = 0;
    /* Router (the gateway only), Solicited, Override */
    na[4] = (uint8_t)(0x60 | (!memcmp(target, gw6, 16) ? 0x80 : 0));
    na[5] = na[6] = na[7] = 0;
    memcpy(na + 8, target, 16);
    na[24] = 2; na[25] = 1;            /* target link-layer address */
    memcpy(na + 26, pt->gw_mac, 6);
    uint32_t sum = ns_csum_add(0, o + 8, 32);  /* pseudo-header: src, dst */
    sum += 32 + 58;                          /* upper-layer length, next header */
    sum = ns_csum_add(sum, na, 32);
    uint16_t c = ns_csum_fold(sum);
    na[2] = (uint8_t)(c >> 8);
    na[3] = (uint8_t)c;
    *ignored = 0;
    return 14 + 40 + 32;
}

/* kube-proxy's REJECT of a new connection to a Service port without a ready backend:
 * a TCP segment is answered with a RST from the VIP (RFC 9293 3.10.7.1: seq = its
 * ACK, or ack = its seq + length), anything else with an ICMP / ICMPv6 port
 * unreachable quoting as much of it as fits. The frame is built in `out` (at most
 * SW_REPLY_MAX bytes); returns its length, 0 when there is nothing to answer. */
uint16_t sw_reject(struct sw_port *pt, const uint8_t *f, uint32_t len, const struct ns_result *r,
                   uint8_t *out)
{
    uint32_t l3 = sw_l3_offset(f, len);
    const uint8_t *ip = f + l3;
    uint32_t hl, iplen;
    if (r->family == 4 && len >= l3 + 20) {
        hl = (ip[0] & 0x0F) * 4u;
        iplen = rd16(ip + 2);
    } else if (r->family == 6 && len >= l3 + 40) {
        hl = 40;
        iplen = 40u + rd16(ip + 4);
        if (r->proto == NS_PROTO_TCP && ip[6] != NS_PROTO_TCP)
            return 0;                   /* extension headers before TCP: no RST built here */
    } else {
        return 0;
    }
    if (iplen > len - l3)
        iplen = len - l3;
    const uint8_t *src = r->src + (r->family == 4 ? 12 : 0), *dst = r->dst + (r->family == 4 ? 12 : 0);
    memcpy(out, f + 6, 6);
    memcpy(out + 6, pt->gw_mac, 6);
    out[12] = r->family == 4 ? 0x08 : 0x86;
    out[13] = r->family == 4 ? 0x00 : 0xdd;
    uint8_t *o = out + 14;
    uint32_t oh = r->family == 4 ? 20 : 40;
    uint8_t *l4 = o + oh;
    uint32_t l4len;
    uint8_t proto;
    if (r->proto == NS_PROTO_TCP) {
        const uint8_t *t = ip + hl;
        if (hl + 20 > iplen || (t[13] & NS_TCP_RST))
            return 0;                   /* never answer a RST */
        uint32_t seglen = iplen - hl - (t[12] >> 4) * 4u + !!(t[13] & NS_TCP_SYN) + !!(t[13] & NS_TCP_FIN);
        memset(l4, 0, 20);
        memcpy(l4, t + 2, 2);           /* ports swapped */
        memcpy(l4 + 2, t, 2);
        if (t[13] & NS_TCP_ACK) {
            memcpy(l4 + 4, t + 8, 4);   /* seq = its ack */
            l4[13] = NS_TCP_RST;
        } else {
            uint32_t ack = rd32(t + 4) + seglen;
            l4[8] = (uint8_t)(ack >> 24); l4[9] = (uint8_t)(ack >> 16);
            l4[10] = (uint8_t)(ack >> 8); l4[11] = (uint8_t)ack;
            l4[13] = NS_TCP_RST | NS_TCP_ACK;
        }
        l4[12] = 5 << 4;
        l4len = 20;
        proto = NS_PROTO_TCP;
    } else {
        uint32_t quote = iplen;
        if (14 + oh + 8 + quote > SW_REPLY_MAX)
            quote = SW_REPLY_MAX - 14 - oh - 8;
        memset(l4, 0, 8);
        l4[0] = r->family == 4 ? 3 : 1;   /* destination unreachable */
        l4[1] = r->family == 4 ? 3 : 4;   /* port unreachable */
        memcpy(l4 + 8, ip, quote);
        l4len = 8 + quote;
        proto = r->family == 4 ? NS_PROTO_ICMP : NS_PROTO_ICMPV6;
    }
    uint32_t sum;
    if (r->family == 4) {
        memset(o, 0, 20);
        o[0] = 0x45;
        o[2] = (uint8_t)((20 + l4len) >> 8); o[3] = (uint8_t)(20 + l4len);
        o[6] = 0x40;                    /* DF */
        o[8] = 64;
        o[9] = proto;
        memcpy(o + 12, dst, 4);         /* from the VIP, to the client */
        memcpy(o + 16, src, 4);
        uint16_t c = ns_csum_fold(ns_csum_add(0, o, 20));
        o[10] = (uint8_t)(c >> 8); o[11] = (uint8_t)c;
        sum = proto == NS_PROTO_TCP ? ns_csum_add(0, o + 12, 8) + proto + l4len : 0;   /* ICMP: no pseudo-header */
    } else {
        memset(o, 0, 40);
        o[0] = 0x60;
        o[4] = (uint8_t)(l4len >> 8); o[5] = (uint8_t)l4len;
        o[6] = proto;
        o[7] = 64;
        memcpy(o + 8, dst, 16);
        memcpy(o + 24, src, 16);
        sum = ns_csum_add(0, o + 8, 32) + proto + l4len;
    }
    sum = ns_csum_add(sum, l4, l4len);
    uint16_t c = ns_csum_fold(sum);
    uint8_t *cs = proto == NS_PROTO_TCP ? l4 + 16 : l4 + 2;
    cs[0] = (uint8_t)(c >> 8);
    cs[1] = (uint8_t)c;
    return (uint16_t)(14 + oh + l4len);
}
