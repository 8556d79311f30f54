/* TAP ports: the switch reads and writes the TAP device's fd (one frame per
 * system call; no ring). */
#include "switch_int.h"

int ns_switch_add_tap(struct ns_switch *sw, uint16_t port, int fd, const uint8_t *gw_mac,
                      const uint8_t *pod_mac)
{
    struct sw_port *pt;
    int rc = sw_new_slot(sw, port, gw_mac, pod_mac, &pt);
    if (rc)
        return rc;
    if (fd < 0)
        return -EBADF;
    if (sw->shared)
        return -EOPNOTSUPP;      /* one reader per TAP fd: no fanout */
    pt->fd = fd;
    pt->is_tap = 1;
    return sw_commit_slot(sw, pt);
}

uint32_t sw_drain_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    while (n < sw->batch) {
        /* a frame of any size fits: a small slot, else a super-frame slot */
        uint32_t at = sw_slot_for(sw, n, sw->offload ? SW_BIG_FRAME : NS_SW_FRAME_MAX);
        if (at == UINT32_MAX)
            break;
        ssize_t r;
        if (sw->offload) {      /* IFF_VNET_HDR: the virtio-net header comes first */
            struct iovec v[2] = {{&sw->ol[n], sizeof(struct ns_offload)}, {sw->buf + at, SW_BIG_FRAME}};
            r = readv(pt->fd, v, 2) - (ssize_t)sizeof(struct ns_offload);
            if (r > 0 && sw->ol[n].gso_type != NS_GSO_NONE)
                sw->counter[NS_SW_C_SUPER_FRAMES]++;
        } else {
            r = read(pt->fd, sw->buf + at, NS_SW_FRAME_MAX);
        }
        if (r <= 0) {
            sw->big_used -= at >= sw->batch * NS_SW_FRAME_MAX;   /* not used after all */
            break;
        }
        sw->off[n] = at;
        pt->st.rx_packets++;
        pt->st.rx_bytes += (uint64_t)r;
        if (NS_UNLIKELY(sw->cap.slots))
            sw_cap_push(sw, pt->port, NS_SW_CAP_IN, sw_real_ns(), sw->buf + sw->off[n], (uint32_t)r,
                        (uint32_t)r, n, sw->offload ? &sw->ol[n] : NULL);
        sw->len[n] = (uint32_t)r;
        sw->in_port[n] = pt->port;
        n++;
    }
    return n;
}

uint32_t sw_send_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t start, uint32_t end)
{
    uint32_t sent = 0;
    for (uint32_t i = start; i < end; i++) {
        const struct tx_ent *t = &sw->tx_sorted[i];
        struct iovec v[2] = {{(void *)t->ol, sizeof(struct ns_offload)}, {t->data, t->len}};
        if ((sw->offload ? writev(pt->fd, v, 2) : write(pt->fd, t->data, t->len)) <= 0)
            break;
        sent++;
    }
    return sent;
}
