/* netsem soft switch: AF_PACKET (TPACKET_V2/V3 RX ring, sendmmsg TX) and TAP
 * ports around ns_pipeline_run. See switch.h for the API.
 *
 * One wake-up: drain every port's ring round-robin into one contiguous batch
 * buffer (frames copied, ring slots released at once), one ns_pipeline_run,
 * then per result: FORWARD -> Ethernet rewrite (dst = pod MAC of the out port,
 * src = the switch port's MAC, i.e. the gateway), TTL/hop limit - 1, queue for
 * TX; LOCAL -> proxy ARP / neighbour advertisement written into a reply slot;
 * DROP -> counted. TX entries are grouped by port (counting sort) and sent with
 * one sendmmsg per port. No allocation after ns_switch_new / add_port.
 *
 * Why V2 is the default ring: a TPACKET_V3 block is handed to user space only
 * when it is full or its retire timer fires, and the timer has jiffy resolution
 * (4 ms at HZ=250), so every packet of a lightly loaded flow waits for it; V2
 * wakes per frame and still drains in batches under load. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
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

static const char *const counter_name[NS_SW_C_COUNT] = {
    "ttl_exceeded", "no_port", "no_neighbor", "oversize", "arp_replies",
    "nd_replies", "local_ignored", "wakeups", "batches", "captured", "capture_dropped",
};

struct sw_port {
    int fd;
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
    uint8_t *v3_pkt;       /* V3: next packet in the current block */
    struct ns_switch_port_stats st;
};

struct tx_ent {
    uint16_t slot;
    uint16_t len;
    uint8_t *data;
};

/* Capture ring: single producer (the hot path), single consumer (the owner, same
 * thread, between slices), so plain head/tail counters suffice. */
struct sw_capture {
    uint32_t slots;
    uint64_t head, tail;             /* head: next to write; tail: next to read */
    struct ns_switch_capture *rec;
    uint8_t *data;                   /* slots * NS_SW_FRAME_MAX */
};

struct ns_switch {
    struct ns_pipeline *p;
    uint32_t max_ports, nports, batch;
    uint32_t ring_version, ring_bytes, retire_ms;
    uint32_t rr;                     /* round-robin start for draining */
    volatile int stop;
    struct sw_port *ports;
    uint16_t slot_of[65536];         /* port number -> index in ports[] */
    struct pollfd *pfd;
    /* batch state, allocated once */
    uint8_t *buf;                    /* batch * NS_SW_FRAME_MAX */
    uint32_t *off;
    uint16_t *len;
    uint16_t *in_port;
    struct ns_result *res;
    uint8_t *reply;                  /* batch * SW_REPLY_MAX */
    struct tx_ent *tx, *tx_sorted;   /* batch entries each */
    uint32_t *tx_count;              /* per slot, max_ports + 1 */
    struct mmsghdr *msg;
    struct iovec *iov;
    uint64_t counter[NS_SW_C_COUNT];
    struct sw_capture cap;           /* slots == 0: capture off */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- capture ---- */

static void cap_free(struct sw_capture *c)
{
    free(c->rec);
    free(c->data);
    memset(c, 0, sizeof(*c));
}

int ns_switch_set_capture(struct ns_switch *sw, uint32_t frames)
{
    if (frames > (1u << 20))
        return -EINVAL;
    cap_free(&sw->cap);
    if (!frames)
        return 0;
    sw->cap.rec = calloc(frames, sizeof(*sw->cap.rec));
    sw->cap.data = malloc((size_t)frames * NS_SW_FRAME_MAX);
    if (!sw->cap.rec || !sw->cap.data) {
        cap_free(&sw->cap);
        return -ENOMEM;
    }
    sw->cap.slots = frames;
    return 0;
}

/* Copies one frame into the ring, or counts it as capture_dropped. */
static void cap_push(struct ns_switch *sw, uint16_t port, uint8_t dir, uint64_t ts_ns,
                     const uint8_t *data, uint32_t len, uint32_t wire_len)
{
    struct sw_capture *c = &sw->cap;
    if (c->head - c->tail >= c->slots) {
        sw->counter[NS_SW_C_CAPTURE_DROPPED]++;
        return;
    }
    uint32_t i = (uint32_t)(c->head % c->slots);
    if (len > NS_SW_FRAME_MAX)
        len = NS_SW_FRAME_MAX;
    memcpy(c->data + (size_t)i * NS_SW_FRAME_MAX, data, len);
    c->rec[i].ts_ns = ts_ns;
    c->rec[i].len = (uint16_t)len;
    c->rec[i].wire_len = (uint16_t)(wire_len > 65535 ? 65535 : wire_len);
    c->rec[i].port = port;
    c->rec[i].dir = dir;
    c->head++;
    sw->counter[NS_SW_C_CAPTURED]++;
}

uint32_t ns_switch_capture_read(struct ns_switch *sw, struct ns_switch_capture *recs, uint32_t max,
                                uint8_t *buf, uint32_t buf_len)
{
    struct sw_capture *c = &sw->cap;
    uint32_t n = 0, off = 0;
    while (n < max && c->tail < c->head) {
        uint32_t i = (uint32_t)(c->tail % c->slots);
        if (off + c->rec[i].len > buf_len)
            break;
        memcpy(buf + off, c->data + (size_t)i * NS_SW_FRAME_MAX, c->rec[i].len);
        recs[n] = c->rec[i];
        recs[n].off = off;
        off += c->rec[i].len;
        c->tail++;
        n++;
    }
    return n;
}

struct ns_switch *ns_switch_new(struct ns_pipeline *p, uint32_t max_ports, uint32_t batch)
{
    if (!p || max_ports == 0 || max_ports > 65535 || batch == 0 || batch > 4096)
        return NULL;
    struct ns_switch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return NULL;
    sw->p = p;
    sw->max_ports = max_ports;
    sw->batch = batch;
    sw->ring_version = NS_SW_RING_V2;
    sw->ring_bytes = 4u << 20;
    sw->retire_ms = 1;
    memset(sw->slot_of, 0xFF, sizeof(sw->slot_of));
    sw->ports = calloc(max_ports, sizeof(*sw->ports));
    sw->pfd = calloc(max_ports, sizeof(*sw->pfd));
    sw->buf = malloc((size_t)batch * NS_SW_FRAME_MAX);
    sw->off = calloc(batch, sizeof(*sw->off));
    sw->len = calloc(batch, sizeof(*sw->len));
    sw->in_port = calloc(batch, sizeof(*sw->in_port));
    sw->res = calloc(batch, sizeof(*sw->res));
    sw->reply = malloc((size_t)batch * SW_REPLY_MAX);
    sw->tx = calloc(batch, sizeof(*sw->tx));
    sw->tx_sorted = calloc(batch, sizeof(*sw->tx_sorted));
    sw->tx_count = calloc(max_ports + 1, sizeof(*sw->tx_count));
    sw->msg = calloc(batch, sizeof(*sw->msg));
    sw->iov = calloc(batch, sizeof(*sw->iov));
    if (!sw->ports || !sw->pfd || !sw->buf || !sw->off || !sw->len || !sw->in_port ||
        !sw->res || !sw->reply || !sw->tx || !sw->tx_sorted || !sw->tx_count || !sw->msg ||
        !sw->iov) {
        ns_switch_free(sw);
        return NULL;
    }
    for (uint32_t i = 0; i < batch; i++) {
        sw->off[i] = i * NS_SW_FRAME_MAX;
        sw->msg[i].msg_hdr.msg_iov = &sw->iov[i];
        sw->msg[i].msg_hdr.msg_iovlen = 1;
    }
    return sw;
}

void ns_switch_free(struct ns_switch *sw)
{
    if (!sw)
        return;
    for (uint32_t i = 0; i < sw->nports; i++) {
        struct sw_port *pt = &sw->ports[i];
        if (pt->ring)
            munmap(pt->ring, pt->ring_len);
        if (!pt->is_tap && pt->fd >= 0)
            close(pt->fd);
    }
    free(sw->ports);
    free(sw->pfd);
    free(sw->buf);
    free(sw->off);
    free(sw->len);
    free(sw->in_port);
    free(sw->res);
    free(sw->reply);
    free(sw->tx);
    free(sw->tx_sorted);
    free(sw->tx_count);
    free(sw->msg);
    free(sw->iov);
    cap_free(&sw->cap);
    free(sw);
}

int ns_switch_set_ring(struct ns_switch *sw, uint32_t version, uint32_t ring_bytes,
                       uint32_t retire_ms)
{
    if (version != NS_SW_RING_V2 && version != NS_SW_RING_V3)
        return -EINVAL;
    if (ring_bytes < (1u << 17) || ring_bytes > (1u << 30))
        return -EINVAL;
    sw->ring_version = version;
    sw->ring_bytes = ring_bytes;
    sw->retire_ms = retire_ms ? retire_ms : 1;
    return 0;
}

static int new_slot(struct ns_switch *sw, uint16_t port, const uint8_t *gw_mac,
                    const uint8_t *pod_mac, struct sw_port **out)
{
    if (port == NS_PORT_UNKNOWN || sw->slot_of[port] != SW_NO_SLOT)
        return -EEXIST;
    if (sw->nports >= sw->max_ports)
        return -ENOSPC;
    if (!gw_mac)
        return -EINVAL;
    struct sw_port *pt = &sw->ports[sw->nports];
    memset(pt, 0, sizeof(*pt));
    pt->fd = -1;
    pt->port = port;
    memcpy(pt->gw_mac, gw_mac, 6);
    if (pod_mac) {
        memcpy(pt->pod_mac, pod_mac, 6);
        pt->pod_mac_known = 1;
    }
    *out = pt;
    return 0;
}

static void commit_slot(struct ns_switch *sw, struct sw_port *pt)
{
    sw->pfd[sw->nports].fd = pt->fd;
    sw->pfd[sw->nports].events = POLLIN;
    sw->slot_of[pt->port] = (uint16_t)sw->nports;
    sw->nports++;
}

int ns_switch_add_port(struct ns_switch *sw, uint16_t port, const char *ifname,
                       const uint8_t *gw_mac, const uint8_t *pod_mac)
{
    struct sw_port *pt;
    int rc = new_slot(sw, port, gw_mac, pod_mac, &pt);
    if (rc)
        return rc;
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex)
        return -errno;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, ver = sw->ring_version == NS_SW_RING_V3 ? TPACKET_V3 : TPACKET_V2;
    int sndbuf = 4 << 20;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) < 0)
        goto fail;
    /* best effort: older kernels lack these; the switch still works without */
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

    size_t ring_len;
    if (ver == TPACKET_V2) {
        struct tpacket_req req = {0};
        req.tp_block_size = 1u << 16;
        req.tp_frame_size = SW_V2_FRAME;
        req.tp_block_nr = sw->ring_bytes / req.tp_block_size;
        req.tp_frame_nr = req.tp_block_nr * (req.tp_block_size / req.tp_frame_size);
        if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
            goto fail;
        pt->nslots = req.tp_frame_nr;
        pt->slot_size = req.tp_frame_size;
        ring_len = (size_t)req.tp_block_nr * req.tp_block_size;
    } else {
        struct tpacket_req3 req = {0};
        req.tp_block_size = SW_V3_BLOCK;
        req.tp_frame_size = SW_V2_FRAME;
        req.tp_block_nr = sw->ring_bytes / req.tp_block_size;
        req.tp_frame_nr = req.tp_block_nr * (req.tp_block_size / req.tp_frame_size);
        req.tp_retire_blk_tov = sw->retire_ms;
        if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
            goto fail;
        pt->nslots = req.tp_block_nr;
        pt->slot_size = req.tp_block_size;
        ring_len = (size_t)req.tp_block_nr * req.tp_block_size;
    }
    void *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED)
        ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED)
        goto fail;
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        int e = errno;
        munmap(ring, ring_len);
        close(fd);
        return -e;
    }
    pt->fd = fd;
    pt->ring = ring;
    pt->ring_len = ring_len;
    pt->version = ver == TPACKET_V3 ? NS_SW_RING_V3 : NS_SW_RING_V2;
    commit_slot(sw, pt);
    return 0;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

int ns_switch_add_tap(struct ns_switch *sw, uint16_t port, int fd, const uint8_t *gw_mac,
                      const uint8_t *pod_mac)
{
    struct sw_port *pt;
    int rc = new_slot(sw, port, gw_mac, pod_mac, &pt);
    if (rc)
        return rc;
    if (fd < 0)
        return -EBADF;
    pt->fd = fd;
    pt->is_tap = 1;
    commit_slot(sw, pt);
    return 0;
}

/* ---- RX: drain rings into the batch ---- */

/* Copies one frame into batch slot n; returns 1 if taken. */
static inline int take(struct ns_switch *sw, struct sw_port *pt, uint32_t n,
                       const uint8_t *data, uint32_t snaplen, uint32_t wirelen, uint64_t ts_ns)
{
    pt->st.rx_packets++;
    pt->st.rx_bytes += wirelen;
    if (NS_UNLIKELY(sw->cap.slots))
        cap_push(sw, pt->port, NS_SW_CAP_IN, ts_ns, data, snaplen, wirelen);
    if (NS_UNLIKELY(wirelen > NS_SW_FRAME_MAX || snaplen < wirelen)) {
        sw->counter[NS_SW_C_OVERSIZE]++;
        pt->st.drops++;
        return 0;
    }
    memcpy(sw->buf + sw->off[n], data, snaplen);
    sw->len[n] = (uint16_t)snaplen;
    sw->in_port[n] = pt->port;
    return 1;
}

static uint32_t drain_v2(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    while (n < sw->batch) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(pt->ring + (size_t)pt->cur * pt->slot_size);
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        n += take(sw, pt, n, (uint8_t *)h + h->tp_mac, h->tp_snaplen, h->tp_len,
                  (uint64_t)h->tp_sec * 1000000000ull + h->tp_nsec);
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        pt->cur = pt->cur + 1 == pt->nslots ? 0 : pt->cur + 1;
    }
    return n;
}

static uint32_t drain_v3(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    while (n < sw->batch) {
        struct tpacket_block_desc *bd =
            (struct tpacket_block_desc *)(pt->ring + (size_t)pt->cur * pt->slot_size);
        if (!pt->v3_pkt) {
            uint32_t status = __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
            if (!(status & TP_STATUS_USER))
                break;
            pt->v3_left = bd->hdr.bh1.num_pkts;
            pt->v3_pkt = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
        }
        while (pt->v3_left && n < sw->batch) {
            struct tpacket3_hdr *h = (struct tpacket3_hdr *)pt->v3_pkt;
            n += take(sw, pt, n, pt->v3_pkt + h->tp_mac, h->tp_snaplen, h->tp_len,
                      (uint64_t)h->tp_sec * 1000000000ull + h->tp_nsec);
            pt->v3_pkt += h->tp_next_offset;
            pt->v3_left--;
        }
        if (pt->v3_left)
            break;   /* batch full; resume in this block next time */
        pt->v3_pkt = NULL;
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        pt->cur = pt->cur + 1 == pt->nslots ? 0 : pt->cur + 1;
    }
    return n;
}

static uint32_t drain_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    while (n < sw->batch) {
        ssize_t r = read(pt->fd, sw->buf + sw->off[n], NS_SW_FRAME_MAX);
        if (r <= 0)
            break;
        pt->st.rx_packets++;
        pt->st.rx_bytes += (uint64_t)r;
        if (NS_UNLIKELY(sw->cap.slots))
            cap_push(sw, pt->port, NS_SW_CAP_IN, real_ns(), sw->buf + sw->off[n], (uint32_t)r,
                     (uint32_t)r);
        sw->len[n] = (uint16_t)r;
        sw->in_port[n] = pt->port;
        n++;
    }
    return n;
}

static uint32_t drain(struct ns_switch *sw)
{
    uint32_t n = 0, np = sw->nports;
    for (uint32_t k = 0; k < np && n < sw->batch; k++) {
        struct sw_port *pt = &sw->ports[(sw->rr + k) % np];
        if (pt->is_tap)
            n = drain_tap(sw, pt, n);
        else if (pt->version == NS_SW_RING_V3)
            n = drain_v3(sw, pt, n);
        else
            n = drain_v2(sw, pt, n);
    }
    if (np)
        sw->rr = (sw->rr + 1) % np;
    return n;
}

/* ---- actions ---- */

static inline void queue_tx(struct ns_switch *sw, uint32_t *ntx, uint16_t slot, uint8_t *data,
                            uint16_t len)
{
    struct tx_ent *e = &sw->tx[(*ntx)++];
    e->slot = slot;
    e->data = data;
    e->len = len;
}

static inline uint32_t l3_offset(const uint8_t *f, uint32_t len)
{
    if (len >= 18 && rd16(f + 12) == 0x8100)
        return 18;
    return 14;
}

static inline uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static inline uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i + 1 < len; i += 2)
        sum += rd16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

/* Returns 1 when the frame may go on (TTL/hop limit decremented), 0 to drop. */
static inline int decrement_ttl(uint8_t *f, uint32_t len, uint8_t family)
{
    uint32_t l3 = l3_offset(f, len);
    if (family == 4) {
        uint8_t *ip = f + l3;
        if (ip[8] <= 1)
            return 0;
        ip[8]--;
        /* RFC 1624 incremental update, as Linux ip_decrease_ttl: the TTL is the
         * high byte of its 16-bit word, so the sum drops by 0x0100. */
        uint32_t check = rd16(ip + 10) + 0x0100;
        check += check >= 0xFFFF;
        ip[10] = (uint8_t)(check >> 8);
        ip[11] = (uint8_t)check;
        return 1;
    }
    if (family == 6) {
        uint8_t *ip = f + l3;
        if (ip[7] <= 1)
            return 0;
        ip[7]--;
        return 1;
    }
    return 1;
}

static uint16_t arp_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                          int *ignored)
{
    uint32_t l3 = l3_offset(f, len);
    const uint8_t *a = f + l3;
    *ignored = 1;
    if (len < l3 + 28 || rd16(a) != 1 || rd16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4)
        return 0;
    if (rd16(a + 6) != 1)
        return 0;                      /* only requests */
    const uint8_t *sha = a + 8, *spa = a + 14, *tpa = a + 24;
    if (!memcmp(spa, "\0\0\0\0", 4) || !memcmp(spa, tpa, 4))
        return 0;                      /* probe or gratuitous: the address is the pod's own */
    if (sha[0] & 1)
        return 0;
    memcpy(pt->pod_mac, sha, 6);       /* learn the pod's MAC from its request */
    pt->pod_mac_known = 1;
    memcpy(out, sha, 6);
    memcpy(out + 6, pt->gw_mac, 6);
    out[12] = 0x08; out[13] = 0x06;
    uint8_t *r = out + 14;
    r[0] = 0; r[1] = 1; r[2] = 0x08; r[3] = 0; r[4] = 6; r[5] = 4; r[6] = 0; r[7] = 2;
    memcpy(r + 8, pt->gw_mac, 6);
    memcpy(r + 14, tpa, 4);
    memcpy(r + 18, sha, 6);
    memcpy(r + 24, spa, 4);
    memset(out + 42, 0, 18);           /* pad to the 60-byte minimum */
    *ignored = 0;
    return 60;
}

static uint16_t nd_reply(struct sw_port *pt, const uint8_t *f, uint32_t len, uint8_t *out,
                         int *ignored)
{
    static const uint8_t unspec[16] = {0};
    static const uint8_t gw6[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint32_t l3 = l3_offset(f, len);
    const uint8_t *ip = f + l3;
    *ignored = 1;
    if (len < l3 + 40 + 24 || ip[6] != 58)
        return 0;
    const uint8_t *icmp = ip + 40, *src = ip + 8, *target = icmp + 8;
    if (icmp[0] != 135)
        return 0;                      /* only neighbour solicitations */
    if (!memcmp(src, unspec, 16) || !memcmp(src, target, 16))
        return 0;                      /* DAD, or the pod's own address */
    if (f[6] & 1)
        return 0;
    memcpy(pt->pod_mac, f + 6, 6);
    pt->pod_mac_known = 1;
    memcpy(out, f + 6, 6);
    memcpy(out + 6, pt->gw_mac, 6);
    out[12] = 0x86; out[13] = 0xdd;
    uint8_t *o = out + 14;
    o[0] = 0x60; o[1] = 0; o[2] = 0; o[3] = 0;
    o[4] = 0; o[5] = 32;               /* payload: NA 24 + option 8 */
    o[6] = 58; o[7] = 255;
    memcpy(o + 8, target, 16);
    memcpy(o + 24, src, 16);
    uint8_t *na = o + 40;
    na[0] = 136; na[1] = 0; na[2] = 0; na[3] = 0;
    /* Router (the gateway only), Solicited, Override */
    na[4] = (uint8_t)(0x60 | (!memcmp(target, gw6, 16) ? 0x80 : 0));
    na[5] = na[6] = na[7] = 0;
    memcpy(na + 8, target, 16);
    na[24] = 2; na[25] = 1;            /* target link-layer address */
    memcpy(na + 26, pt->gw_mac, 6);
    uint32_t sum = csum_add(0, o + 8, 32);  /* pseudo-header: src, dst */
    sum += 32 + 58;                          /* upper-layer length, next header */
    sum = csum_add(sum, na, 32);
    uint16_t c = csum_fold(sum);
    na[2] = (uint8_t)(c >> 8);
    na[3] = (uint8_t)c;
    *ignored = 0;
    return 14 + 40 + 32;
}

static void transmit(struct ns_switch *sw, uint32_t ntx)
{
    if (!ntx)
        return;
    uint32_t np = sw->nports;
    memset(sw->tx_count, 0, (np + 1) * sizeof(*sw->tx_count));
    for (uint32_t i = 0; i < ntx; i++)
        sw->tx_count[sw->tx[i].slot + 1]++;
    for (uint32_t s = 1; s <= np; s++)
        sw->tx_count[s] += sw->tx_count[s - 1];
    /* tx_count[s] is now the start of slot s */
    for (uint32_t i = 0; i < ntx; i++)
        sw->tx_sorted[sw->tx_count[sw->tx[i].slot]++] = sw->tx[i];
    uint32_t start = 0;
    uint64_t cap_ts = sw->cap.slots ? real_ns() : 0;
    while (start < ntx) {
        uint16_t slot = sw->tx_sorted[start].slot;
        uint32_t end = start;
        while (end < ntx && sw->tx_sorted[end].slot == slot)
            end++;
        struct sw_port *pt = &sw->ports[slot];
        uint32_t cnt = end - start, sent = 0;
        uint64_t bytes = 0;
        if (pt->is_tap) {
            for (uint32_t i = start; i < end; i++) {
                if (write(pt->fd, sw->tx_sorted[i].data, sw->tx_sorted[i].len) > 0) {
                    if (NS_UNLIKELY(sw->cap.slots))
                        cap_push(sw, pt->port, NS_SW_CAP_OUT, cap_ts, sw->tx_sorted[i].data,
                                 sw->tx_sorted[i].len, sw->tx_sorted[i].len);
                    sent++;
                    bytes += sw->tx_sorted[i].len;
                }
            }
        } else {
            for (uint32_t i = 0; i < cnt; i++) {
                sw->iov[i].iov_base = sw->tx_sorted[start + i].data;
                sw->iov[i].iov_len = sw->tx_sorted[start + i].len;
            }
            while (sent < cnt) {
                int r = sendmmsg(pt->fd, sw->msg + sent, cnt - sent, MSG_DONTWAIT);
                if (r <= 0) {
                    if (r < 0 && errno == EINTR)
                        continue;
                    break;     /* ring/queue full or device error: counted below */
                }
                sent += (uint32_t)r;
            }
            for (uint32_t i = 0; i < sent; i++)
                bytes += sw->tx_sorted[start + i].len;
        }
        if (NS_UNLIKELY(sw->cap.slots) && !pt->is_tap) {
            /* sendmmsg sends a prefix of the batch: capture what went out */
            for (uint32_t i = start; i < start + sent; i++)
                cap_push(sw, pt->port, NS_SW_CAP_OUT, cap_ts, sw->tx_sorted[i].data,
                         sw->tx_sorted[i].len, sw->tx_sorted[i].len);
        }
        pt->st.tx_packets += sent;
        pt->st.tx_bytes += bytes;
        pt->st.tx_errors += cnt - sent;
        start = end;
    }
}

static void act(struct ns_switch *sw, uint32_t n)
{
    uint32_t ntx = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct ns_result *r = &sw->res[i];
        struct sw_port *in = &sw->ports[sw->slot_of[sw->in_port[i]]];
        uint8_t *f = sw->buf + sw->off[i];
        if (r->verdict == NS_FORWARD) {
            uint16_t slot = sw->slot_of[r->out_port];
            if (NS_UNLIKELY(slot == SW_NO_SLOT)) {
                sw->counter[NS_SW_C_NO_PORT]++;
                in->st.drops++;
                continue;
            }
            struct sw_port *out = &sw->ports[slot];
            if (NS_UNLIKELY(!out->pod_mac_known)) {
                sw->counter[NS_SW_C_NO_NEIGHBOR]++;
                in->st.drops++;
                continue;
            }
            if (NS_UNLIKELY(!decrement_ttl(f, sw->len[i], r->family))) {
                sw->counter[NS_SW_C_TTL_EXCEEDED]++;
                in->st.drops++;
                continue;
            }
            memcpy(f, out->pod_mac, 6);
            memcpy(f + 6, out->gw_mac, 6);
            queue_tx(sw, &ntx, slot, f, sw->len[i]);
        } else if (r->verdict == NS_LOCAL) {
            uint8_t *out = sw->reply + (size_t)i * SW_REPLY_MAX;
            uint16_t rl = 0;
            int ignored = 1;
            in->st.local++;
            if (r->reason == NS_R_ARP) {
                rl = arp_reply(in, f, sw->len[i], out, &ignored);
                if (rl)
                    sw->counter[NS_SW_C_ARP_REPLIES]++;
            } else if (r->reason == NS_R_NEIGHBOR_DISCOVERY) {
                rl = nd_reply(in, f, sw->len[i], out, &ignored);
                if (rl)
                    sw->counter[NS_SW_C_ND_REPLIES]++;
            }
            if (rl)
                queue_tx(sw, &ntx, sw->slot_of[in->port], out, rl);
            else if (ignored)
                sw->counter[NS_SW_C_LOCAL_IGNORED]++;
        } else {
            in->st.drops++;
        }
    }
    transmit(sw, ntx);
}

int ns_switch_poll(struct ns_switch *sw, int timeout_ms, uint64_t now_ns)
{
    uint32_t n = drain(sw);
    if (n == 0 && timeout_ms != 0) {
        int r = poll(sw->pfd, sw->nports, timeout_ms);
        if (r < 0)
            return errno == EINTR ? 0 : -errno;
        if (r == 0)
            return 0;
        n = drain(sw);
    }
    if (n == 0)
        return 0;
    sw->counter[NS_SW_C_WAKEUPS]++;
    sw->counter[NS_SW_C_BATCHES]++;
    ns_pipeline_run(sw->p, sw->buf, sw->off, sw->len, sw->in_port, n,
                    now_ns ? now_ns : mono_ns(), sw->res);
    act(sw, n);
    return (int)n;
}

int64_t ns_switch_run(struct ns_switch *sw, uint32_t duration_ms)
{
    uint64_t end = mono_ns() + (uint64_t)duration_ms * 1000000ull;
    int64_t total = 0;
    sw->stop = 0;
    for (;;) {
        uint64_t now = mono_ns();
        if (now >= end || sw->stop)
            break;
        uint64_t left_ms = (end - now + 999999) / 1000000;
        int r = ns_switch_poll(sw, (int)(left_ms > 50 ? 50 : left_ms), 0);
        if (r < 0)
            return r;
        total += r;
    }
    return total;
}

void ns_switch_stop(struct ns_switch *sw)
{
    sw->stop = 1;
}

int ns_switch_port_stats(struct ns_switch *sw, uint16_t port, struct ns_switch_port_stats *out)
{
    uint16_t slot = sw->slot_of[port];
    if (slot == SW_NO_SLOT)
        return -1;
    struct sw_port *pt = &sw->ports[slot];
    if (!pt->is_tap) {
        /* PACKET_STATISTICS resets on read: accumulate */
        struct tpacket_stats_v3 ts;
        socklen_t l = sizeof(ts);
        if (getsockopt(pt->fd, SOL_PACKET, PACKET_STATISTICS, &ts, &l) == 0)
            pt->st.ring_drops += ts.tp_drops;
    }
    *out = pt->st;
    return 0;
}

uint64_t ns_switch_counter(const struct ns_switch *sw, int counter)
{
    return (counter >= 0 && counter < NS_SW_C_COUNT) ? sw->counter[counter] : 0;
}

const char *ns_switch_counter_name(int counter)
{
    return (counter >= 0 && counter < NS_SW_C_COUNT) ? counter_name[counter] : NULL;
}

int ns_switch_pod_mac(const struct ns_switch *sw, uint16_t port, uint8_t *mac_out)
{
    uint16_t slot = sw->slot_of[port];
    if (slot == SW_NO_SLOT)
        return -1;
    memcpy(mac_out, sw->ports[slot].pod_mac, 6);
    return sw->ports[slot].pod_mac_known;
}
