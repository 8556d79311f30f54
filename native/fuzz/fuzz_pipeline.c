/* libFuzzer harness on the pipeline driver. An input (fuzz.h) picks a table set and
 * the pipeline's capacities, then runs its frames in batches through ns_pipeline_run,
 * with time steps and table swaps between batches, exactly as the driver does
 * (rewriting the frames whose result names a translation with ns_rewrite_frame).
 * Each input gets fresh pipelines, so a crash reproduces from its input alone.
 *
 * Frames lie end to end in one buffer, each ending at an 8-byte boundary followed by
 * a poisoned gap, so AddressSanitizer sees a read one byte past any frame. A twin
 * pipeline runs the same frames one per call: pipeline.h promises batching and its
 * prefetch hints change no result, so any difference is a disagreement. The
 * invariants on every result, counter, event and swap are in fuzz_check.c. */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sanitizer/asan_interface.h>
#include "fuzz_check.h"

#ifndef FZ_TABLES_DIR
#define FZ_TABLES_DIR "build/tables"
#endif
#define GAP 64

static uint64_t frames_total, inputs_total;
static char stats_path[4096];
static time_t stats_at;

/* The frame count reaches the long run's driver (scripts/fuzz-long) through a file
 * per process, rewritten every few seconds and at exit: libFuzzer ends a run on a
 * signal with _Exit, which skips atexit, so the file is what counts. */
static void write_stats(void)
{
    if (!stats_path[0])
        return;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%llu %llu\n", (unsigned long long)frames_total, (unsigned long long)inputs_total);
    fclose(f);
    rename(tmp, stats_path);
}

static void at_exit(void)
{
    write_stats();
    fprintf(stderr, "netsem-fuzz: reasons:");
    for (int i = 0; i < ns_reason_count(); i++)
        if (fz_reasons[i])
            fprintf(stderr, " %s=%llu", ns_reason_name(i), (unsigned long long)fz_reasons[i]);
    fprintf(stderr, "\nnetsem-fuzz: %llu rewrites checked, %llu swaps\n", (unsigned long long)fz_rewrites,
            (unsigned long long)fz_swaps);
    fprintf(stderr, "netsem-fuzz: %llu frames in %llu inputs\n", (unsigned long long)frames_total,
            (unsigned long long)inputs_total);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("NETSEM_FUZZ_TABLES");
    uint32_t n = fz_load_sets(dir && *dir ? dir : FZ_TABLES_DIR);
    if (!n) {
        fprintf(stderr, "netsem-fuzz: no table traces in %s (make builds them)\n", dir ? dir : FZ_TABLES_DIR);
        abort();
    }
    const char *st = getenv("NETSEM_FUZZ_STATS");
    if (st && *st) {
        mkdir(st, 0755);
        snprintf(stats_path, sizeof(stats_path), "%s/stats.%ld", st, (long)getpid());
    }
    fprintf(stderr, "netsem-fuzz: %u table sets\n", n);
    atexit(at_exit);
    return 0;
}

static const uint64_t steps[16] = {
    0, 1, 1000000, NS_SEC, 9 * NS_SEC, 10 * NS_SEC, 29 * NS_SEC, 30 * NS_SEC, 31 * NS_SEC, 119 * NS_SEC,
    121 * NS_SEC, 179 * NS_SEC, 181 * NS_SEC, 86399 * NS_SEC, 86401 * NS_SEC, UINT64_MAX / 2,
};

/* Capacities from two header bytes: small ones, so that full tables (and ports at
 * their connection limit) are met. */
static void limits_of(const uint8_t *h, struct ns_ct_limits *lim)
{
    /* (a fresh pair of pipelines per input: their allocation is much of an input's cost) */
    static const uint32_t conns[4] = {8, 64, 512, 2048}, frags[4] = {2, 16, 256, 1024};
    static const uint32_t reclaim[4] = {1, 8, 64, 0}, events[4] = {0, 16, 1024, 1024};
    static const uint32_t aff[4] = {8, 64, 256, 8};
    memset(lim, 0, sizeof(*lim));
    lim->connections = conns[h[1] & 3];
    lim->fragments = frags[(h[1] >> 2) & 3];
    lim->reclaim_per_batch = reclaim[(h[1] >> 4) & 3];
    lim->events = events[(h[1] >> 6) & 3];
    lim->affinity = aff[h[3] & 3];
    lim->per_port = (h[3] >> 2) & 1 ? 1 + ((h[3] >> 3) & 7) : 0;   /* --max-connections-per-pod */
}

static uint64_t clock_start(uint8_t c)
{
    return c < 200 ? (uint64_t)c * NS_SEC : UINT64_MAX - (uint64_t)(255 - c) * 40 * NS_SEC;
}

static struct fz_rec rec[FZ_MAX_FRAMES];
static uint32_t off[FZ_MAX_FRAMES], len[FZ_MAX_FRAMES];
static uint16_t port[FZ_MAX_FRAMES];
static struct ns_result res[FZ_BATCH], twin[FZ_BATCH];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FZ_HDR)
        return 0;
    uint32_t n = fz_parse(data, size, rec, FZ_MAX_FRAMES);
    size_t total = GAP;
    for (uint32_t i = 0; i < n; i++) {
        len[i] = rec[i].len < FZ_FRAME_MAX ? rec[i].len : FZ_FRAME_MAX;
        total += ((len[i] + 7) & ~7u) + GAP;
    }
    uint8_t *buf = malloc(total);
    __asan_poison_memory_region(buf, total);
    size_t end = GAP;
    for (uint32_t i = 0; i < n; i++) {
        end += (len[i] + 7) & ~7u;
        off[i] = (uint32_t)(end - len[i]);   /* the frame ends where the gap begins */
        __asan_unpoison_memory_region(buf + off[i], len[i]);
        memcpy(buf + off[i], data + rec[i].off, len[i]);
        port[i] = rec[i].port;
        end += GAP;
    }

    struct ns_ct_limits lim;
    limits_of(data, &lim);
    struct fz_run run;
    memset(&run, 0, sizeof(run));
    run.set = data[0] % fz_n_sets;
    run.a = ns_pipeline_new(&lim);
    run.b = ns_pipeline_new(&lim);
    if (!run.a || !run.b)
        abort();
    run.lim = lim;
    fz_check_swap(&run, fz_sets[run.set].t, 0);
    uint64_t now = clock_start(data[2]);
    for (uint32_t i = 0; i < n;) {
        if (rec[i].ctl & FZ_SWAP) {
            run.set = (run.set + 1 + ((rec[i].ctl >> FZ_SWAP_SHIFT) & 7)) % fz_n_sets;
            fz_check_swap(&run, rec[i].ctl & FZ_SWAP_NULL ? NULL : fz_sets[run.set].t,
                          !!(rec[i].ctl & FZ_RECHECK));
        }
        now = ns_sat_add(now, steps[rec[i].tstep & 15] + (uint64_t)(rec[i].tstep >> 4) * 1000);
        uint32_t j = i + 1;
        while (j < n && j - i < FZ_BATCH && !(rec[j].ctl & (FZ_BREAK | FZ_SWAP)))
            j++;
        struct fz_batch b = {buf, off + i, len + i, port + i, j - i, now, res, twin};
        fz_check_batch(&run, &b);
        i = j;
    }
    fz_check_swap(&run, NULL, 0);
    ns_pipeline_free(run.a);
    ns_pipeline_free(run.b);
    __asan_unpoison_memory_region(buf, total);
    free(buf);

    frames_total += n;
    inputs_total++;
    if ((inputs_total & 255) == 0) {
        time_t t = time(NULL);
        if (t - stats_at >= 2) {
            stats_at = t;
            write_stats();
        }
    }
    return 0;
}
