/* Sanity filter: parses one frame (Ethernet, IPv4/IPv6, L4, ICMP error
 * inner header) and applies the address checks, in the order of
 * docs/pipeline.md (steps 1-4). Pure function of the frame bytes. */
#ifndef NS_SANITY_H
#define NS_SANITY_H

#include "nsint.h"

enum ns_frag { NS_FRAG_NONE = 0, NS_FRAG_FIRST = 1, NS_FRAG_LATER = 2 };
enum ns_icmp_kind {
    NS_ICMP_NONE = 0,       /* not ICMP, or a non-first fragment */
    NS_ICMP_ECHO_REQUEST,
    NS_ICMP_ECHO_REPLY,
    NS_ICMP_ERROR,
    NS_ICMP_ND,
    NS_ICMP_OTHER,
};

/* Parsed packet metadata: what the later stages read. */
struct ns_pkt {
    uint8_t src[16];        /* IPv4 stored IPv4-mapped */
    uint8_t dst[16];
    uint8_t isrc[16];       /* ICMP error: the inner (quoted) packet's tuple */
    uint8_t idst[16];
    uint16_t sport, dport;  /* host order; echo: identifier in both */
    uint16_t isport, idport;
    uint32_t frag_id;       /* IPv4 identification or IPv6 fragment id */
    uint8_t family;         /* 0, 4, 6 */
    uint8_t proto;
    uint8_t iproto;
    uint8_t frag;           /* enum ns_frag */
    uint8_t tcp_flags;
    uint8_t sctp_chunk;     /* type of the first SCTP chunk */
    uint8_t icmp_kind;      /* enum ns_icmp_kind */
    uint8_t frag_proto;     /* fragment key protocol: v4 protocol field; v6 the
                               Fragment header's next header */
    uint8_t echo;           /* ICMP echo: 0 request, 1 reply (the conntrack key's echo) */
    uint8_t iecho;          /* the same for an ICMP error's quoted echo */
    uint16_t l3;            /* offset of the IP header in the frame */
    uint32_t l4;            /* offset of the L4 header (0: none, a later fragment) */
};

#define NS_TCP_FIN 0x01
#define NS_TCP_SYN 0x02
#define NS_TCP_RST 0x04
#define NS_TCP_ACK 0x10

#define NS_SCTP_INIT 1
#define NS_SCTP_INIT_ACK 2
#define NS_SCTP_ABORT 6
#define NS_SCTP_SHUTDOWN 7
#define NS_SCTP_SHUTDOWN_ACK 8
#define NS_SCTP_SHUTDOWN_COMPLETE 14

/* Fills *pkt (zeroed first) and returns NS_R_CONTINUE or a reason
 * (a drop, NS_R_ARP or NS_R_NEIGHBOR_DISCOVERY). Fields are filled as far
 * as parsing got: family/src/dst/proto once the fixed IP header is present
 * with the right version, ports once the L4 header is parsed. The result
 * reports them as they are (the oracle does the same). */
int sanity_parse(const uint8_t *frame, uint32_t len, struct ns_pkt *pkt);
/* A parsed packet's offload metadata (see struct ns_offload): NS_R_CONTINUE when it
 * describes the packet (or asks nothing), else NS_R_BAD_OFFLOAD. */
int sanity_offload(const struct ns_pkt *pkt, const struct ns_offload *ol);

#endif
