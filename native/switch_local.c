/* What the switch answers itself (proxy ARP for the gateway and every address, and
 * neighbour advertisements), and the IP hop it is (TTL / hop limit). */
#include "switch_int.h"

uint32_t sw_l3_offset(const uint8_t *f, uint32_t len)
{
    if (len >= 18 && rd16(f + 12) == 0x8100)
        return 18;
    return 14;
}

static inline uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static inline uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i + 1 < len; i += 2)
        sum += rd16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
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
    uint32_t sum = csum_add(0, o + 8, 32);  /* pseudo-header: src, dst */
    sum += 32 + 58;                          /* upper-layer length, next header */
    sum = csum_add(sum, na, 32);
    uint16_t c = csum_fold(sum);
    na[2] = (uint8_t)(c >> 8);
    na[3] = (uint8_t)c;
    *ignored = 0;
    return 14 + 40 + 32;
}
