/* Pipeline driver: owns the connection and fragment tables, the event ring, the
 * counters and the current table set; chains the stages over a batch (one call
 * from Python per batch). Order of the stages: docs/pipeline.md. */
#ifndef NS_PIPELINE_H
#define NS_PIPELINE_H

#include "nsint.h"
#include "reasons.h"
#include "conntrack.h"
#include "events.h"
#include "sanity.h"
#include "frag.h"
#include "tables.h"
#include "service.h"

#define NS_DEF_CONNECTIONS 1048576u
#define NS_DEF_FRAGMENTS 4096u
#define NS_DEF_RECLAIM 64u
#define NS_DEF_AFFINITY 65536u

/* Packets are parsed and their conntrack slots prefetched a chunk at a time, then
 * run one by one in order (the prefetches are hints; results are exactly those of
 * running the packets one at a time). */
#define NS_CHUNK 32
#define NS_AHEAD 6      /* prefetch distance, in packets, while running a chunk */

struct ns_pipeline {
    struct ns_ct_limits lim;
    struct ns_pkt pkt[NS_CHUNK];     /* parsed packets of the current chunk */
    int parsed[NS_CHUNK];            /* sanity_parse result per packet */
    uint32_t hash[NS_CHUNK];         /* conntrack key hash per packet */
    struct ct_key key[NS_CHUNK];     /* conntrack key per packet, built once */
    const struct ns_frontend *fe_hint[NS_CHUNK];  /* prefetched frontend of a likely-new packet */
    struct svc_hashes svc_h[NS_CHUNK];   /* its endpoint and frontend index hashes */
    uint32_t fe_hash[NS_CHUNK];      /* its flow hash, when it has a frontend hint */
    uint8_t likely_new[NS_CHUNK];    /* no entry of its hash at its conntrack home slot */
    struct ns_tables *tables;        /* NULL: empty tables */
    uint32_t generation;             /* table sets swapped in so far */
    uint64_t last_now;               /* now of the latest batch (recheck skips expired) */
    struct ct_table ct;
    struct frag_table frag;
    struct aff_table aff;            /* ClientIP affinity records (service.h) */
    struct ns_events ev;
    uint64_t counter[NS_R_COUNT];
};

/* Shared by pipeline.c (the packet path) and pipeline_state.c (the rest). */
extern const uint8_t ns_reason_verdict_table[NS_R_COUNT];   /* enum ns_verdict per reason */
static inline void ns_make_key(struct ct_key *k, uint16_t zone, const uint8_t *src, const uint8_t *dst,
                     uint16_t sport, uint16_t dport, uint8_t proto, uint8_t echo)
{
    memcpy(k->src, src, 16);
    memcpy(k->dst, dst, 16);
    k->sport = sport;
    k->dport = dport;
    k->zone = zone;
    k->proto = proto;
    k->echo = echo;
}

static inline int ns_can_open(const struct ns_pkt *pkt)
{
    switch (pkt->proto) {
    case NS_PROTO_TCP:
        return (pkt->tcp_flags & NS_TCP_SYN) && !(pkt->tcp_flags & (NS_TCP_ACK | NS_TCP_RST));
    case NS_PROTO_UDP:
        return 1;
    case NS_PROTO_SCTP:
        return pkt->sctp_chunk == NS_SCTP_INIT;
    default:
        return pkt->icmp_kind == NS_ICMP_ECHO_REQUEST;
    }
}

static inline uint8_t ns_open_state(uint8_t proto)
{
    switch (proto) {
    case NS_PROTO_TCP: return CT_TCP_SYN_SENT;
    case NS_PROTO_UDP: return CT_UDP_FIRST;
    case NS_PROTO_SCTP: return CT_SCTP_INIT;
    default: return CT_ICMP;
    }
}

#endif
