/* The soft switch's private parts, shared by its files (native/switch.c: the loop
 * and actions; io_packet.c: AF_PACKET ports; io_tap.c: TAP ports; switch_local.c:
 * proxy ARP/ND and TTL; capture.c: the capture ring). Public API: switch.h. */
#ifndef NS_SWITCH_INT_H
#define NS_SWITCH_INT_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "nsint.h"
#include "reasons.h"
#include "switch.h"

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define SW_NO_SLOT 0xFFFF
#define SW_REPLY_MAX 128       /* room for one ARP / NA reply */
#define SW_V2_FRAME 2048       /* TPACKET_V2 frame size (header + NS_SW_FRAME_MAX data) */
#define SW_V3_BLOCK (1u << 17) /* 128 KiB blocks */
#define SW_BIG_FRAME (1u << 16) /* ring frame and batch slot of a super-frame (offloads on):
                                 * room for a 64 KB GSO frame after the ring's headers */
#define SW_EP_EVENTS 256       /* epoll events taken per wait */
#define SW_SMALL_MAX 1600      /* offloads: frames up to this go to the 2 KiB-slot ring */
#define SW_BIG_RING (4u << 20) /* offloads: the super-frame ring, 64 slots of 64 KiB */

struct sw_port {
    int fd;                /* receives (the RX ring; TAP: both ways) */
    int txfd;              /* AF_PACKET: sends (a socket of its own); -1 for TAP */
    int is_tap;
    uint16_t port;
    uint8_t gw_mac[6];
    uint8_t pod_mac[6];
    int pod_mac_known;
    /* RX ring (AF_PACKET only) */
    uint8_t *ring;
    size_t ring_len;
    uint32_t version;
    uint32_t nslots;       /* V2 frames or V3 blocks */
    uint32_t slot_size;
    uint32_t cur;          /* next V2 frame / current V3 block */
    uint32_t v3_left;      /* V3: packets left in the current block (0: not opened) */
    uint8_t pending;       /* on the pending list: may hold frames */
    /* offloads (TPACKET_V2): the super-frame ring, on a socket of its own */
    int big_fd;
    uint8_t *big_ring;
    uint32_t big_cur;
    uint8_t *v3_pkt;       /* V3: next packet in the current block */
    struct ns_switch_port_stats st;
};

struct tx_ent {
    uint16_t slot;
    uint16_t pad;
    uint32_t len;
    uint8_t *data;
    const struct ns_offload *ol;   /* its virtio-net header (offloads on) */
};

/* Capture ring: single producer (the hot path), single consumer (the owner, same
 * thread, between slices), so plain head/tail counters suffice. */
struct sw_capture {
    uint32_t slots;
    uint64_t head, tail;             /* head: next to write; tail: next to read */
    struct ns_switch_capture *rec;
    uint8_t *data;                   /* slots * NS_SW_FRAME_MAX */
    uint64_t *batch_seq;             /* [batch]: the IN record of each batch frame, or
                                      * UINT64_MAX; its verdict is written there */
};

/* The pipeline lock workers share; freed by the last switch that holds it. */
struct sw_shared {
    pthread_mutex_t mu;
    int refs;
};

#define SW_WAKE_EVENT 0x10000u   /* epoll data of the wake-up eventfd (ports are 16-bit) */

struct ns_switch {
    struct ns_pipeline *p;
    struct sw_shared *shared;        /* workers: the pipeline lock (NULL: one switch) */
    int wakefd;                      /* eventfd: ns_switch_stop wakes a sleeping epoll_wait */
    uint32_t max_ports, nports, batch;
    uint32_t ring_version, ring_bytes, retire_ms;
    uint32_t rr;                     /* round-robin start for draining */
    volatile int stop;
    struct sw_port *ports;
    uint16_t slot_of[65536];         /* port number -> index in ports[] */
    int epfd;                        /* every port's fd; data = port number */
    struct epoll_event *evs;         /* SW_EP_EVENTS */
    uint16_t *pending;               /* ports that may hold frames (max_ports) */
    uint16_t *still;                 /* drain's scratch: those it left pending (max_ports) */
    uint32_t npending;
    int offload;                     /* virtio-net headers on every port */
    uint32_t busy_us;                /* spin this long without frames before sleeping */
    uint64_t last_frame_ns;          /* busy poll: when frames last came */
    uint32_t busy_rounds;            /* wake-ups that found ports pending */
    uint32_t coalesce_us, coalesce_min;  /* interrupt moderation (ns_switch_set_coalesce) */
    uint32_t big_used;               /* super-frame slots taken in this batch */
    uint32_t cursor_small;           /* next small slot */
    /* batch state, allocated once */
    uint8_t *buf;                    /* batch * NS_SW_FRAME_MAX small slots, then
                                      * NS_SW_BIG_SLOTS * SW_BIG_FRAME (offloads on) */
    struct ns_offload *ol;           /* [batch] each frame's virtio-net header */
    uint32_t *off;
    uint32_t *len;
    uint16_t *in_port;
    struct ns_result *res;
    uint8_t *reply;                  /* batch * SW_REPLY_MAX */
    struct tx_ent *tx, *tx_sorted;   /* batch entries each */
    uint32_t *tx_count;              /* per slot, max_ports + 1 */
    struct mmsghdr *msg;
    struct iovec *iov;               /* 2 per message: virtio-net header, frame */
    uint64_t counter[NS_SW_C_COUNT];
    struct sw_capture cap;           /* slots == 0: capture off */
};

/* switch.c */
uint64_t sw_mono_ns(void);
uint64_t sw_real_ns(void);
int sw_new_slot(struct ns_switch *sw, uint16_t port, const uint8_t *gw_mac,
                const uint8_t *pod_mac, struct sw_port **out);
/* Watches the port (epoll) and takes it into the tables. 0 or -errno. */
int sw_commit_slot(struct ns_switch *sw, struct sw_port *pt);
/* After the pipeline ran the batch's n frames: rewrite, answer, transmit. */
void sw_act(struct ns_switch *sw, uint32_t n);
/* io_packet.c: drain an AF_PACKET ring into the batch from slot n (returns the new
 * n); send frames [start, end) of tx_sorted on a port (returns how many went). */
uint32_t sw_drain_packet(struct ns_switch *sw, struct sw_port *pt, uint32_t n);
uint32_t sw_send_packet(struct ns_switch *sw, struct sw_port *pt, uint32_t start, uint32_t end);
void sw_close_big(struct sw_port *pt);
int sw_big_ready(const struct sw_port *pt);
/* Where batch frame n of `bytes` goes: its offset in buf, or UINT32_MAX when the
 * batch has no room for it (a super-frame past NS_SW_BIG_SLOTS: it waits). */
uint32_t sw_slot_for(struct ns_switch *sw, uint32_t n, uint32_t bytes);
/* The largest frame a port carries: NS_SW_FRAME_MAX, or NS_FRAME_MAX with offloads. */
static inline uint32_t sw_frame_max(const struct ns_switch *sw)
{
    return sw->offload ? NS_FRAME_MAX : NS_SW_FRAME_MAX;
}
/* io_tap.c: the same for TAP ports. */
uint32_t sw_drain_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t n);
uint32_t sw_send_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t start, uint32_t end);
/* switch_local.c */
uint32_t sw_l3_offset(const uint8_t *f, uint32_t len);
int sw_decrement_ttl(uint8_t *f, uint32_t len, uint8_t family);
uint16_t sw_arp_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                      int *ignored);
uint16_t sw_nd_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                     int *ignored);
uint16_t sw_reject(struct sw_port *pt, const uint8_t *f, uint32_t len, const struct ns_result *r,
                   uint8_t *out);
/* capture.c */
void sw_cap_free(struct sw_capture *c);
/* batch_slot: the batch frame an IN record is (UINT32_MAX for OUT). */
void sw_cap_push(struct ns_switch *sw, uint16_t port, uint8_t dir, uint64_t ts_ns,
                 const uint8_t *data, uint32_t len, uint32_t wire_len, uint32_t batch_slot,
                 const struct ns_offload *ol);
/* After the pipeline ran the batch's n frames: their IN records get the verdicts. */
void sw_cap_judged(struct ns_switch *sw, uint32_t n);

#endif
