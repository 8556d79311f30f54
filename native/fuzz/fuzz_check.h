/* The harness's invariants (fuzz_check.c): what must hold of every result, counter,
 * event and table swap, whatever the frames. A violation prints what broke and
 * aborts, which libFuzzer reports as a crash with the input saved. */
#ifndef NS_FUZZ_CHECK_H
#define NS_FUZZ_CHECK_H

#include "fuzz.h"

struct fz_run {
    struct ns_pipeline *a;     /* runs each batch in one call */
    struct ns_pipeline *b;     /* the twin: the same frames, one per call */
    struct ns_ct_limits lim;
    uint32_t set;              /* fz_sets index the swaps count from */
    struct ns_tables *cur;     /* installed in both (NULL: none) */
    const struct fz_set *cur_set;
    uint32_t generation;       /* swaps so far (the pipeline counts the same) */
    uint64_t last_now;         /* the latest batch's now (recheck events carry it) */
    uint64_t frames;           /* frames run through each pipeline */
    uint64_t counted[NS_R_COUNT];  /* each reason's counter after the latest batch */
};

struct fz_batch {
    const uint8_t *buf;
    const uint32_t *off, *len;
    const uint16_t *port;
    uint32_t n;
    uint64_t now;
    struct ns_result *res, *twin;
};

extern uint64_t fz_reasons[256], fz_rewrites, fz_swaps;

/* Swaps t (or NULL) into both pipelines and checks what the swap reports. */
void fz_check_swap(struct fz_run *run, struct ns_tables *t, int recheck);
/* Runs one batch through both pipelines and checks everything about it. */
void fz_check_batch(struct fz_run *run, const struct fz_batch *b);

/* The rewrite step's invariants (fuzz_rewrite.c) for forwarded result r of frame
 * (parsed as pkt); other is another frame of the input the result is tried on. */
void fz_check_rewrite(const struct ns_result *r, const uint8_t *frame, uint32_t len,
                      const struct ns_pkt *pkt, const uint8_t *other, uint32_t olen);
/* Prints what broke (the result and the frame, when given) and aborts. */
__attribute__((noreturn)) void fz_fail(const char *what, const struct ns_result *r, const uint8_t *frame,
                                       uint32_t len);

#endif
