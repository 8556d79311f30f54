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
    pt->fd = fd;
    pt->is_tap = 1;
    sw_commit_slot(sw, pt);
    return 0;
}

uint32_t sw_drain_tap(struct ns_switch *sw, struct sw_port *pt, uint32_t n)
{
    while (n < sw->batch) {
        ssize_t r = read(pt->fd, sw->buf + sw->off[n], NS_SW_FRAME_MAX);
        if (r <= 0)
            break;
        pt->st.rx_packets++;
        pt->st.rx_bytes += (uint64_t)r;
        if (NS_UNLIKELY(sw->cap.slots))
            sw_cap_push(sw, pt->port, NS_SW_CAP_IN, sw_real_ns(), sw->buf + sw->off[n], (uint32_t)r,
                        (uint32_t)r, n);
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
        if (write(pt->fd, sw->tx_sorted[i].data, sw->tx_sorted[i].len) <= 0)
            break;
        sent++;
    }
    return sent;
}
