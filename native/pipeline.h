/* Pipeline driver: owns the connection and fragment tables, the counters and
 * the current table set; chains the stages over a batch (one call from
 * Python per batch). Order of checks: docs/pipeline.md. */
#ifndef NS_PIPELINE_H
#define NS_PIPELINE_H

#include "nsint.h"
#include "reasons.h"
#include "conntrack.h"
#include "frag.h"
#include "tables.h"

#define NS_DEF_CONNECTIONS 1048576u
#define NS_DEF_FRAGMENTS 4096u
#define NS_DEF_RECLAIM 64u

struct ns_pipeline {
    struct ns_ct_limits lim;
    struct ns_tables *tables;    /* NULL: empty tables */
    uint64_t last_now;           /* now of the latest batch (recheck skips expired) */
    struct ct_table ct;
    struct frag_table frag;
    uint64_t counter[NS_R_COUNT];
};

#endif
