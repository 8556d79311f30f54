/* AF_PACKET ports: a TPACKET_V2 (or V3) RX ring per port, sendmmsg for TX. */
#include "switch_int.h"
#include <linux/filter.h>

/* The port's sending socket: one of its own, bound with protocol 0 so that it
 * receives nothing. Sent on the receiving socket, every frame's buffer, freed in the
 * peer's softirq, would wake that socket's wait queue (sock_wfree ->
 * sk_write_space), where the switch's epoll entry sits: a locked wake-up per frame
 * (4-8 % of the switch's core in a profile). -errno or the fd. */
static int open_tx(const struct ns_switch *sw, unsigned ifindex)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, sndbuf = 4 << 20;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)ifindex};
    if ((sw->offload && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* best effort: older kernels lack it; the switch still works without */
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    return fd;
}

/* With offloads, a port's frames go to one of two rings by size (a classic BPF
 * filter on each socket): MTU-sized ones to the main ring of 2 KiB slots, super-
 * frames to a ring of 64 KiB slots. One ring of 64 KiB slots would hold 16 times
 * fewer small frames in the same memory, and a burst of them would overflow it. The
 * drain merges the two by arrival time, so a flow's order holds. big: this socket
 * takes the frames longer than SW_SMALL_MAX (else the others). */
static int size_filter(int fd, int big)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, SW_SMALL_MAX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, big ? 0xFFFFFFFFu : 0),
        BPF_STMT(BPF_RET | BPF_K, big ? 0 : 0xFFFFFFFFu),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

/* The super-frame ring (offloads, TPACKET_V2): its own socket, 64 KiB slots. */
static int open_big(struct ns_switch *sw, struct sw_port *pt, unsigned ifindex, uint16_t port)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, ver = TPACKET_V2;
    struct tpacket_req req = {.tp_block_size = 2 * SW_BIG_FRAME, .tp_frame_size = SW_BIG_FRAME,
                              .tp_block_nr = SW_BIG_RING / (2 * SW_BIG_FRAME),
                              .tp_frame_nr = SW_BIG_RING / SW_BIG_FRAME};
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)ifindex};
    int fanout = (int)((port & 0x7FFF) | 0x8000) | (PACKET_FANOUT_HASH << 16);
    void *ring = MAP_FAILED;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0 || size_filter(fd, 1) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        goto fail;
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    ring = mmap(NULL, SW_BIG_RING, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 ||
        (sw->shared && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) < 0))
        goto fail;
    pt->big_fd = fd;
    pt->big_ring = ring;
    return 0;
fail:;
    int e = errno;
    if (ring != MAP_FAILED)
        munmap(ring, SW_BIG_RING);
    close(fd);
    return -e;
}

int ns_switch_add_port(struct ns_switch *sw, uint16_t port, const char *ifname,
                       const uint8_t *gw_mac, const uint8_t *pod_mac)
{
    struct sw_port *pt;
    int rc = sw_new_slot(sw, port, gw_mac, pod_mac, &pt);
    if (rc)
        return rc;
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex)
        return -errno;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, ver = sw->ring_version == NS_SW_RING_V3 ? TPACKET_V3 : TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) < 0)
        goto fail;
    /* before the ring: the kernel refuses it on a socket that has one */
    if (sw->offload && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0)
        goto fail;
    /* best effort: older kernels lack it; the switch still works without */
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));

    size_t ring_len;
    if (ver == TPACKET_V2) {
        if (sw->offload && size_filter(fd, 0) < 0)
            goto fail;
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
        req.tp_block_size = sw->offload ? 4 * SW_BIG_FRAME : SW_V3_BLOCK;
        req.tp_frame_size = sw->offload ? SW_BIG_FRAME : SW_V2_FRAME;
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
    /* workers: the port's sockets share its fanout group (one id per port and ring) */
    int fanout = (int)(port & 0x7FFF) | (PACKET_FANOUT_HASH << 16), txfd = -1;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 ||
        (sw->shared && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) < 0)) {
        rc = -errno;
        goto unmap;
    }
    if ((txfd = open_tx(sw, ifindex)) < 0) {
        rc = txfd;
        goto unmap;
    }
    if (sw->offload && ver == TPACKET_V2 && (rc = open_big(sw, pt, ifindex, port)) < 0)
        goto unmap;
    pt->fd = fd;
    pt->txfd = txfd;
    pt->ring = ring;
    pt->ring_len = ring_len;
    pt->version = ver == TPACKET_V3 ? NS_SW_RING_V3 : NS_SW_RING_V2;
    if ((rc = sw_commit_slot(sw, pt)) == 0)
        return 0;
    sw_close_big(pt);
    pt->fd = pt->txfd = -1;
    pt->ring = NULL;
unmap:
    if (txfd >= 0)
        close(txfd);
    munmap(ring, ring_len);
    close(fd);
    return rc;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

/* Copies one frame into batch slot n; returns 1 if taken. With offloads, its
 * virtio-net header sits just before it in the ring. */
static inline int take(struct ns_switch *sw, struct sw_port *pt, uint32_t n,
                       const uint8_t *data, uint32_t snaplen, uint32_t wirelen, uint64_t ts_ns)
{
    pt->st.rx_packets++;
    pt->st.rx_bytes += wirelen;
    if (sw->offload) {
        memcpy(&sw->ol[n], data - sizeof(struct ns_offload), sizeof(struct ns_offload));
        sw->counter[NS_SW_C_SUPER_FRAMES] += sw->ol[n].gso_type != NS_GSO_NONE;
    }
    if (NS_UNLIKELY(sw->cap.slots))
        sw_cap_push(sw, pt->port, NS_SW_CAP_IN, ts_ns, data, snaplen, wirelen, n,
                    sw->offload ? &sw->ol[n] : NULL);
    if (NS_UNLIKELY(wirelen > sw_frame_max(sw) || snaplen < wirelen)) {
        sw->counter[NS_SW_C_OVERSIZE]++;
        pt->st.drops++;
        return 0;
    }
    sw->off[n] = sw_slot_for(sw, n, snaplen);
    memcpy(sw->buf + sw->off[n], data, snaplen);
    sw->len[n] = snaplen;
    sw->in_port[n] = pt->port;
    return 1;
}

/* A super-frame the batch has no room for stays in the ring until the next one. */
static inline int no_room(const struct ns_switch *sw, uint32_t snaplen)
{
    return snaplen > NS_SW_FRAME_MAX && sw->big_used >= NS_SW_BIG_SLOTS;
}

static inline struct tpacket2_hdr *v2_head(uint8_t *ring, uint32_t cur, uint32_t slot_size)
{
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ring + (size_t)cur * slot_size);
    return (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) ? h : NULL;
}

static inline int v2_before(const struct tpacket2_hdr *a, const struct tpacket2_hdr *b)
{
    return a->tp_sec < b->tp_sec || (a->tp_sec == b->tp_sec && a->tp_nsec <= b->tp_nsec);
}

/* The main ring, merged by arrival time with the super-frame ring if there is one. */
static uint32_t drain_v2(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    const uint32_t big_slots = SW_BIG_RING / SW_BIG_FRAME;
    while (n < sw->batch) {
        struct tpacket2_hdr *h = v2_head(pt->ring, pt->cur, pt->slot_size);
        struct tpacket2_hdr *b = pt->big_ring ? v2_head(pt->big_ring, pt->big_cur, SW_BIG_FRAME) : NULL;
        const int big = b && (!h || v2_before(b, h));
        if (big)
            h = b;
        if (!h || NS_UNLIKELY(no_room(sw, h->tp_snaplen)))
            break;
        n += take(sw, pt, n, (uint8_t *)h + h->tp_mac, h->tp_snaplen, h->tp_len,
                  (uint64_t)h->tp_sec * 1000000000ull + h->tp_nsec);
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        if (big)
            pt->big_cur = pt->big_cur + 1 == big_slots ? 0 : pt->big_cur + 1;
        else
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
            if (NS_UNLIKELY(no_room(sw, h->tp_snaplen)))
                break;
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

void sw_close_big(struct sw_port *pt)
{
    if (pt->big_ring)
        munmap(pt->big_ring, SW_BIG_RING);
    if (pt->big_fd >= 0)
        close(pt->big_fd);
    pt->big_ring = NULL;
    pt->big_fd = -1;
}

int sw_big_ready(const struct sw_port *pt)
{
    return pt->big_ring && v2_head(pt->big_ring, pt->big_cur, SW_BIG_FRAME) != NULL;
}

uint32_t sw_drain_packet(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    return pt->version == NS_SW_RING_V3 ? drain_v3(sw, pt, n) : drain_v2(sw, pt, n);
}

uint32_t sw_send_packet(struct ns_switch *sw, struct sw_port *pt, uint32_t start, uint32_t end)
{
    uint32_t cnt = end - start, sent = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        const struct tx_ent *t = &sw->tx_sorted[start + i];
        struct iovec *v = &sw->iov[2 * i];
        if (sw->offload) {      /* the virtio-net header goes first */
            v->iov_base = (void *)t->ol;
            v->iov_len = sizeof(struct ns_offload);
            v++;
        }
        v->iov_base = t->data;
        v->iov_len = t->len;
    }
    while (sent < cnt) {
        int r = sendmmsg(pt->txfd, sw->msg + sent, cnt - sent, MSG_DONTWAIT);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;     /* ring/queue full or device error: the caller counts it */
        }
        sent += (uint32_t)r;
    }
    return sent;
}
