/* Pipeline driver: owns the connection and fragment tables, the counters and
 * the current table set; chains the stages over a batch (one call from
 * Python per batch). Order of checks: docs/pipeline.md. */
#ifndef NS_PIPELINE_H
#define NS_PIPELINE_H

#include "nsint.h"
#include "reasons.h"
#include "conntrack.h"
#include "sanity.h"
#include "frag.h"
#include "tables.h"

#define NS_DEF_CONNECTIONS 1048576u
#define NS_DEF_FRAGMENTS 4096u
#define NS_DEF_RECLAIM 64u

/* Packets are parsed and their conntrack slots prefetched a chunk at a time, then
 * run one by one in order (the prefetches are hints; results are exactly those of
 * running the packets one at a time). */
#define NS_CHUNK 32

struct ns_pipeline {
    struct ns_ct_limits lim;
    struct ns_pkt pkt[NS_CHUNK];     /* parsed packets of the current chunk */
    int parsed[NS_CHUNK];            /* sanity_parse result per packet */
    uint32_t hash[NS_CHUNK];         /* conntrack key hash per packet */
    struct ct_key key[NS_CHUNK];     /* conntrack key per packet, built once */
    struct ns_tables *tables;    /* NULL: empty tables */
    uint64_t last_now;           /* now of the latest batch (recheck skips expired) */
    struct ct_table ct;
    struct frag_table frag;
    uint64_t counter[NS_R_COUNT];
};

#endif
