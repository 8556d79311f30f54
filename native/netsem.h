/* netsem native pipeline: the public API, in the subset cffi's cdef() accepts
 * (plain structs, enums, prototypes, integer #defines; no #include or #ifdef).
 * native/build_ffi.py feeds this file to cdef() and #includes it in set_source,
 * so Python and C read one definition. Semantics: docs/pipeline.md. */

#define NS_ADDR_LEN 16
#define NS_PORT_UPLINK 0
#define NS_PORT_UNKNOWN 65535
#define NS_RULE_NONE 4294967295

#define NS_DIR_INGRESS 0
#define NS_DIR_EGRESS 1
#define NS_ISOLATED_INGRESS 1
#define NS_ISOLATED_EGRESS 2

enum ns_verdict { NS_FORWARD = 0, NS_DROP = 1, NS_LOCAL = 2 };
enum ns_ct_state { NS_CT_NONE = 0, NS_CT_NEW = 1, NS_CT_ESTABLISHED = 2,
                   NS_CT_REPLY = 3, NS_CT_RELATED = 4 };

/* Capacities: every table is allocated once at this size and never grows. */
struct ns_table_limits {
    uint32_t endpoints;      /* address -> endpoint entries */
    uint32_t identities;     /* identity ids are 1..identities-1 */
    uint32_t rule_keys;      /* distinct (local, dir, peer, block) keys */
    uint32_t rule_entries;   /* (proto, lo, hi, rule id) entries in total */
    uint32_t prefixes;       /* LPM prefixes */
    uint32_t class_blocks;   /* block ids listed by all classes together */
};

struct ns_ct_limits {
    uint32_t connections;    /* conntrack capacity */
    uint32_t fragments;      /* fragment table capacity */
    uint32_t reclaim_per_batch;  /* expired entries reclaimed per batch at most */
};

/* One per packet, written by ns_pipeline_run. The tuple is the packet's own
 * (after any rewrite; nothing rewrites yet). Ports are host order. */
struct ns_result {
    uint32_t egress_rule;    /* deciding egress rule id, or NS_RULE_NONE */
    uint32_t ingress_rule;   /* deciding ingress rule id, or NS_RULE_NONE */
    uint16_t out_port;       /* valid when verdict == NS_FORWARD */
    uint16_t sport;
    uint16_t dport;
    uint8_t verdict;         /* enum ns_verdict */
    uint8_t reason;          /* index into ns_reason_name() */
    uint8_t ct_state;        /* enum ns_ct_state */
    uint8_t proto;           /* IP protocol number, 0 when not IP */
    uint8_t family;          /* 4, 6, or 0 when not IP */
    uint8_t pad;
    uint8_t src[16];
    uint8_t dst[16];
};

struct ns_tables;
struct ns_pipeline;

/* Reasons (forward, local and drop) are declared once in an X-macro in
 * native/reasons.h; Python reads their names through these two calls. */
int ns_reason_count(void);
const char *ns_reason_name(int reason);

/* Tables: built by the compiler on a fresh object, sealed, then swapped in.
 * Every add returns 0, or -1 when the table is full or the arguments are invalid
 * (nothing is added then). */
struct ns_tables *ns_tables_new(const struct ns_table_limits *limits);
void ns_tables_free(struct ns_tables *t);
int ns_tables_add_endpoint(struct ns_tables *t, const uint8_t *addr16,
                           uint16_t port, uint32_t identity);
int ns_tables_set_isolation(struct ns_tables *t, uint32_t identity, uint8_t mask);
int ns_tables_add_prefix(struct ns_tables *t, const uint8_t *addr16, uint8_t plen,
                         uint32_t class_id);
int ns_tables_add_class_block(struct ns_tables *t, uint32_t class_id, uint32_t block_id);
int ns_tables_add_rule(struct ns_tables *t, uint32_t local_identity, uint8_t dir,
                       uint32_t peer_identity, uint32_t block_id, uint8_t proto,
                       uint16_t port_lo, uint16_t port_hi, uint32_t rule_id);
/* Builds lookup structures; after this no add is accepted. 0 or -1. */
int ns_tables_seal(struct ns_tables *t);
/* Memory held by the tables, in bytes. */
uint64_t ns_tables_memory(const struct ns_tables *t);
/* Table lookups, for tests and for `netsem` tools. */
int ns_tables_lookup_endpoint(const struct ns_tables *t, const uint8_t *addr16,
                              uint16_t *port, uint32_t *identity);
uint32_t ns_tables_lookup_class(const struct ns_tables *t, const uint8_t *addr16);
/* One direction's verdict, as the policy filter computes it: 1 allowed, 0 denied;
 * *rule gets the deciding rule id or NS_RULE_NONE. */
int ns_tables_policy_check(const struct ns_tables *t, uint8_t dir,
                           uint32_t local_identity, uint32_t peer_identity,
                           const uint8_t *peer_addr16, uint8_t proto, uint16_t dport,
                           uint32_t *rule);

/* The pipeline: owns the connection and fragment tables and the counters. */
struct ns_pipeline *ns_pipeline_new(const struct ns_ct_limits *limits);
void ns_pipeline_free(struct ns_pipeline *p);
/* Swaps in sealed tables (or NULL) and returns the previous ones (the caller frees
 * them). With recheck != 0, deletes connections the new tables would not allow;
 * returns how many in *rechecked_out when not NULL. */
struct ns_tables *ns_pipeline_swap_tables(struct ns_pipeline *p, struct ns_tables *t,
                                          int recheck, uint32_t *deleted_out);
/* Runs n frames through the pipeline. Frame i is buf[off[i] .. off[i]+len[i]),
 * arriving on in_port[i]. Writes res[0..n). Returns n. Frames are not modified. */
uint32_t ns_pipeline_run(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                         const uint16_t *len, const uint16_t *in_port, uint32_t n,
                         uint64_t now_ns, struct ns_result *res);
/* Per-reason packet counters since creation. */
uint64_t ns_pipeline_counter(const struct ns_pipeline *p, int reason);
uint32_t ns_pipeline_connections(const struct ns_pipeline *p);
uint32_t ns_pipeline_fragments(const struct ns_pipeline *p);
/* Size of one conntrack entry in bytes (the target is <= 128). */
uint32_t ns_ct_entry_size(void);
uint64_t ns_pipeline_memory(const struct ns_pipeline *p);
/* Conntrack lookup by tuple (either direction), for tests: returns the TCP/UDP/
 * SCTP/ICMP state number (see native/conntrack.h) or -1 when absent/expired. */
int ns_pipeline_ct_state(const struct ns_pipeline *p, const uint8_t *src16,
                         const uint8_t *dst16, uint16_t sport, uint16_t dport,
                         uint8_t proto, uint64_t now_ns);
