/* netsem soft switch: packet I/O around the pipeline (native/switch.c).
 * Public API in the cdef() subset (plain structs, enums, prototypes, integer
 * #defines; no #include or #ifdef): build_ffi.py feeds it to cdef() after
 * netsem.h. One wake-up = drain the ports epoll says have frames into one batch,
 * one pipeline run, then rewrite and transmit (or answer ARP/ND locally).
 * Files: switch.c (ports, actions), switch_wake.c (wake-ups, workers), io_packet.c,
 * io_tap.c, switch_local.c, capture.c.
 * The switch never prints; everything it does is counted. */

#define NS_SW_RING_V2 2      /* TPACKET_V2: one wake-up per frame at low load */
#define NS_SW_RING_V3 3      /* TPACKET_V3: block ring, woken per retired block */
#define NS_SW_FRAME_MAX 2048 /* largest frame carried without offloads (MTU 1500 + headers);
                              * with them, GSO super-frames up to NS_FRAME_MAX */
#define NS_SW_BIG_SLOTS 64   /* super-frames one batch holds (64 KiB each) */

/* Per-port counters. rx_* counts frames taken from the port; drops = frames that
 * arrived on the port and were dropped (pipeline reason or switch counter);
 * tx_errors = frames the kernel refused to send on this port. */
struct ns_switch_port_stats {
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t tx_errors;
    uint64_t drops;
    uint64_t local;          /* ARP / neighbour discovery taken by the switch */
    uint64_t ring_drops;     /* frames the kernel dropped because the RX ring was full */
};

/* Switch-level counters (reasons of the switch itself, after the pipeline). */
enum ns_switch_counter {
    NS_SW_C_TTL_EXCEEDED = 0,   /* forwarded IPv4 TTL / IPv6 hop limit would reach 0 */
    NS_SW_C_NO_PORT,            /* pipeline chose a port the switch has no device for */
    NS_SW_C_NO_NEIGHBOR,        /* out port's pod MAC not known yet */
    NS_SW_C_OVERSIZE,           /* frame larger than NS_SW_FRAME_MAX (truncated in ring) */
    NS_SW_C_ARP_REPLIES,        /* proxy ARP answers sent */
    NS_SW_C_ND_REPLIES,         /* neighbour advertisements sent */
    NS_SW_C_LOCAL_IGNORED,      /* ARP/ND the switch does not answer (replies, DAD, RS...) */
    NS_SW_C_WAKEUPS,            /* poll() returns with work */
    NS_SW_C_BATCHES,            /* ns_pipeline_run calls */
    NS_SW_C_CAPTURED,           /* frames copied into the capture ring (in + out) */
    NS_SW_C_CAPTURE_DROPPED,    /* frames not captured because the capture ring was full */
    NS_SW_C_REWRITE_FAILED,     /* a translated frame ns_rewrite_frame could not rewrite */
    NS_SW_C_REJECTS,            /* TCP resets / ICMP port unreachables for service_no_backend */
    NS_SW_C_PORT_ERRORS,        /* errors a port's socket reported: its device went down or away */
    NS_SW_C_SUPER_FRAMES,       /* GSO super-frames received (offloads on) */
    NS_SW_C_SLEEPS,             /* epoll_wait calls that blocked (no port had frames) */
    NS_SW_C_COUNT
};

struct ns_switch;

/* p: the pipeline (not owned). max_ports: number of ports that can be added.
 * batch: frames per pipeline call (1..4096). NULL on bad arguments or no memory. */
struct ns_switch *ns_switch_new(struct ns_pipeline *p, uint32_t max_ports, uint32_t batch);
void ns_switch_free(struct ns_switch *sw);
/* Ring layout for ports added afterwards: version NS_SW_RING_V2 or _V3,
 * ring_bytes per port (rounded to blocks), retire_ms for V3 blocks.
 * Default: V2, 4 MiB. 0 or -EINVAL. */
int ns_switch_set_ring(struct ns_switch *sw, uint32_t version, uint32_t ring_bytes,
                       uint32_t retire_ms);
/* Offloads (before any port is added): on != 0 carries virtio-net headers on every
 * port (PACKET_VNET_HDR; TAP fds must be opened with IFF_VNET_HDR), so pods keep
 * TSO, GSO and checksum offload: GSO super-frames (up to 64 KB) and partial
 * checksums are received, judged once per super-frame, and sent on as they are;
 * the kernel segments only where it must. AF_PACKET rings then hold 64 KiB frames.
 * 0, or -EBUSY once ports exist. */
int ns_switch_set_offload(struct ns_switch *sw, int on);
/* Wake-ups: busy_us > 0 spins on the rings (no system call while frames come) and
 * sleeps in epoll_wait only after busy_us microseconds without a frame (the bounded
 * idle back-off); 0 (default) sleeps whenever no port has frames. */
void ns_switch_set_busy_poll(struct ns_switch *sw, uint32_t busy_us);
/* Interrupt moderation (without busy poll): after a batch of at least min_frames
 * (0: 8) that did not fill, sleep us microseconds (at most 1000; 0: off, the
 * default) so that frames gather; a few frames never wait. */
void ns_switch_set_coalesce(struct ns_switch *sw, uint32_t us, uint32_t min_frames);
/* Workers: more switches over the same pipeline, each run by a thread of its own
 * (before any port is added). ns_switch_set_workers(sw, leader) makes sw one of
 * leader's workers (leader == sw: the first). Every worker opens its own socket on
 * each port, in the port's PACKET_FANOUT group (the kernel's symmetric flow hash: a
 * flow's packets stay on one worker, in order); the pipeline (tables, conntrack,
 * events) is shared and a lock serializes its batches, while receiving, rewriting
 * and sending run in parallel. AF_PACKET ports only. 0, -EBUSY (ports exist),
 * -EINVAL, -ENOMEM. */
int ns_switch_set_workers(struct ns_switch *sw, struct ns_switch *leader);
/* The pipeline lock (no-op without workers): hold it to swap tables, drain events
 * or read the pipeline while workers run. */
void ns_switch_lock(struct ns_switch *sw);
void ns_switch_unlock(struct ns_switch *sw);
/* Adds an AF_PACKET port bound to ifname, in the network namespace of the
 * calling thread (the caller enters the switch namespace first). gw_mac: the MAC
 * the switch answers with on this port (the device's own); pod_mac: the pod's MAC
 * (NULL: learned from its ARP / neighbour solicitations). 0 or -errno. */
int ns_switch_add_port(struct ns_switch *sw, uint16_t port, const char *ifname,
                       const uint8_t *gw_mac, const uint8_t *pod_mac);
/* Adds a TAP port: fd is an open TAP device (IFF_TAP | IFF_NO_PI); the switch
 * does not close it. 0 or -errno. */
int ns_switch_add_tap(struct ns_switch *sw, uint16_t port, int fd,
                      const uint8_t *gw_mac, const uint8_t *pod_mac);
/* Removes a port between two runs (a pod that went): its ring is unmapped and its
 * AF_PACKET socket closed (a TAP fd stays the caller's); the last port takes its
 * slot. 0 or -ENOENT. */
int ns_switch_remove_port(struct ns_switch *sw, uint16_t port);
/* One wake-up: drain what is ready (waiting up to timeout_ms for the first frame),
 * run it through the pipeline, act on the results. now_ns = 0 reads
 * CLOCK_MONOTONIC once per wake-up. Returns frames processed, or -errno. */
int ns_switch_poll(struct ns_switch *sw, int timeout_ms, uint64_t now_ns);
/* Wake-ups until duration_ms has passed or ns_switch_stop() was called.
 * Returns frames processed, or -errno. Call from one thread only. */
int64_t ns_switch_run(struct ns_switch *sw, uint32_t duration_ms);
void ns_switch_stop(struct ns_switch *sw);
/* Capture (netsem up --pcap): when enabled, every frame taken from a port
 * (NS_SW_CAP_IN, as received, before the pipeline) and every frame sent on a port
 * (NS_SW_CAP_OUT, as sent, including proxy ARP/ND answers) is copied into a bounded
 * ring of `frames` slots of NS_SW_FRAME_MAX bytes. The hot path never waits for
 * it: a frame that finds the ring full is counted as NS_SW_C_CAPTURE_DROPPED.
 * The owner drains the ring between ns_switch_run slices, from the same thread. */
#define NS_SW_CAP_IN 1       /* entered the switch on `port` (pcapng epb_flags inbound) */
#define NS_SW_CAP_OUT 2      /* left the switch on `port` (pcapng epb_flags outbound) */

struct ns_switch_capture {
    uint64_t ts_ns;          /* CLOCK_REALTIME: RX ring timestamp for IN, send time for OUT */
    uint32_t off;            /* where the frame starts in the caller's buffer */
    uint32_t wire_len;       /* bytes on the wire (> len for oversize frames and for
                              * super-frames: at most NS_SW_FRAME_MAX bytes are kept) */
    uint16_t len;            /* bytes captured */
    uint16_t port;
    uint8_t dir;             /* NS_SW_CAP_IN or NS_SW_CAP_OUT */
    uint8_t reason;          /* IN: the pipeline's reason (enum ns_reason), or
                              * NS_SW_CAP_NOT_JUDGED (the switch dropped it first) */
    uint32_t generation;     /* IN, judged: the table set in force when it was */
    struct ns_offload ol;    /* its virtio-net header (offloads on; else zero) */
};
#define NS_SW_CAP_NOT_JUDGED 0xFF

/* frames = 0 disables capture and frees the ring; otherwise (re)allocates it
 * empty. 0 or -ENOMEM / -EINVAL (frames > 1 << 20). */
int ns_switch_set_capture(struct ns_switch *sw, uint32_t frames);
/* Moves up to max records (oldest first) out of the ring: frame bytes are copied
 * to buf (at recs[i].off), stopping early when buf_len is reached. Returns the
 * number of records written. */
uint32_t ns_switch_capture_read(struct ns_switch *sw, struct ns_switch_capture *recs, uint32_t max,
                                uint8_t *buf, uint32_t buf_len);

/* Counters: 0, or -1 for an unknown port. */
int ns_switch_port_stats(struct ns_switch *sw, uint16_t port, struct ns_switch_port_stats *out);
uint64_t ns_switch_counter(const struct ns_switch *sw, int counter);
const char *ns_switch_counter_name(int counter);
/* Pod MAC of a port as last learned (6 bytes); 1 if known, 0 if not, -1 no port. */
int ns_switch_pod_mac(const struct ns_switch *sw, uint16_t port, uint8_t *mac_out);
