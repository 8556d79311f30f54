/* netsem native pipeline: the public API, in the subset cffi's cdef() accepts
 * (plain structs, enums, prototypes, integer #defines; no #include or #ifdef).
 * native/build_ffi.py feeds this file to cdef() and #includes it in set_source,
 * so Python and C read one definition: Python takes every constant below from
 * here (pipeline/dataplane/constants.py). Semantics: docs/pipeline.md. */

#define NS_ADDR_LEN 16
#define NS_PORT_UPLINK 0
#define NS_PORT_UNKNOWN 65535
#define NS_RULE_NONE 4294967295
#define NS_ZONE_DEFAULT 0            /* the cluster's own IP address domain */
#define NS_FRAME_MAX 65549           /* Ethernet + 802.1Q + a 65,535-byte IP packet */

/* IP protocol numbers the pipeline understands. */
#define NS_PROTO_ICMP 1
#define NS_PROTO_TCP 6
#define NS_PROTO_UDP 17
#define NS_PROTO_ICMPV6 58
#define NS_PROTO_SCTP 132

#define NS_DIR_INGRESS 0
#define NS_DIR_EGRESS 1
/* Rule keys of cluster-wide policy's tiers (docs/pipeline.md "Policy table"). */
#define NS_DIR_ADMIN_INGRESS 2
#define NS_DIR_ADMIN_EGRESS 3
#define NS_DIR_BASELINE_INGRESS 4
#define NS_DIR_BASELINE_EGRESS 5
#define NS_DIRS 6
/* A rule's action (ns_tables_set_rule_action); NetworkPolicy's rules allow. */
#define NS_ACTION_NONE 0
#define NS_ACTION_ALLOW 1
#define NS_ACTION_DENY 2
#define NS_ACTION_PASS 3
#define NS_ISOLATED_INGRESS 1
#define NS_ISOLATED_EGRESS 2
/* An identity some policy of a tier selects, per tier direction d (2..5): bit 1 << (d + 2).
 * Set with the isolation bits (ns_tables_set_isolation); the lookup skips a tier
 * for the others, so its cost does not grow with policies that do not apply. */
#define NS_SUBJECT_ADMIN_INGRESS 16
#define NS_SUBJECT_ADMIN_EGRESS 32
#define NS_SUBJECT_BASELINE_INGRESS 64
#define NS_SUBJECT_BASELINE_EGRESS 128

/* What sits at an address (the model's address plane): a pod's interface, a
 * Service VIP, or a node (hostNetwork pods have their node's address). */
#define NS_EP_POD 1
#define NS_EP_SERVICE 2
#define NS_EP_NODE 3

/* Table-set options (ns_tables_set_options). */
#define NS_OPT_POLICE_NODE_TRAFFIC 1 /* node -> pod on it policed like any traffic */
#define NS_OPT_ROUTE_POD_ADDRESSES 2 /* the outside may open connections to pod addresses */

/* ns_event.xlated: what a connection's entry translates. */
#define NS_XLATE_DST 1
#define NS_XLATE_SRC 2

/* ns_result.rewrite: which end the pipeline translated (ns_rewrite_frame applies it).
 * For an ICMP error each rewritten end is also written into the quoted packet, at
 * its opposite end: the error's new source (src, sport) is the quote's destination
 * and port, its new destination (dst, dport) the quote's source and port. */
#define NS_REWRITE_SRC 1
#define NS_REWRITE_DST 2
#define NS_FLOW_HASH_SEED 0x510e527fade682d1  /* ns_flow_hash's seed (the oracle hashes alike) */
#define NS_AFF_HASH_SEED 0x9b05688c2b3e6c1f   /* the affinity table's (docs/pipeline.md) */
#define NS_AFF_PROBE 8                        /* slots an affinity key may sit in */

enum ns_verdict { NS_FORWARD = 0, NS_DROP = 1, NS_LOCAL = 2 };
enum ns_ct_state { NS_CT_NONE = 0, NS_CT_NEW = 1, NS_CT_ESTABLISHED = 2,
                   NS_CT_REPLY = 3, NS_CT_RELATED = 4 };

/* Networks per table set at most: the routable bitmap is networks^2 bits (2 MiB). */
#define NS_MAX_NETWORKS 4096

/* Capacities: every table is allocated once at this size and never grows. */
struct ns_table_limits {
    uint32_t endpoints;      /* (zone, address) -> endpoint entries */
    uint32_t identities;     /* identity ids are 1..identities-1 */
    uint32_t rule_keys;      /* distinct (local, dir, peer, block) keys */
    uint32_t rule_entries;   /* (proto, lo, hi, rule id) entries in total */
    uint32_t prefixes;       /* LPM prefixes */
    uint32_t class_blocks;   /* block ids listed by all classes together */
    uint32_t rules;          /* rule ids are 0..rules-1 (hit counters) */
    uint32_t frontends;      /* Service (zone, VIP, protocol, port) frontends */
    uint32_t backends;       /* backends of all frontends together */
    uint32_t maglev_slots;   /* Maglev slots of all frontends together */
    uint32_t networks;       /* networks are 0..networks-1 (0: the cluster network) */
};

struct ns_ct_limits {
    uint32_t connections;    /* conntrack capacity */
    uint32_t fragments;      /* fragment table capacity */
    uint32_t reclaim_per_batch;  /* expired entries reclaimed per batch at most */
    uint32_t events;         /* event ring capacity (0: no events recorded) */
    uint32_t affinity;       /* ClientIP affinity records (rounded up to a power of 2) */
    uint32_t per_port;       /* live connections one arrival port may open (0: no limit) */
};

/* One per packet, written by ns_pipeline_run. The tuple is the packet's as it
 * leaves the pipeline: after the translation `rewrite` names. Ports are host order. */
struct ns_result {
    uint32_t egress_rule;    /* deciding egress rule id, or NS_RULE_NONE */
    uint32_t ingress_rule;   /* deciding ingress rule id, or NS_RULE_NONE */
    uint16_t out_port;       /* valid when verdict == NS_FORWARD */
    uint16_t sport;
    uint16_t dport;
    uint16_t zone;           /* the IP address domain the packet was looked up in */
    uint8_t verdict;         /* enum ns_verdict */
    uint8_t reason;          /* index into ns_reason_name() */
    uint8_t ct_state;        /* enum ns_ct_state */
    uint8_t proto;           /* IP protocol number, 0 when not IP */
    uint8_t family;          /* 4, 6, or 0 when not IP */
    uint8_t rewrite;         /* NS_REWRITE_* bits: src and/or dst (address, port) translated */
    uint8_t pad[2];
    uint8_t src[16];
    uint8_t dst[16];
};

/* Events out of the pipeline (a bounded ring, drained by the owner between
 * batches): connections opened, denied, closed, expired or revoked by a recheck,
 * and every other drop. A full ring drops the event and counts it. */
#define NS_EV_NEW 1          /* a connection was committed */
#define NS_EV_DENIED 2       /* a new connection was denied by policy */
#define NS_EV_DROP 3         /* any other dropped packet */
#define NS_EV_CLOSED 4       /* TCP RST, or the closing handshake completed */
#define NS_EV_EXPIRED 5      /* the connection's entry expired and was reclaimed */
#define NS_EV_REVOKED 6      /* deleted by a table swap with recheck */

struct ns_event {
    uint64_t time_ns;        /* the batch's now */
    uint32_t egress_rule;    /* NS_RULE_NONE when none decided */
    uint32_t ingress_rule;
    uint16_t in_port;        /* arrival port (NEW: of the opening packet) */
    uint16_t out_port;
    uint16_t sport;          /* the tuple as it arrived (original direction for */
    uint16_t dport;          /*   connection events) */
    uint16_t zone;
    uint8_t type;            /* NS_EV_* */
    uint8_t reason;          /* the packet's reason (ns_reason_name) */
    uint8_t proto;
    uint8_t family;
    uint8_t tcp_flags;
    uint8_t xlated;          /* NS_XLATE_* bits: xdst/xport hold the translated
                              * destination, xsrc/xsport the translated source */
    uint8_t src[16];
    uint8_t dst[16];
    uint8_t xdst[16];
    uint16_t xport;
    uint16_t xsport;
    uint32_t generation;     /* the table set (counted from 1 by swaps) that decided */
    uint8_t xsrc[16];
    uint8_t pad[8];
};

struct ns_tables;
struct ns_pipeline;

/* Reasons (forward, local and drop) are declared once in an X-macro in
 * native/reasons.h; Python reads their names and verdicts through these. */
int ns_reason_count(void);
const char *ns_reason_name(int reason);
int ns_reason_verdict(int reason);
const char *ns_reason_stage(int reason);

/* Tables: built by the compiler on a fresh object, sealed, then swapped in.
 * Every add returns 0, or -1 when the table is full or the arguments are invalid
 * (nothing is added then). */
struct ns_tables *ns_tables_new(const struct ns_table_limits *limits);
void ns_tables_free(struct ns_tables *t);
/* What sits at (zone, address): kind NS_EP_POD (port 1..65534, identity >= 1, the
 * pod's node and a number owner shared by the pod's interfaces), NS_EP_SERVICE (port
 * 0, identity 0) or NS_EP_NODE (port 0, identity 0, node = owner = its number). */
int ns_tables_add_endpoint(struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                           uint8_t kind, uint16_t port, uint32_t identity, uint16_t node,
                           uint32_t owner);
/* n endpoints at once, as columns (row i: zones[i], addrs16[16 i..], ...): what a
 * compile installs, in one call. 0, or -1 with *failed = the first row refused
 * (the rows before it are in). */
int ns_tables_add_endpoints(struct ns_tables *t, uint32_t n, const uint16_t *zones, const uint8_t *addrs16,
                            const uint8_t *kinds, const uint16_t *ports, const uint32_t *identities,
                            const uint16_t *nodes, const uint32_t *owners, uint32_t *failed);
/* The IP address domain of a switch port's traffic (default: NS_ZONE_DEFAULT). */
int ns_tables_set_port_zone(struct ns_tables *t, uint16_t port, uint16_t zone);
/* The network a switch port is on (0, the cluster network, by default: the uplink
 * is on it), and the pairs of networks declared L3-routable to each other (004's
 * "type 1"); any other two networks never meet ("type 2"). -1: sealed, or a network
 * number not below limits.networks. */
int ns_tables_set_port_network(struct ns_tables *t, uint16_t port, uint16_t network);
int ns_tables_set_routable(struct ns_tables *t, uint16_t a, uint16_t b);
int ns_tables_set_options(struct ns_tables *t, uint32_t options);
/* The address pods' connections to the outside are masqueraded to, and hairpin
 * connections source-translated to (the node's, one per family; addr16 IPv4-mapped
 * for IPv4). Without one of a family, that family leaves untranslated. 0 or -1. */
int ns_tables_set_snat_address(struct ns_tables *t, const uint8_t *addr16);
int ns_tables_set_isolation(struct ns_tables *t, uint32_t identity, uint8_t mask);
int ns_tables_add_prefix(struct ns_tables *t, const uint8_t *addr16, uint8_t plen,
                         uint32_t class_id);
int ns_tables_add_class_block(struct ns_tables *t, uint32_t class_id, uint32_t block_id);
int ns_tables_add_rule(struct ns_tables *t, uint32_t local_identity, uint8_t dir,
                       uint32_t peer_identity, uint32_t block_id, uint8_t proto,
                       uint16_t port_lo, uint16_t port_hi, uint32_t rule_id);
/* A Service frontend: a new connection to (zone, addr16, proto, port), an address
 * added as NS_EP_SERVICE (a ClusterIP or an externalIP), or as NS_EP_NODE with a
 * NodePort, goes to backend slots[h % m], h = ns_flow_hash() of its
 * tuple (of its addresses and protocol only, ports 0, with NS_FE_CLIENT_IP: every
 * connection of a client goes to one backend); backend i is (backend_addrs16 + 16 i,
 * backend_ports[i]). n = 0: no ready backend, the connection is refused. m is
 * 1..65535 and every slot < n. */
#define NS_FE_CLIENT_IP 1    /* sessionAffinity: ClientIP */
int ns_tables_add_frontend(struct ns_tables *t, uint16_t zone, const uint8_t *addr16, uint8_t proto,
                           uint16_t port, uint8_t flags, uint16_t n, const uint8_t *backend_addrs16,
                           const uint16_t *backend_ports, uint16_t m, const uint16_t *slots);
/* The hash that picks a backend: of (src, dst, sport, dport, proto) as the service
 * mapper sees them (addresses 16 bytes, IPv4 mapped; ports in host order). */
uint32_t ns_flow_hash(const uint8_t *src16, const uint8_t *dst16, uint16_t sport, uint16_t dport,
                      uint8_t proto);
/* sessionAffinity ClientIP's timeoutSeconds for the frontend (zone, addr16, proto,
 * port) (NS_FE_CLIENT_IP set): a client's record lives that long after its latest new
 * connection. 0 or -1 (no such frontend, or seconds 0). */
int ns_tables_set_affinity_timeout(struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                                   uint8_t proto, uint16_t port, uint32_t seconds);
/* ClientIP records that found no room (their connection hashed as without affinity). */
uint64_t ns_pipeline_affinity_full(const struct ns_pipeline *p);
/* Builds lookup structures; after this no add is accepted. 0 or -1. */
int ns_tables_seal(struct ns_tables *t);
/* t (not sealed) takes `from`'s policy part (isolation, peer-set cells, prefixes,
 * rules; sealed), shared and reference counted, instead of its own: what a delta
 * that changes no policy table does (compiler/delta.py). No policy add is accepted
 * afterwards. t's limits must hold from's rules and identities. 0 or -1. */
int ns_tables_share_policy(struct ns_tables *t, const struct ns_tables *from);
/* Memory held by the tables, in bytes. */
uint64_t ns_tables_memory(const struct ns_tables *t);
/* Peer sets, compressed (docs/pipeline.md "Policy table"): for direction dir, a dense
 * dim x dim matrix, cells[local * dim + peer] = the peer-set state of that pair of
 * identities (0: no rule names that peer for that local); a state's port segments are
 * the rule key (local 0, dir, peer = state, block 0). Replaces the (local, dir, peer,
 * 0) keys. dim <= NS_MAX_CELL_DIM and <= limits.identities; copied. 0 or -1. */
#define NS_MAX_CELL_DIM 4096
int ns_tables_set_peer_cells(struct ns_tables *t, uint8_t dir, const uint32_t *cells, uint32_t dim);
/* The same for ipBlock peers: cells[local * classes + class] = the state of (local,
 * address class), replacing the (local, dir, 0, class) keys. dim as above (the same
 * as the peer cells' when both are set); classes <= limits.prefixes + 1. */
int ns_tables_set_block_cells(struct ns_tables *t, uint8_t dir, const uint32_t *cells, uint32_t dim,
                              uint32_t classes);
/* New connections each rule allowed (either direction) while these tables were in. */
uint64_t ns_tables_rule_hits(const struct ns_tables *t, uint32_t rule_id);
/* Table lookups, for tests and for `netsem` tools. */
int ns_tables_lookup_endpoint(const struct ns_tables *t, uint16_t zone, const uint8_t *addr16,
                              uint8_t *kind, uint16_t *port, uint32_t *identity);
uint32_t ns_tables_lookup_class(const struct ns_tables *t, const uint8_t *addr16);
/* A tier's first matching rule (tier_dir: NS_DIR_ADMIN_* or NS_DIR_BASELINE_*):
 * its action (NS_ACTION_*, NS_ACTION_NONE when no rule matches), *rule its id. */
int ns_tables_tier_check(const struct ns_tables *t, uint8_t tier_dir, uint32_t local_identity,
                         uint32_t peer_identity, const uint8_t *peer_addr16, uint8_t proto, uint16_t dport,
                         uint32_t *rule);
/* One direction of a new connection through the tiers, as the policy filter decides
 * it (tiers: 0 when the local end is not on the cluster network): -1 allowed (*rule
 * the id of the rule that allowed, or NS_RULE_NONE by default), or the drop reason
 * (denied_egress, denied_admin_ingress, ...). dir: NS_DIR_INGRESS or NS_DIR_EGRESS
 * (another is refused); rule may be NULL. */
int ns_tables_direction_verdict(const struct ns_tables *t, uint8_t dir, int tiers, uint32_t local,
                                uint32_t peer, const uint8_t *peer16, uint8_t proto, uint16_t dport,
                                uint32_t *rule);
/* A rule's action (the rules of the tiers' keys); rule < limits.rules. 0 or -1. */
int ns_tables_set_rule_action(struct ns_tables *t, uint32_t rule, uint8_t action);
/* NetworkPolicy's verdict of one direction: 1 allowed, 0 denied;
 * *rule gets the deciding rule id or NS_RULE_NONE. */
int ns_tables_policy_check(const struct ns_tables *t, uint8_t dir,
                           uint32_t local_identity, uint32_t peer_identity,
                           const uint8_t *peer_addr16, uint8_t proto, uint16_t dport,
                           uint32_t *rule);

/* The pipeline: owns the connection and fragment tables, the event ring and the
 * counters. */
struct ns_pipeline *ns_pipeline_new(const struct ns_ct_limits *limits);
/* The same with the connection table in a shared file at ct_path (a tmpfs file, so
 * that a switch restarted after a crash takes its connections over): attach == 0
 * creates it anew with limits->connections entries; attach != 0 maps it as the
 * previous process left it (its capacity wins) and takes over the entries live at
 * now_ns. *result: the entries taken over, or -errno (-EINVAL: not such a file). */
struct ns_pipeline *ns_pipeline_new_at(const struct ns_ct_limits *limits, const char *ct_path, int attach,
                                       uint64_t now_ns, int64_t *result);
void ns_pipeline_free(struct ns_pipeline *p);
/* Swaps in sealed tables (or NULL) and returns the previous ones (the caller frees
 * them). With recheck != 0, deletes connections the new tables would not allow;
 * returns how many in *deleted_out when not NULL. */
struct ns_tables *ns_pipeline_swap_tables(struct ns_pipeline *p, struct ns_tables *t,
                                          int recheck, uint32_t *deleted_out);
/* Runs n frames through the pipeline. Frame i is buf[off[i] .. off[i]+len[i]),
 * arriving on in_port[i]. Writes res[0..n). Returns n. Frames are not modified:
 * the caller applies res[i].rewrite with ns_rewrite_frame. */
uint32_t ns_pipeline_run(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                         const uint32_t *len, const uint16_t *in_port, uint32_t n,
                         uint64_t now_ns, struct ns_result *res);
/* A frame's offload metadata: the virtio-net header (struct virtio_net_hdr, host
 * byte order) that AF_PACKET (PACKET_VNET_HDR) and TAP (IFF_VNET_HDR) carry with
 * it. A GSO super-frame (gso_type != NONE) is one TCP or UDP segment of up to 64 KB
 * the kernel splits into gso_size pieces where it must; NEEDS_CSUM means its L4
 * checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL), to be
 * completed from csum_start, stored at csum_start + csum_offset. */
struct ns_offload {
    uint8_t flags;           /* NS_OFFLOAD_* */
    uint8_t gso_type;        /* NS_GSO_* (| NS_GSO_ECN) */
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};
#define NS_OFFLOAD_NEEDS_CSUM 1
#define NS_OFFLOAD_DATA_VALID 2
#define NS_GSO_NONE 0
#define NS_GSO_TCPV4 1
#define NS_GSO_UDP 3
#define NS_GSO_TCPV6 4
#define NS_GSO_UDP_L4 5
#define NS_GSO_ECN 128
/* ns_pipeline_run with each frame's offload metadata (ol[i]; ol == NULL: none).
 * The sanity filter checks that it describes the frame (else bad_offload); a
 * super-frame is then judged once, as the one segment it is. */
uint32_t ns_pipeline_run_offload(struct ns_pipeline *p, const uint8_t *buf, const uint32_t *off,
                                 const uint32_t *len, const uint16_t *in_port,
                                 const struct ns_offload *ol, uint32_t n, uint64_t now_ns,
                                 struct ns_result *res);
/* Writes the translation a result names into its frame (addresses, ports, and the
 * IPv4 header, TCP, UDP, ICMPv6 and SCTP checksums). 0, or -1 when the frame is not
 * the one the result was computed for. */
int ns_rewrite_frame(uint8_t *frame, uint32_t len, const struct ns_result *r);
/* The same for a frame whose L4 checksum is partial (NS_OFFLOAD_NEEDS_CSUM): the
 * field holds the pseudo-header sum, so an address change updates it without the
 * complement and a port change leaves it (the sum over the segment is made later). */
int ns_rewrite_frame_offload(uint8_t *frame, uint32_t len, const struct ns_result *r, int partial);
/* Per-reason packet counters since creation. */
uint64_t ns_pipeline_counter(const struct ns_pipeline *p, int reason);
uint32_t ns_pipeline_connections(const struct ns_pipeline *p);
/* Table sets swapped in so far (the generation results and events name). */
uint32_t ns_pipeline_generation(const struct ns_pipeline *p);
/* The capacities in force (defaults filled in). */
void ns_pipeline_limits(const struct ns_pipeline *p, struct ns_ct_limits *out);
uint32_t ns_pipeline_fragments(const struct ns_pipeline *p);
/* Live-or-unreclaimed connections in conntrack state `state` (see conntrack.h). */
uint32_t ns_pipeline_ct_state_count(const struct ns_pipeline *p, int state);
/* Events: moves up to max (oldest first) out of the ring; returns how many. */
uint32_t ns_pipeline_events_read(struct ns_pipeline *p, struct ns_event *out, uint32_t max);
uint64_t ns_pipeline_events_lost(const struct ns_pipeline *p);
/* Conntrack state numbers and names (native/conntrack.h), for Python. */
int ns_ct_state_count(void);
const char *ns_ct_state_name(int state);
/* Size of one conntrack entry in bytes (the target is <= 128). */
uint32_t ns_ct_entry_size(void);
uint64_t ns_pipeline_memory(const struct ns_pipeline *p);
/* Conntrack lookup by tuple (either direction), for tests: returns the state
 * number (see native/conntrack.h) or -1 when absent/expired. echo_reply: the tuple
 * is that of an ICMP echo reply. */
int ns_pipeline_ct_state(const struct ns_pipeline *p, uint16_t zone, const uint8_t *src16,
                         const uint8_t *dst16, uint16_t sport, uint16_t dport,
                         uint8_t proto, uint8_t echo_reply, uint64_t now_ns);
/* Commits a connection whose destination is translated to (xdst16, xport), as the
 * service mapper does for a connection to a Service: replies come back from
 * (xdst16, xport) and leave translated to (dst16, dport). For tests and for
 * restoring state; the packet path commits its own. 0, or -1 when full or when it
 * would clash with a live connection (conntrack_clash). */
int ns_pipeline_ct_commit_translated(struct ns_pipeline *p, uint16_t zone, const uint8_t *src16,
                                     const uint8_t *dst16, uint16_t sport, uint16_t dport,
                                     uint8_t proto, const uint8_t *xdst16, uint16_t xport,
                                     uint16_t in_port, uint64_t now_ns);
