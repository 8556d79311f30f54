/* Connection tracker (docs/pipeline.md "2. Connection tracker"), after OVS's
 * userspace conntrack: one entry per connection holding the original-direction
 * key and, when the service mapper translated the destination, the translated
 * address and port. The index (ct_index.h) holds two references per entry, the
 * original key's and the reply key's (the reversed key, with the translated
 * destination as its source), so either direction's packet finds the one entry.
 *
 * Capacity is fixed at creation; entries come from a bump pointer then a free
 * list (nothing is touched until used). One FIFO per timeout value, doubly linked
 * by u32 indices: a refreshed entry moves to its FIFO's tail, so each FIFO is
 * ordered by expiry and expired entries are reclaimed from the heads: at most
 * reclaim_per_batch per batch, plus one when an insert finds the table full. Full
 * after that -> the caller drops conntrack_full. Expired entries (expiry <= now)
 * are absent to every lookup; every entry that expires is reported (NS_EV_EXPIRED). */
#ifndef NS_CONNTRACK_H
#define NS_CONNTRACK_H

#include "nsint.h"
#include "ct_index.h"
#include "events.h"

/* State numbers (public: ns_pipeline_ct_state returns them). Append only. */
enum ct_state_num {
    CT_FREE = 0,
    CT_TCP_SYN_SENT = 1,
    CT_TCP_SYN_RECV = 2,
    CT_TCP_ESTABLISHED = 3,
    CT_TCP_FIN_WAIT = 4,      /* one side sent FIN */
    CT_TCP_TIME_WAIT = 5,     /* both FINs, and the last one acknowledged */
    CT_TCP_CLOSED = 6,        /* RST */
    CT_UDP_FIRST = 7,
    CT_UDP_REPLIED = 8,
    CT_SCTP_INIT = 9,
    CT_SCTP_ESTABLISHED = 10,
    CT_SCTP_CLOSED = 11,
    CT_ICMP = 12,
    CT_TCP_LAST_ACK = 13,     /* both sides sent FIN; the first closer's ACK is due */
    CT_STATE_COUNT
};

/* Timeout classes: one FIFO each. */
enum ct_tclass { CT_T10, CT_T30, CT_T120, CT_T180, CT_T86400, CT_TCLASS_COUNT };

/* A connection's translation (docs/pipeline.md, "Source NAT"): its destination
 * (the service mapper's DNAT), its source (masquerade, hairpin), or both. */
#define CT_NAT_DST 1
#define CT_NAT_SRC 2
struct ct_nat {
    uint8_t flags;           /* CT_NAT_* */
    uint8_t pad;
    uint16_t xport;          /* CT_NAT_DST: the destination becomes (xdst, xport) */
    uint16_t xsport;         /* CT_NAT_SRC: the source becomes (xsrc, xsport) */
    uint16_t pad2;
    uint8_t xdst[16];
    uint8_t xsrc[16];
};

/* Source ports masquerade and hairpin choose: Linux's default ephemeral range, clear
 * of the NodePort range (30000-32767), so a translated source never answers to a
 * node port. The opening packet's own port is kept when it is in the range and free. */
#define CT_SNAT_PORT_LO 32768u
#define CT_SNAT_PORT_N 28232u   /* 32768..60999 */
#define CT_SNAT_TRIES 64u       /* then snat_ports_exhausted */

/* Canonical key. Hash and compare cover all 40 bytes: keep every byte defined.
 * echo: for ICMP echo, 0 on the request side and 1 on the reply side (the reversed
 * key flips it), so an echo request from b to a is never taken for a's reply. */
struct ct_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
    uint16_t zone;
    uint8_t proto;
    uint8_t echo;
};
_Static_assert(sizeof(struct ct_key) == 40, "ct_key has no padding");

struct ct_entry {
    /* first cache line: everything a lookup and a refresh touch */
    struct ct_key key;       /* original direction, as the opening packet arrived */
    uint64_t expiry;         /* ns; expired when <= now */
    uint32_t prev, next;     /* FIFO links (next: free list link when free) */
    uint32_t qexp_ms;        /* expiry (ms, mod 2^32) when last queued: the FIFO's
                              * order (see CT_REQUEUE_MS in conntrack.c) */
    uint8_t state;           /* enum ct_state_num, CT_FREE when unused */
    uint8_t tclass;          /* enum ct_tclass */
    uint8_t fin_dir;         /* TCP: direction (0 orig, 1 reply) of the first FIN */
    uint8_t nat;             /* CT_NAT_* bits: what is translated */
    /* second line: the translation, and what events report */
    uint64_t created_ns;
    uint8_t xdst[16];
    uint16_t xport;
    uint16_t in_port;        /* arrival port of the opening packet */
    uint32_t egress_rule;    /* rules that allowed it (NS_RULE_NONE: none decided) */
    uint32_t ingress_rule;
    uint32_t generation;     /* the table set that allowed it (events name its rules) */
    uint8_t xsrc[16];        /* CT_NAT_SRC: the source as the far end sees it */
    uint16_t xsport;
    uint8_t pad[6];
};
_Static_assert(sizeof(struct ct_entry) == 128, "ct_entry is two cache lines, no padding");
_Static_assert(sizeof(struct ct_entry) <= 128, "ct_entry fits the 128-byte budget");

struct ct_fifo {
    uint32_t head, tail;
};

struct ct_table {
    uint32_t cap;
    uint32_t n_used;         /* allocated entries (live or expired-not-reclaimed) */
    uint32_t bump;           /* entries [bump, cap) never used yet */
    uint32_t free_head;
    struct ct_entry *e;      /* 64-byte aligned */
    struct ct_index idx;     /* ref = (index << 1 | dir) + 1 */
    struct ct_fifo fifo[CT_TCLASS_COUNT];
    uint32_t state_count[CT_STATE_COUNT];
    uint32_t n_xlated;       /* entries with a translation (only they can clash) */
    struct ns_events *ev;    /* where expiries are reported (owned by the pipeline) */
    uint32_t per_port;       /* live entries one arrival port may hold (0: no limit) */
    uint32_t *port_count;    /* [CT_PORTS] entries held per arrival port, when per_port */
    struct ct_file *file;    /* the shared file mapped (ct_store.c), or NULL: e is malloc'd */
    uint64_t file_bytes;
};

/* Arrival ports are 16-bit: the per-port counts are one bounded array (256 KiB),
 * allocated only when a limit is set. */
#define CT_PORTS 65536u

#define CT_DIR_ORIG 0
#define CT_DIR_REPLY 1

int ct_init(struct ct_table *ct, uint32_t cap, uint32_t per_port, struct ns_events *ev);
/* The same with the entries in a shared file at `path` (ct_store.c): created anew
 * (truncated) with `cap` entries, or with attach != 0 mapped as a previous process
 * left it (its capacity) and its live entries (at `now`) taken over. Returns the
 * entries taken over, or -errno (-EINVAL: not a connection table file). */
int64_t ct_init_file(struct ct_table *ct, uint32_t cap, uint32_t per_port, struct ns_events *ev,
                     const char *path, int attach, uint64_t now);
/* After ct->bump moved: the file (if any) records it before the entry is filled. */
void ct_note_bump(struct ct_table *ct);
void ct_fini(struct ct_table *ct);
uint64_t ct_bytes(const struct ct_table *ct);
uint32_t ct_key_hash(const struct ct_key *k);
/* Live entry matching key in either direction (*dir set), else NS_NONE32.
 * Expired matches met on the way are reported and deleted. */
uint32_t ct_lookup(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint64_t now,
                   int *dir);
/* Same, read-only: expired matches are skipped. */
uint32_t ct_find(const struct ct_table *ct, const struct ct_key *key, uint64_t now, int *dir);
/* Prefetch hints for a batch: the index bucket of a hash, then the entry its
 * fingerprint names (the translation's line too when the tag says there is one).
 * always_inline: GCC (12) finds a function of loads and prefetches "pure" and deletes
 * calls to it as dead code when it is not inlined early; the entry prefetch was so
 * lost from the packet path. */
static inline __attribute__((always_inline)) void ct_prefetch_slot(const struct ct_table *ct, uint32_t h)
{
    __builtin_prefetch(&ct->idx.b[h & ct->idx.mask]);
}
/* 1 when the home bucket holds the fingerprint (the entry was prefetched), else 0:
 * the key is likely new. */
static inline __attribute__((always_inline)) int ct_prefetch_entry(const struct ct_table *ct, uint32_t h)
{
    const struct ctx_bucket *b = &ct->idx.b[h & ct->idx.mask];
    const uint16_t fp = ctx_fp(h);
    for (int k = 0; k < CTX_SLOTS; k++)
        if (b->ref[k] && (b->tag[k] & CTX_FP) == fp) {
            const struct ct_entry *e = &ct->e[(b->ref[k] - 1) >> 1];
            __builtin_prefetch(e);
            if (b->tag[k] & CTX_XLATED)
                __builtin_prefetch((const char *)e + 64);
            return 1;
        }
    return 0;
}
/* New entry in `state` (translated as nat says; NULL: not at all), opened from
 * in_port, or NS_NONE32 when full after reclaiming. The caller fills the report
 * fields. */
uint32_t ct_insert(struct ct_table *ct, const struct ct_key *key, uint32_t h, uint8_t state,
                   const struct ct_nat *nat, uint16_t in_port, uint64_t now);
/* 1 when in_port already holds per_port live entries (expired ones are reclaimed
 * first, so the count is exact), else 0; always 0 without a limit. */
int ct_port_full(struct ct_table *ct, uint16_t in_port, uint64_t now);
void ct_delete(struct ct_table *ct, uint32_t i);
/* Reports entry i as an event of `type` (NS_EV_*) at `now`. */
struct ns_event *ct_report(struct ct_table *ct, uint32_t i, uint8_t type, uint64_t now);
/* Sets the state and refreshes: expiry = now + timeout(state), saturating. Within
 * one timeout class the entry moves to its FIFO's tail at most once a second, so
 * most established packets touch no other entry. */
void ct_refresh(struct ct_table *ct, uint32_t i, uint8_t state, uint64_t now);
/* Reclaims (reports and deletes) up to `budget` expired entries from the FIFO heads. */
uint32_t ct_reclaim(struct ct_table *ct, uint64_t now, uint32_t budget);
/* Frees up to max expired entries, wherever they are queued (ct_reclaim stops at
 * the first head not expired): 1 for an insert into a full table, all for the
 * per-port limit. Returns how many. */
uint32_t ct_reclaim_expired(struct ct_table *ct, uint64_t now, uint32_t max);
/* The reply key of entry e: the original key reversed, its source the translated
 * destination and its destination the translated source, where there are. */
void ct_reply_key(const struct ct_entry *e, struct ct_key *r);
/* The reply key an entry for `key` translated as nat says would have (NULL: none). */
void ct_reply_of(const struct ct_key *key, const struct ct_nat *nat, struct ct_key *r);
/* 1 when committing `key` (translated as nat says, or not) would make a second
 * connection answer to one of its keys: only possible where translations are. */
int ct_clashes(struct ct_table *ct, const struct ct_key *key, const struct ct_nat *nat, uint64_t now);
/* The same for a key known to be absent: only its reply key is looked up. */
int ct_reply_clashes(struct ct_table *ct, const struct ct_key *key, const struct ct_nat *nat, uint64_t now);
/* Source NAT for `key` to nat->xsrc: picks nat->xsport so that no live connection
 * answers to the reply key (the opening port if in range and free, else up to
 * CT_SNAT_TRIES ports of the range from a hash of the key). ICMP keeps its echo
 * identifier: one try. 0, or -1 when every try is taken. */
int ct_choose_source_port(struct ct_table *ct, const struct ct_key *key, struct ct_nat *nat,
                          uint64_t now);

/* Per-protocol transitions for a packet hitting entry i in direction dir (TCP flags
 * or the first SCTP chunk type in `l4info`); refreshes; returns the new state. */
uint8_t ct_update(struct ct_table *ct, uint32_t i, int dir, uint8_t l4info, uint64_t now);
/* States only an opening packet gets past: TCP after RST or a completed close. It
 * deletes the entry and is policed as new; anything else is connection_closed. */
static inline int ct_state_closed_tcp(uint8_t s)
{
    return s == CT_TCP_TIME_WAIT || s == CT_TCP_CLOSED;
}
/* States an opening packet replaces (the old connection is over). */
static inline int ct_state_reopenable(uint8_t s)
{
    return ct_state_closed_tcp(s) || s == CT_SCTP_CLOSED;
}
/* States whose entry is reported NS_EV_CLOSED when entered. */
static inline int ct_state_is_close(uint8_t s)
{
    return s == CT_TCP_TIME_WAIT || s == CT_TCP_CLOSED || s == CT_SCTP_CLOSED;
}

/* ---- internals shared by conntrack.c and ct_store.c ---- */
static inline uint32_t ms_stamp(uint64_t ns)
{
    return (uint32_t)(ns / 1000000u);
}

/* FIFO order is by qexp_ms (the expiry when queued). A refresh requeues only when
 * the expiry moved at least CT_REQUEUE_MS past it, so a busy connection is moved at
 * most once a second, not once a packet; an entry's real expiry is then in
 * [qexp, qexp + CT_REQUEUE_MS). Reclaim can be up to that late, never early. */
#define CT_REQUEUE_MS 1000u

static inline int stamp_passed(uint32_t stamp, uint32_t now_ms)
{
    return (int32_t)(stamp - now_ms) <= 0;
}

static inline void fifo_unlink(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_fifo *f = &ct->fifo[e->tclass];
    if (e->prev != NS_NONE32) ct->e[e->prev].next = e->next; else f->head = e->next;
    if (e->next != NS_NONE32) ct->e[e->next].prev = e->prev; else f->tail = e->prev;
}

static inline void fifo_append(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_fifo *f = &ct->fifo[e->tclass];
    e->next = NS_NONE32;
    e->prev = f->tail;
    if (f->tail != NS_NONE32) ct->e[f->tail].next = i; else f->head = i;
    f->tail = i;
}

#endif
