/* netsem soft switch: AF_PACKET (TPACKET_V2/V3 RX ring, sendmmsg TX) and TAP
 * ports around ns_pipeline_run. See switch.h for the API.
 *
 * One wake-up (switch_wake.c: epoll, the pending list, busy poll, workers): drain
 * the ports that have frames, round-robin, into one batch buffer (frames copied,
 * ring slots released at once; super-frames into 64 KiB slots), one pipeline run,
 * then per result: FORWARD -> the translation the result names (ns_rewrite_frame),
 * Ethernet rewrite (dst = pod MAC of the out port, src = the switch port's MAC,
 * i.e. the gateway), TTL/hop limit - 1, queue for TX; LOCAL -> proxy ARP /
 * neighbour advertisement written into a reply slot; DROP -> counted. TX entries
 * are grouped by port (counting sort) and sent with one sendmmsg per port. No
 * allocation after ns_switch_new / add_port.
 *
 * Why V2 is the default ring: a TPACKET_V3 block is handed to user space only
 * when it is full or its retire timer fires, and the timer has jiffy resolution
 * (4 ms at HZ=250), so every packet of a lightly loaded flow waits for it; V2
 * wakes per frame and still drains in batches under load. */
#include "switch_int.h"

static const char *const counter_name[NS_SW_C_COUNT] = {
    "ttl_exceeded", "no_port", "no_neighbor", "oversize", "arp_replies",
    "nd_replies", "local_ignored", "wakeups", "batches", "captured", "capture_dropped",
    "rewrite_failed", "rejects", "port_errors", "super_frames", "sleeps",
};

uint64_t sw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sw_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
    sw->epfd = epoll_create1(EPOLL_CLOEXEC);
    sw->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sw->ports = calloc(max_ports, sizeof(*sw->ports));
    sw->evs = calloc(SW_EP_EVENTS, sizeof(*sw->evs));
    sw->pending = calloc(max_ports, sizeof(*sw->pending));
    sw->still = calloc(max_ports, sizeof(*sw->still));
    sw->buf = malloc((size_t)batch * NS_SW_FRAME_MAX);
    sw->ol = calloc(batch, sizeof(*sw->ol));
    sw->off = calloc(batch, sizeof(*sw->off));
    sw->len = calloc(batch, sizeof(*sw->len));
    sw->in_port = calloc(batch, sizeof(*sw->in_port));
    sw->res = calloc(batch, sizeof(*sw->res));
    sw->reply = malloc((size_t)batch * SW_REPLY_MAX);
    sw->tx = calloc(batch, sizeof(*sw->tx));
    sw->tx_sorted = calloc(batch, sizeof(*sw->tx_sorted));
    sw->tx_count = calloc(max_ports + 1, sizeof(*sw->tx_count));
    sw->msg = calloc(batch, sizeof(*sw->msg));
    sw->iov = calloc(2 * (size_t)batch, sizeof(*sw->iov));
    struct epoll_event wake = {.events = EPOLLIN, .data.u32 = SW_WAKE_EVENT};
    if (sw->epfd < 0 || sw->wakefd < 0 || epoll_ctl(sw->epfd, EPOLL_CTL_ADD, sw->wakefd, &wake) < 0 || !sw->ports || !sw->evs || !sw->pending || !sw->still || !sw->buf || !sw->ol || !sw->off ||
        !sw->len || !sw->in_port || !sw->res || !sw->reply || !sw->tx || !sw->tx_sorted ||
        !sw->tx_count || !sw->msg || !sw->iov) {
        ns_switch_free(sw);
        return NULL;
    }
    for (uint32_t i = 0; i < batch; i++) {
        sw->off[i] = i * NS_SW_FRAME_MAX;
        sw->msg[i].msg_hdr.msg_iov = &sw->iov[2 * i];
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
        if (pt->txfd >= 0)
            close(pt->txfd);
        sw_close_big(pt);
    }
    if (sw->epfd >= 0)
        close(sw->epfd);
    if (sw->wakefd >= 0)
        close(sw->wakefd);
    if (sw->shared && __atomic_sub_fetch(&sw->shared->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&sw->shared->mu);
        free(sw->shared);
    }
    free(sw->ports);
    free(sw->evs);
    free(sw->pending);
    free(sw->still);
    free(sw->buf);
    free(sw->ol);
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
    sw_cap_free(&sw->cap);
    free(sw);
}

int ns_switch_remove_port(struct ns_switch *sw, uint16_t port)
{
    if (!sw || port == NS_PORT_UNKNOWN || sw->slot_of[port] == SW_NO_SLOT)
        return -ENOENT;
    const uint32_t i = sw->slot_of[port], last = sw->nports - 1;
    struct sw_port *pt = &sw->ports[i];
    if (pt->fd >= 0)
        epoll_ctl(sw->epfd, EPOLL_CTL_DEL, pt->fd, NULL);   /* a TAP fd outlives the port */
    sw_close_big(pt);
    for (uint32_t k = 0; k < sw->npending; k++)
        if (sw->pending[k] == port)
            sw->pending[k--] = sw->pending[--sw->npending];
    if (pt->ring)
        munmap(pt->ring, pt->ring_len);
    if (!pt->is_tap && pt->fd >= 0)
        close(pt->fd);
    if (pt->txfd >= 0)
        close(pt->txfd);
    sw->slot_of[port] = SW_NO_SLOT;
    if (i != last) {                  /* the last slot moves in: slots stay dense */
        sw->ports[i] = sw->ports[last];
        sw->slot_of[sw->ports[i].port] = (uint16_t)i;
    }
    sw->nports--;
    sw->rr = 0;
    return 0;
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

int sw_new_slot(struct ns_switch *sw, uint16_t port, const uint8_t *gw_mac,
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
    pt->fd = pt->txfd = pt->big_fd = -1;
    pt->port = port;
    memcpy(pt->gw_mac, gw_mac, 6);
    if (pod_mac) {
        memcpy(pt->pod_mac, pod_mac, 6);
        pt->pod_mac_known = 1;
    }
    *out = pt;
    return 0;
}

int sw_commit_slot(struct ns_switch *sw, struct sw_port *pt)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = pt->port};
    if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, pt->fd, &ev) < 0 ||
        (pt->big_fd >= 0 && epoll_ctl(sw->epfd, EPOLL_CTL_ADD, pt->big_fd, &ev) < 0)) {
        int e = errno;
        epoll_ctl(sw->epfd, EPOLL_CTL_DEL, pt->fd, NULL);
        return -e;
    }
    sw->slot_of[pt->port] = (uint16_t)sw->nports;
    sw->nports++;
    sw->pending[sw->npending++] = pt->port;   /* frames may have come before it was watched */
    pt->pending = 1;
    return 0;
}

int ns_switch_set_offload(struct ns_switch *sw, int on)
{
    if (sw->nports)
        return -EBUSY;
    if (on && !sw->offload) {
        uint8_t *b = realloc(sw->buf, (size_t)sw->batch * NS_SW_FRAME_MAX +
                                      (size_t)NS_SW_BIG_SLOTS * SW_BIG_FRAME);
        if (!b)
            return -ENOMEM;
        sw->buf = b;
    }
    sw->offload = !!on;
    for (uint32_t i = 0; i < sw->batch; i++)
        sw->msg[i].msg_hdr.msg_iovlen = on ? 2 : 1;
    return 0;
}

uint32_t sw_slot_for(struct ns_switch *sw, uint32_t n, uint32_t bytes)
{
    if (bytes <= NS_SW_FRAME_MAX)
        return n * NS_SW_FRAME_MAX;
    if (!sw->offload || sw->big_used >= NS_SW_BIG_SLOTS)
        return UINT32_MAX;
    return sw->batch * NS_SW_FRAME_MAX + sw->big_used++ * SW_BIG_FRAME;
}

/* ---- actions ---- */

static const struct ns_offload no_offload;   /* the switch's own frames: complete */

static inline void queue_tx(struct ns_switch *sw, uint32_t *ntx, uint16_t slot, uint8_t *data,
                            uint32_t len, const struct ns_offload *ol)
{
    struct tx_ent *e = &sw->tx[(*ntx)++];
    e->slot = slot;
    e->data = data;
    e->len = len;
    e->ol = ol;
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
    uint64_t cap_ts = sw->cap.slots ? sw_real_ns() : 0;
    while (start < ntx) {
        uint16_t slot = sw->tx_sorted[start].slot;
        uint32_t end = start;
        while (end < ntx && sw->tx_sorted[end].slot == slot)
            end++;
        struct sw_port *pt = &sw->ports[slot];
        uint32_t sent = pt->is_tap ? sw_send_tap(sw, pt, start, end) : sw_send_packet(sw, pt, start, end);
        uint64_t bytes = 0;
        for (uint32_t i = start; i < start + sent; i++) {
            bytes += sw->tx_sorted[i].len;
            if (NS_UNLIKELY(sw->cap.slots))   /* what went out, as it went */
                sw_cap_push(sw, pt->port, NS_SW_CAP_OUT, cap_ts, sw->tx_sorted[i].data,
                            sw->tx_sorted[i].len, sw->tx_sorted[i].len, UINT32_MAX,
                            sw->offload ? sw->tx_sorted[i].ol : NULL);
        }
        pt->st.tx_packets += sent;
        pt->st.tx_bytes += bytes;
        pt->st.tx_errors += end - start - sent;
        start = end;
    }
}

void sw_act(struct ns_switch *sw, uint32_t n)
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
            if (NS_UNLIKELY(r->rewrite) &&
                ns_rewrite_frame_offload(f, sw->len[i], r,
                                         sw->offload && (sw->ol[i].flags & NS_OFFLOAD_NEEDS_CSUM)) != 0) {
                sw->counter[NS_SW_C_REWRITE_FAILED]++;
                in->st.drops++;
                continue;
            }
            if (NS_UNLIKELY(!sw_decrement_ttl(f, sw->len[i], r->family))) {
                sw->counter[NS_SW_C_TTL_EXCEEDED]++;
                in->st.drops++;
                continue;
            }
            memcpy(f, out->pod_mac, 6);
            memcpy(f + 6, out->gw_mac, 6);
            queue_tx(sw, &ntx, slot, f, sw->len[i], &sw->ol[i]);
        } else if (r->verdict == NS_LOCAL) {
            uint8_t *out = sw->reply + (size_t)i * SW_REPLY_MAX;
            uint16_t rl = 0;
            int ignored = 1;
            in->st.local++;
            if (r->reason == NS_R_ARP) {
                rl = sw_arp_reply(in, f, sw->len[i], out, &ignored);
                if (rl)
                    sw->counter[NS_SW_C_ARP_REPLIES]++;
            } else if (r->reason == NS_R_NEIGHBOR_DISCOVERY) {
                rl = sw_nd_reply(in, f, sw->len[i], out, &ignored);
                if (rl)
                    sw->counter[NS_SW_C_ND_REPLIES]++;
            }
            if (rl)
                queue_tx(sw, &ntx, sw->slot_of[in->port], out, rl, &no_offload);
            else if (ignored)
                sw->counter[NS_SW_C_LOCAL_IGNORED]++;
        } else {
            in->st.drops++;
            if (NS_UNLIKELY(r->reason == NS_R_SERVICE_NO_BACKEND)) {
                /* Rejected, as kube-proxy does, so the client fails at once. */
                uint8_t *out = sw->reply + (size_t)i * SW_REPLY_MAX;
                uint16_t rl = sw_reject(in, f, sw->len[i], r, out);
                if (rl && in->pod_mac_known) {
                    sw->counter[NS_SW_C_REJECTS]++;
                    queue_tx(sw, &ntx, sw->slot_of[in->port], out, rl, &no_offload);
                }
            }
        }
    }
    transmit(sw, ntx);
}

void ns_switch_stop(struct ns_switch *sw)
{
    sw->stop = 1;
    uint64_t one = 1;            /* a worker asleep in epoll_wait wakes at once */
    if (write(sw->wakefd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: it wakes anyway */
    }
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
        l = sizeof(ts);
        if (pt->big_fd >= 0 && getsockopt(pt->big_fd, SOL_PACKET, PACKET_STATISTICS, &ts, &l) == 0)
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
