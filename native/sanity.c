/* Sanity filter (docs/pipeline.md "1. Sanity filter"), after Click's
 * CheckIPHeader: every failed check names its reason. */
#include "sanity.h"
#include "reasons.h"

#define ETH_ARP 0x0806
#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD
#define ETH_VLAN 0x8100

#define IP_HOPOPT 0
#define IP_ICMP 1
#define IP_TCP 6
#define IP_UDP 17
#define IP_ROUTING 43
#define IP_FRAGMENT 44
#define IP_ICMPV6 58
#define IP_DSTOPTS 60
#define IP_SCTP 132

#define V6_MAX_EXT 8

static void map_v4(uint8_t *out16, const uint8_t *v4)
{
    memset(out16, 0, 10);
    out16[10] = 0xff;
    out16[11] = 0xff;
    memcpy(out16 + 12, v4, 4);
}

static int ipv4_checksum_ok(const uint8_t *h, uint32_t hlen)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; i < hlen; i += 2)
        sum += rd16(h + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum == 0xffff;
}

/* ---- address classes (on the family's own address) ---- */
static int v4_bad_src(const uint8_t *a)
{
    if ((a[0] & 0xf0) == 0xe0) return 1;                       /* multicast */
    if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255) return 1;
    if (!a[0] && !a[1] && !a[2] && !a[3]) return 1;            /* unspecified */
    if (a[0] == 127) return 1;                                  /* loopback */
    return 0;
}

static int v4_bad_dst(const uint8_t *a)
{
    return v4_bad_src(a) || (a[0] == 169 && a[1] == 254);
}

static int v6_is_unspec(const uint8_t *a)
{
    static const uint8_t z[16];
    return memcmp(a, z, 16) == 0;
}

static int v6_is_loopback(const uint8_t *a)
{
    static const uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(a, lo, 16) == 0;
}

static int v6_bad_src(const uint8_t *a)
{
    return a[0] == 0xff || v6_is_unspec(a) || v6_is_loopback(a);
}

static int v6_bad_dst(const uint8_t *a)
{
    return v6_bad_src(a) || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* ICMP error: the quoted IP header plus 8 bytes of its L4 header. */
static int parse_inner(const uint8_t *q, uint32_t qlen, int family, struct ns_pkt *pkt)
{
    uint32_t l4;
    if (family == 4) {
        if (qlen < 20)
            return NS_R_TRUNCATED_L4;
        if ((q[0] >> 4) != 4 || (q[0] & 0x0f) < 5)
            return NS_R_BAD_L4_HEADER;
        l4 = (uint32_t)(q[0] & 0x0f) * 4;
        if (qlen < l4 + 8)
            return NS_R_TRUNCATED_L4;
        pkt->iproto = q[9];
        map_v4(pkt->isrc, q + 12);
        map_v4(pkt->idst, q + 16);
    } else {
        if (qlen < 48)
            return (qlen < 40 || (q[0] >> 4) == 6) ? NS_R_TRUNCATED_L4 : NS_R_BAD_L4_HEADER;
        if ((q[0] >> 4) != 6)
            return NS_R_BAD_L4_HEADER;
        l4 = 40;
        pkt->iproto = q[6];
        memcpy(pkt->isrc, q + 8, 16);
        memcpy(pkt->idst, q + 24, 16);
    }
    const uint8_t *t = q + l4;
    switch (pkt->iproto) {
    case IP_TCP:
    case IP_UDP:
    case IP_SCTP:
        pkt->isport = rd16(t);
        pkt->idport = rd16(t + 2);
        break;
    case IP_ICMP:
    case IP_ICMPV6:
        if ((pkt->iproto == IP_ICMP && family == 4 && (t[0] == 8 || t[0] == 0)) ||
            (pkt->iproto == IP_ICMPV6 && family == 6 && (t[0] == 128 || t[0] == 129))) {
            pkt->isport = pkt->idport = rd16(t + 4);
            pkt->iecho = (t[0] == 0 || t[0] == 129);
        } else {
            /* An error about an error (or any non-echo ICMP) relates to no connection,
             * as in Linux, where only queries have an inverse tuple. No connection
             * has protocol 0, so the lookup misses. */
            pkt->iproto = 0;
        }
        break;
    default:
        break;
    }
    return NS_R_CONTINUE;
}

static int parse_icmp(const uint8_t *l4, uint32_t l4len, int family, struct ns_pkt *pkt)
{
    if (l4len < 8)
        return NS_R_TRUNCATED_L4;
    uint8_t type = l4[0];
    int kind;
    if (family == 4) {
        if (type == 8) kind = NS_ICMP_ECHO_REQUEST;
        else if (type == 0) kind = NS_ICMP_ECHO_REPLY;
        else if (type == 3 || type == 4 || type == 5 || type == 11 || type == 12)
            kind = NS_ICMP_ERROR;
        else kind = NS_ICMP_OTHER;
    } else {
        if (type == 128) kind = NS_ICMP_ECHO_REQUEST;
        else if (type == 129) kind = NS_ICMP_ECHO_REPLY;
        else if (type >= 1 && type <= 4) kind = NS_ICMP_ERROR;
        /* ND (133-137) and MLD (130-132, 143): link-local control the switch, the
         * only router, handles itself (answers neighbour solicitations, ignores
         * the rest) rather than drops as multicast-destined */
        else if ((type >= 133 && type <= 137) || (type >= 130 && type <= 132) || type == 143)
            kind = NS_ICMP_ND;
        else kind = NS_ICMP_OTHER;
    }
    pkt->icmp_kind = (uint8_t)kind;
    if (kind == NS_ICMP_ECHO_REQUEST || kind == NS_ICMP_ECHO_REPLY) {
        pkt->sport = pkt->dport = rd16(l4 + 4);
        pkt->echo = kind == NS_ICMP_ECHO_REPLY;
    }
    else if (kind == NS_ICMP_ERROR)
        return parse_inner(l4 + 8, l4len - 8, family, pkt);
    return NS_R_CONTINUE;
}

static int parse_l4(const uint8_t *l4, uint32_t l4len, int family, struct ns_pkt *pkt)
{
    switch (pkt->proto) {
    case IP_TCP: {
        if (l4len < 20)
            return NS_R_TRUNCATED_L4;
        uint32_t doff = (uint32_t)(l4[12] >> 4) * 4;
        if (doff < 20 || doff > l4len)
            return NS_R_BAD_L4_HEADER;
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        pkt->tcp_flags = l4[13];
        return NS_R_CONTINUE;
    }
    case IP_UDP: {
        if (l4len < 8)
            return NS_R_TRUNCATED_L4;
        uint32_t ulen = rd16(l4 + 4);
        /* A first fragment carries only part of the datagram its length counts. */
        if (ulen < 8 || (ulen > l4len && pkt->frag != NS_FRAG_FIRST))
            return NS_R_BAD_L4_HEADER;
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        return NS_R_CONTINUE;
    }
    case IP_SCTP:
        if (l4len < 16)
            return NS_R_TRUNCATED_L4;
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        pkt->sctp_chunk = l4[12];
        return NS_R_CONTINUE;
    case IP_ICMP:
        if (family != 4)
            return NS_R_UNSUPPORTED_PROTOCOL;
        return parse_icmp(l4, l4len, family, pkt);
    case IP_ICMPV6:
        if (family != 6)
            return NS_R_UNSUPPORTED_PROTOCOL;
        return parse_icmp(l4, l4len, family, pkt);
    default:
        return NS_R_UNSUPPORTED_PROTOCOL;
    }
}

static int parse_ipv4(const uint8_t *ip, uint32_t iplen, struct ns_pkt *pkt,
                      const uint8_t **l4, uint32_t *l4len)
{
    if (iplen < 20)
        return NS_R_TRUNCATED_IP;
    if ((ip[0] >> 4) != 4)
        return NS_R_BAD_IP_VERSION;
    pkt->family = 4;
    pkt->proto = ip[9];
    map_v4(pkt->src, ip + 12);
    map_v4(pkt->dst, ip + 16);
    uint32_t hlen = (uint32_t)(ip[0] & 0x0f) * 4;
    if (hlen < 20 || hlen > iplen)
        return NS_R_BAD_IP_HEADER_LENGTH;
    uint32_t tot = rd16(ip + 2);
    if (tot < hlen || tot > iplen)
        return NS_R_BAD_IP_TOTAL_LENGTH;
    if (!ipv4_checksum_ok(ip, hlen))
        return NS_R_BAD_IP_CHECKSUM;
    uint16_t fo = rd16(ip + 6);
    if (fo & 0x1fff)
        pkt->frag = NS_FRAG_LATER;
    else if (fo & 0x2000)
        pkt->frag = NS_FRAG_FIRST;
    pkt->frag_id = rd16(ip + 4);
    pkt->frag_proto = pkt->proto;
    *l4 = ip + hlen;
    *l4len = tot - hlen;
    return NS_R_CONTINUE;
}

static int parse_ipv6(const uint8_t *ip, uint32_t iplen, struct ns_pkt *pkt,
                      const uint8_t **l4, uint32_t *l4len)
{
    if (iplen < 40)
        return NS_R_TRUNCATED_IP;
    if ((ip[0] >> 4) != 6)
        return NS_R_BAD_IP_VERSION;
    pkt->family = 6;
    memcpy(pkt->src, ip + 8, 16);
    memcpy(pkt->dst, ip + 24, 16);
    uint8_t nh = ip[6];
    pkt->proto = nh;
    uint32_t end = 40 + (uint32_t)rd16(ip + 4);
    if (end > iplen)
        return NS_R_BAD_IP_TOTAL_LENGTH;
    uint32_t off = 40;
    int n = 0;
    while (nh == IP_HOPOPT || nh == IP_ROUTING || nh == IP_DSTOPTS || nh == IP_FRAGMENT) {
        if (++n > V6_MAX_EXT)
            return NS_R_BAD_IPV6_EXTENSION;
        uint32_t hl;
        if (nh == IP_FRAGMENT) {
            hl = 8;
            if (off + hl > end)
                return NS_R_BAD_IPV6_EXTENSION;
            uint16_t fo = rd16(ip + off + 2);
            if (fo & 0xfff8)
                pkt->frag = NS_FRAG_LATER;
            else if (fo & 1)
                pkt->frag = NS_FRAG_FIRST;
            else
                pkt->frag = NS_FRAG_NONE;   /* atomic fragment: a whole packet */
            pkt->frag_id = rd32(ip + off + 4);
            pkt->frag_proto = ip[off];
            if (pkt->frag == NS_FRAG_LATER) {
                /* the rest is fragment data, not headers */
                pkt->proto = ip[off];
                off += hl;
                break;
            }
        } else {
            if (off + 2 > end)
                return NS_R_BAD_IPV6_EXTENSION;
            hl = ((uint32_t)ip[off + 1] + 1) * 8;
            if (off + hl > end)
                return NS_R_BAD_IPV6_EXTENSION;
        }
        nh = ip[off];
        pkt->proto = nh;
        off += hl;
    }
    *l4 = ip + off;
    *l4len = end - off;
    return NS_R_CONTINUE;
}

int sanity_parse(const uint8_t *frame, uint32_t len, struct ns_pkt *pkt)
{
    memset(pkt, 0, sizeof(*pkt));
    /* 1. Ethernet, at most one 802.1Q tag */
    if (len < 14)
        return NS_R_TRUNCATED_ETHERNET;
    uint32_t l3 = 14;
    uint16_t et = rd16(frame + 12);
    if (et == ETH_VLAN) {
        if (len < 18)
            return NS_R_TRUNCATED_ETHERNET;
        et = rd16(frame + 16);
        l3 = 18;
    }
    if (et == ETH_ARP)
        return NS_R_ARP;
    if (et != ETH_IPV4 && et != ETH_IPV6)
        return NS_R_UNSUPPORTED_ETHERTYPE;

    /* 2. IP header */
    const uint8_t *l4 = NULL;
    uint32_t l4len = 0;
    int r = (et == ETH_IPV4) ? parse_ipv4(frame + l3, len - l3, pkt, &l4, &l4len)
                             : parse_ipv6(frame + l3, len - l3, pkt, &l4, &l4len);
    if (r != NS_R_CONTINUE)
        return r;

    /* 3. L4 (a non-first fragment has none) */
    pkt->l3 = (uint16_t)l3;
    if (pkt->frag != NS_FRAG_LATER) {
        pkt->l4 = (uint32_t)(l4 - frame);
        r = parse_l4(l4, l4len, pkt->family, pkt);
        if (r != NS_R_CONTINUE)
            return r;
    }

    /* 4. addresses; neighbour discovery goes local before the dst check */
    const int v4 = pkt->family == 4;
    if (v4 ? v4_bad_src(pkt->src + 12) : v6_bad_src(pkt->src))
        return NS_R_BAD_SOURCE_ADDRESS;
    /* IPv4 is stored IPv4-mapped, so an IPv6 packet from or to ::ffff:a.b.c.d would be
     * taken for the IPv4 address (RFC 4291 2.5.5.2: such addresses never go on the
     * wire); so would an ICMPv6 error quoting one. */
    if (!v4 && (addr_is_v4mapped(pkt->src) || addr_is_v4mapped(pkt->dst) ||
                (pkt->icmp_kind == NS_ICMP_ERROR &&
                 (addr_is_v4mapped(pkt->isrc) || addr_is_v4mapped(pkt->idst)))))
        return NS_R_V4_MAPPED_ADDRESS;
    if (pkt->icmp_kind == NS_ICMP_ND)
        return NS_R_NEIGHBOR_DISCOVERY;
    if (v4 ? v4_bad_dst(pkt->dst + 12) : v6_bad_dst(pkt->dst))
        return NS_R_BAD_DESTINATION_ADDRESS;
    return NS_R_CONTINUE;
}

/* The virtio-net header must describe the frame, or the kernel would segment or sum
 * the wrong bytes on the way out (and a rewrite would update the wrong field). */
int sanity_offload(const struct ns_pkt *pkt, const struct ns_offload *ol)
{
    const uint8_t gso = ol->gso_type & (uint8_t)~NS_GSO_ECN;
    if (!(ol->flags & NS_OFFLOAD_NEEDS_CSUM) && ol->gso_type == NS_GSO_NONE)
        return NS_R_CONTINUE;   /* nothing asked (DATA_VALID only says it was checked) */
    if (!(ol->flags & NS_OFFLOAD_NEEDS_CSUM))
        return NS_R_BAD_OFFLOAD;   /* the kernel builds GSO only with a partial checksum */
    const int tcp = pkt->proto == NS_PROTO_TCP, udp = pkt->proto == NS_PROTO_UDP;
    if (pkt->frag != NS_FRAG_NONE || !pkt->l4 || !(tcp || udp) || ol->csum_start != pkt->l4 ||
        ol->csum_offset != (tcp ? 16 : 6))
        return NS_R_BAD_OFFLOAD;
    if (ol->gso_type == NS_GSO_NONE)
        return NS_R_CONTINUE;
    if (ol->gso_size == 0 || ((ol->gso_type & NS_GSO_ECN) && !tcp))
        return NS_R_BAD_OFFLOAD;
    if ((gso == NS_GSO_TCPV4 && tcp && pkt->family == 4) || (gso == NS_GSO_TCPV6 && tcp && pkt->family == 6) ||
        (gso == NS_GSO_UDP_L4 && udp))
        return NS_R_CONTINUE;
    return NS_R_BAD_OFFLOAD;
}
