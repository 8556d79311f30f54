/* The libFuzzer harness on the C pipeline driver (docs/testing.md, "libFuzzer on the
 * C pipeline"): shared declarations of its four parts.
 *   fuzz_tables.c    table sets replayed from the compiler's traces (gen_tables.py)
 *   fuzz_frames.c    frame builders: Ethernet/VLAN, IPv4/IPv6 (+ extensions,
 *                    fragments), TCP/UDP/SCTP/ICMP(v6), ICMP errors with quotes
 *   fuzz_mutator.c   LLVMFuzzerCustomMutator: edits inputs as records of frames
 *   fuzz_pipeline.c  LLVMFuzzerInitialize/TestOneInput and the invariants
 * The harness links the pipeline's own sources, so it may read internal headers
 * (sanity_parse re-parses rewritten frames). */
#ifndef NS_FUZZ_H
#define NS_FUZZ_H

#include "nsint.h"
#include "reasons.h"
#include "sanity.h"

/* ---- table sets (fuzz_tables.c) ---- */
#define FZ_MAX_SETS 64

struct fz_ep {                 /* an endpoint row, as the compiler installed it */
    uint8_t addr[16];
    uint16_t zone;
    uint16_t port;             /* pods: their switch port */
    uint8_t kind;              /* NS_EP_* */
};

struct fz_fe {                 /* a frontend, with its backends and Maglev slots */
    uint8_t addr[16];
    uint16_t zone, port;
    uint8_t proto, flags;
    uint16_t n, m;
    const uint8_t *be_addrs;   /* 16 n bytes, inside the trace */
    const uint8_t *be_ports;   /* n host-order uint16 (unaligned), inside the trace */
    const uint8_t *slots;      /* m host-order uint16 (unaligned), inside the trace */
};

struct fz_zone {               /* a port whose zone is not the default */
    uint16_t port, zone;
};

struct fz_set {
    struct ns_tables *t;
    uint8_t *trace;            /* the trace file (the arrays above point into it) */
    struct ns_table_limits lim;
    uint32_t n_ep, n_fe, n_zone;
    struct fz_ep *ep;
    struct fz_fe *fe;
    struct fz_zone *zone;
    uint8_t snat[2][16];
    uint8_t has_snat[2];
    uint32_t n_ports;
    uint16_t ports[64];        /* ports the rules and frontends name */
};

extern struct fz_set fz_sets[FZ_MAX_SETS];
extern uint32_t fz_n_sets;
/* Replays every *.bin trace of dir (sorted by name); returns how many sets were built. */
uint32_t fz_load_sets(const char *dir);
uint16_t fz_port_zone(const struct fz_set *s, uint16_t port);
uint16_t fz_u16(const uint8_t *p);     /* host-order, unaligned */

/* ---- the input: a header, then records of one frame each ---- */
#define FZ_HDR 4               /* set index, pipeline limits, clock start, spare */
#define FZ_REC 8               /* ctl, time step, arrival port (BE u16), length (BE u32) */
#define FZ_MAX_FRAMES 512      /* records past this are ignored */
#define FZ_BATCH 256           /* frames per ns_pipeline_run at most */
#define FZ_FRAME_MAX 65549     /* NS_FRAME_MAX: the driver refuses longer frames */

/* ctl bits */
#define FZ_BREAK 0x01          /* this frame starts a new batch (and the time step applies) */
#define FZ_SWAP 0x02           /* swap tables before this frame's batch (starts one) */
#define FZ_SWAP_SHIFT 2        /* bits 2-4: the new set is (current + 1 + these) % sets */
#define FZ_RECHECK 0x20        /* the swap rechecks established connections */
#define FZ_SWAP_NULL 0x40      /* the swap installs no tables at all */

struct fz_rec {
    uint8_t ctl, tstep;
    uint16_t port;
    uint32_t off, len;         /* the frame: data[off, off + len) of the input */
};

/* Splits an input into records (a short last record keeps what is there). */
uint32_t fz_parse(const uint8_t *d, size_t n, struct fz_rec *r, uint32_t max);
/* Appends one record; returns the bytes written (0 when it does not fit). */
size_t fz_put_rec(uint8_t *out, size_t cap, uint8_t ctl, uint8_t tstep, uint16_t port,
                  const uint8_t *frame, uint32_t len);

/* ---- what the mutator generates (fuzz_gen.c) ---- */
struct fz_rng {
    uint64_t s;
};
uint32_t fz_rand(struct fz_rng *r);
static inline uint32_t fz_below(struct fz_rng *r, uint32_t n) { return n ? fz_rand(r) % n : 0; }
/* Earlier frames of the input, which new frames continue, answer, fragment or quote. */
struct fz_prev {
    const uint8_t *frame;
    uint32_t len;
    uint16_t port;
};
/* One new frame aimed at set s into out (its length; *port its arrival port). */
uint32_t fz_gen(struct fz_rng *r, const struct fz_set *s, const struct fz_prev *prev, uint32_t n_prev,
                uint8_t *out, uint32_t cap, uint16_t *port);

/* ---- frames (fuzz_frames.c) ---- */
struct fz_pkt {
    uint8_t family, proto;     /* 4 or 6; IP protocol number */
    uint8_t src[16], dst[16];  /* IPv4 mapped, as the tables hold them */
    uint16_t sport, dport;     /* echo: the identifier */
    uint8_t tcp_flags, tcp_doff;   /* doff in words (5..15) */
    uint8_t sctp_chunk;
    uint8_t icmp_type, icmp_code;
    uint8_t vlan;              /* 1: one 802.1Q tag */
    uint8_t v4_opt_words;      /* IPv4 options (IHL - 5) */
    uint8_t n_ext, ext[6];     /* IPv6 extension chain (0, 43, 44, 60), each 8 or 16 bytes */
    uint8_t frag;              /* 0 none, 1 first, 2 later, 3 atomic (IPv6) */
    uint32_t frag_id;
    uint16_t frag_off;         /* in 8-byte units, for later fragments */
    uint16_t payload;          /* L4 payload bytes */
    const uint8_t *quote;      /* ICMP errors: the quoted packet (from its IP header) */
    uint32_t quote_len;
    uint8_t len_mode;          /* FZ_LEN_*: how the lengths lie */
    uint8_t bad_csum;          /* 1: the L4 checksum is left wrong */
};
enum { FZ_LEN_EXACT, FZ_LEN_CUT, FZ_LEN_LONG_IP, FZ_LEN_PAD, FZ_LEN_BAD_L4, FZ_LEN_MODES };

/* The IP packet of p (no Ethernet) into out; its length, 0 when it does not fit. */
uint32_t fz_build_ip(uint8_t *out, uint32_t cap, const struct fz_pkt *p, uint32_t seed);
/* The whole frame; its length, 0 when it does not fit. */
uint32_t fz_build_frame(uint8_t *out, uint32_t cap, const struct fz_pkt *p, uint32_t seed);
/* The L4 checksum of the packet at frame (parsed as pkt): 1 right, 0 wrong, -1 not
 * checkable (a fragment, no L4 header, IPv4 UDP without a checksum). */
int fz_l4_csum_ok(const uint8_t *frame, uint32_t len, const struct ns_pkt *pkt);
/* Recomputes that L4 checksum (after an edit), where it is checkable. */
void fz_fix_l4(uint8_t *frame, uint32_t len, const struct ns_pkt *pkt);
uint32_t fz_crc32c(const uint8_t *p, uint32_t n);
uint16_t fz_ip_csum(const uint8_t *p, uint32_t n);

#endif
